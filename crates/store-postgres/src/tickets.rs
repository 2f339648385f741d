//! Tickets, check-ins, ticket refunds and revocations in PostgreSQL.

use chepiao_store::{
    AUDIT_PAGE_MAX, CheckIn, OrderStatus, OrderTickets, OutboxEvent, RefundStatus, RefundTicket, Revocation, Scan,
    TicketRecord, TicketRefundDone, TicketRefundRecord, TicketStatus,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::row::status;
use crate::{audit, orders, outbox};

macro_rules! ticket_cols {
    () => {
        "ticket_sn, order_no, user_id, leg, passenger_idx, passenger_id, run_id, from_station, to_station, class, \
         coach, seat, price_fen, status, qr, issued_at_ms"
    };
}

macro_rules! refund_cols {
    () => {
        "refund_no, ticket_sn, order_no, payment_no, refund_fen, fee_fen, status, created_at_ms"
    };
}

fn ticket_row(r: &PgRow) -> sqlx::Result<TicketRecord> {
    Ok(TicketRecord {
        ticket_sn: r.try_get(0)?,
        order_no: r.try_get(1)?,
        user_id: r.try_get(2)?,
        leg: r.try_get(3)?,
        passenger_idx: r.try_get(4)?,
        passenger_id: r.try_get(5)?,
        run_id: r.try_get(6)?,
        from_station: r.try_get(7)?,
        to_station: r.try_get(8)?,
        class: r.try_get(9)?,
        coach: r.try_get(10)?,
        seat: r.try_get(11)?,
        price_fen: r.try_get(12)?,
        status: status(r, 13, TicketStatus::parse)?,
        qr: r.try_get(14)?,
        issued_at_ms: r.try_get(15)?,
    })
}

fn refund_row(r: &PgRow) -> sqlx::Result<TicketRefundRecord> {
    Ok(TicketRefundRecord {
        refund_no: r.try_get(0)?,
        ticket_sn: r.try_get(1)?,
        order_no: r.try_get(2)?,
        payment_no: r.try_get(3)?,
        refund_fen: r.try_get(4)?,
        fee_fen: r.try_get(5)?,
        status: status(r, 6, RefundStatus::parse)?,
        created_at_ms: r.try_get(7)?,
    })
}

/// PAID → TICKETED with its tickets, for each order still PAID; returns the orders moved.
pub async fn issue(c: &mut PgConnection, batch: &[OrderTickets], now_ms: i64) -> sqlx::Result<Vec<String>> {
    let nos: Vec<String> = batch.iter().map(|o| o.order_no.clone()).collect();
    let moved = orders::set_status(c, &nos, OrderStatus::Paid, OrderStatus::Ticketed, now_ms).await?;
    let moved_set: std::collections::HashSet<&String> = moved.iter().collect();
    let t: Vec<&TicketRecord> =
        batch.iter().filter(|o| moved_set.contains(&o.order_no)).flat_map(|o| o.tickets.iter()).collect();
    let text = |f: fn(&TicketRecord) -> String| t.iter().map(|x| f(x)).collect::<Vec<_>>();
    let num = |f: fn(&TicketRecord) -> i64| t.iter().map(|x| f(x)).collect::<Vec<_>>();
    sqlx::query(concat!(
        "INSERT INTO tickets (",
        ticket_cols!(),
        ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
             $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::bigint[], $14::text[],
             $15::text[], $16::bigint[])"
    ))
    .bind(text(|t| t.ticket_sn.clone()))
    .bind(text(|t| t.order_no.clone()))
    .bind(num(|t| t.user_id))
    .bind(num(|t| t.leg))
    .bind(num(|t| t.passenger_idx))
    .bind(num(|t| t.passenger_id))
    .bind(text(|t| t.run_id.clone()))
    .bind(text(|t| t.from_station.clone()))
    .bind(text(|t| t.to_station.clone()))
    .bind(text(|t| t.class.clone()))
    .bind(num(|t| t.coach))
    .bind(text(|t| t.seat.clone()))
    .bind(num(|t| t.price_fen))
    .bind(text(|t| t.status.as_str().to_string()))
    .bind(text(|t| t.qr.clone()))
    .bind(num(|t| t.issued_at_ms))
    .execute(&mut *c)
    .await?;
    Ok(moved)
}

pub async fn of_order<'e>(c: impl PgExecutor<'e>, order_no: &str) -> sqlx::Result<Vec<TicketRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        ticket_cols!(),
        " FROM tickets WHERE order_no = $1 ORDER BY leg, passenger_idx"
    ))
    .bind(order_no)
    .fetch_all(c)
    .await?;
    rows.iter().map(ticket_row).collect()
}

pub async fn get<'e>(c: impl PgExecutor<'e>, ticket_sn: &str) -> sqlx::Result<Option<TicketRecord>> {
    let row = sqlx::query(concat!("SELECT ", ticket_cols!(), " FROM tickets WHERE ticket_sn = $1"))
        .bind(ticket_sn)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(ticket_row).transpose()
}

pub async fn after<'e>(c: impl PgExecutor<'e>, after_sn: &str, limit: u32) -> sqlx::Result<Vec<TicketRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        ticket_cols!(),
        " FROM tickets WHERE ticket_sn > $1 ORDER BY ticket_sn LIMIT $2"
    ))
    .bind(after_sn)
    .bind(i64::from(limit.min(AUDIT_PAGE_MAX)))
    .fetch_all(c)
    .await?;
    rows.iter().map(ticket_row).collect()
}

/// The ticket's status, if it exists.
pub(crate) async fn status_of(c: &mut PgConnection, ticket_sn: &str) -> sqlx::Result<Option<TicketStatus>> {
    let row = sqlx::query("SELECT status FROM tickets WHERE ticket_sn = $1").bind(ticket_sn).fetch_optional(c).await?;
    row.as_ref().map(|r| status(r, 0, TicketStatus::parse)).transpose()
}

/// Move an ISSUED ticket to `to`; whether it moved.
pub(crate) async fn set_status_from_issued(
    c: &mut PgConnection,
    ticket_sn: &str,
    to: TicketStatus,
) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE tickets SET status = $1 WHERE ticket_sn = $2 AND status = 'ISSUED'")
        .bind(to.as_str())
        .bind(ticket_sn)
        .execute(c)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn check_in(c: &mut PgConnection, s: &Scan) -> sqlx::Result<CheckIn> {
    if set_status_from_issued(c, &s.ticket_sn, TicketStatus::CheckedIn).await? {
        sqlx::query("INSERT INTO checkins (ticket_sn, gate_id, station, at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&s.ticket_sn)
            .bind(&s.gate_id)
            .bind(&s.station)
            .bind(s.at_ms)
            .execute(&mut *c)
            .await?;
        return Ok(CheckIn::Accepted);
    }
    let row = sqlx::query(
        "SELECT t.status, k.gate_id, k.at_ms FROM tickets t LEFT JOIN checkins k ON k.ticket_sn = t.ticket_sn
         WHERE t.ticket_sn = $1",
    )
    .bind(&s.ticket_sn)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(CheckIn::Unknown) };
    Ok(match status(&row, 0, TicketStatus::parse)? {
        TicketStatus::CheckedIn => CheckIn::AlreadyCheckedIn {
            gate_id: row.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
            at_ms: row.try_get::<Option<i64>, _>(2)?.unwrap_or_default(),
        },
        other => CheckIn::Revoked(other),
    })
}

/// A refund row (PENDING), the ticket's revocation and the outbox event that gives its seat
/// and money back: what a refund and a rebook both write.
pub(crate) async fn insert_refund(c: &mut PgConnection, r: &TicketRefundRecord, reason: &str) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "INSERT INTO ticket_refunds (",
        refund_cols!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7)"
    ))
    .bind(&r.refund_no)
    .bind(&r.ticket_sn)
    .bind(&r.order_no)
    .bind(&r.payment_no)
    .bind(r.refund_fen)
    .bind(r.fee_fen)
    .bind(r.created_at_ms)
    .execute(&mut *c)
    .await?;
    sqlx::query("INSERT INTO revocations (ticket_sn, reason, revoked_at_ms) VALUES ($1, $2, $3)")
        .bind(&r.ticket_sn)
        .bind(reason)
        .bind(r.created_at_ms)
        .execute(&mut *c)
        .await?;
    outbox::insert(c, &[OutboxEvent::TicketRefund { refund_no: r.refund_no.clone() }], r.created_at_ms).await
}

pub async fn refund(c: &mut PgConnection, r: &TicketRefundRecord) -> sqlx::Result<RefundTicket> {
    if !set_status_from_issued(c, &r.ticket_sn, TicketStatus::Refunded).await? {
        return Ok(match status_of(c, &r.ticket_sn).await? {
            None => RefundTicket::Unknown,
            Some(TicketStatus::Refunded) => {
                let row = sqlx::query(concat!("SELECT ", refund_cols!(), " FROM ticket_refunds WHERE ticket_sn = $1"))
                    .bind(&r.ticket_sn)
                    .fetch_one(&mut *c)
                    .await?;
                RefundTicket::Existing(refund_row(&row)?)
            }
            // A rebooked ticket has a refund row too (its seat went back), but it was not
            // refunded: it is simply not refundable.
            Some(other) => RefundTicket::NotRefundable(other),
        });
    }
    insert_refund(c, r, "REFUNDED").await?;
    sqlx::query(
        "UPDATE orders SET version = version + 1, updated_at_ms = $2, status = CASE WHEN EXISTS
           (SELECT 1 FROM tickets WHERE order_no = $1 AND status IN ('ISSUED', 'CHECKED_IN'))
         THEN 'PARTIALLY_REFUNDED' ELSE 'REFUNDED' END
         WHERE order_no = $1 AND status IN ('TICKETED', 'PARTIALLY_REFUNDED')",
    )
    .bind(&r.order_no)
    .bind(r.created_at_ms)
    .execute(&mut *c)
    .await?;
    let detail = format!("{} payment {} refund {} fee {}", r.refund_no, r.payment_no, r.refund_fen, r.fee_fen);
    audit::record(c, r.created_at_ms, "ticket.refund", &r.ticket_sn, detail).await?;
    Ok(RefundTicket::Started(TicketRefundRecord { status: RefundStatus::Pending, ..r.clone() }))
}

pub async fn refund_get<'e>(c: impl PgExecutor<'e>, refund_no: &str) -> sqlx::Result<Option<TicketRefundRecord>> {
    let row = sqlx::query(concat!("SELECT ", refund_cols!(), " FROM ticket_refunds WHERE refund_no = $1"))
        .bind(refund_no)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(refund_row).transpose()
}

pub async fn complete_refund(c: &mut PgConnection, d: &TicketRefundDone) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE ticket_refunds SET status = 'DONE' WHERE refund_no = $1 AND status = 'PENDING'")
        .bind(&d.refund_no)
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let detail = format!("channel refund {}", d.channel_refund_id);
    audit::record(c, d.now_ms, "ticket.refund.done", &d.refund_no, detail).await?;
    Ok(true)
}

pub async fn revocations<'e>(c: impl PgExecutor<'e>, after_seq: i64, limit: u32) -> sqlx::Result<Vec<Revocation>> {
    let rows =
        sqlx::query("SELECT seq, ticket_sn, revoked_at_ms FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after_seq)
            .bind(i64::from(limit.min(AUDIT_PAGE_MAX)))
            .fetch_all(c)
            .await?;
    rows.iter()
        .map(|r| Ok(Revocation { seq: r.try_get(0)?, ticket_sn: r.try_get(1)?, revoked_at_ms: r.try_get(2)? }))
        .collect()
}
