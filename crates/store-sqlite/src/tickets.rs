//! Tickets, check-ins, ticket refunds and revocations in SQLite.

use chepiao_store::{
    AUDIT_PAGE_MAX, CheckIn, OrderStatus, OrderTickets, OutboxEvent, RefundStatus, RefundTicket, Revocation, Scan,
    TicketRecord, TicketRefundDone, TicketRefundRecord, TicketStatus,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::row::decode;
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

fn ticket_row(r: &Row) -> rusqlite::Result<TicketRecord> {
    Ok(TicketRecord {
        ticket_sn: r.get(0)?,
        order_no: r.get(1)?,
        user_id: r.get(2)?,
        leg: r.get(3)?,
        passenger_idx: r.get(4)?,
        passenger_id: r.get(5)?,
        run_id: r.get(6)?,
        from_station: r.get(7)?,
        to_station: r.get(8)?,
        class: r.get(9)?,
        coach: r.get(10)?,
        seat: r.get(11)?,
        price_fen: r.get(12)?,
        status: decode(r, 13, TicketStatus::parse)?,
        qr: r.get(14)?,
        issued_at_ms: r.get(15)?,
    })
}

fn refund_row(r: &Row) -> rusqlite::Result<TicketRefundRecord> {
    Ok(TicketRefundRecord {
        refund_no: r.get(0)?,
        ticket_sn: r.get(1)?,
        order_no: r.get(2)?,
        payment_no: r.get(3)?,
        refund_fen: r.get(4)?,
        fee_fen: r.get(5)?,
        status: decode(r, 6, RefundStatus::parse)?,
        created_at_ms: r.get(7)?,
    })
}

/// PAID → TICKETED with its tickets, for each order still PAID; returns the orders moved.
pub fn issue(c: &Connection, batch: &[OrderTickets], now_ms: i64) -> rusqlite::Result<Vec<String>> {
    let mut insert = c.prepare_cached(concat!(
        "INSERT INTO tickets (",
        ticket_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?;
    let mut moved = Vec::new();
    for o in batch {
        if !orders::set_status(c, &o.order_no, OrderStatus::Paid, OrderStatus::Ticketed, now_ms)? {
            continue;
        }
        for t in &o.tickets {
            insert.execute(params![
                t.ticket_sn,
                t.order_no,
                t.user_id,
                t.leg,
                t.passenger_idx,
                t.passenger_id,
                t.run_id,
                t.from_station,
                t.to_station,
                t.class,
                t.coach,
                t.seat,
                t.price_fen,
                t.status.as_str(),
                t.qr,
                t.issued_at_ms
            ])?;
        }
        moved.push(o.order_no.clone());
    }
    Ok(moved)
}

pub fn of_order(c: &Connection, order_no: &str) -> rusqlite::Result<Vec<TicketRecord>> {
    let mut q = c.prepare_cached(concat!(
        "SELECT ",
        ticket_cols!(),
        " FROM tickets WHERE order_no = ?1 ORDER BY leg, passenger_idx"
    ))?;
    q.query_map([order_no], ticket_row)?.collect()
}

pub fn get(c: &Connection, ticket_sn: &str) -> rusqlite::Result<Option<TicketRecord>> {
    let mut q = c.prepare_cached(concat!("SELECT ", ticket_cols!(), " FROM tickets WHERE ticket_sn = ?1"))?;
    q.query_row([ticket_sn], ticket_row).optional()
}

pub fn after(c: &Connection, after_sn: &str, limit: u32) -> rusqlite::Result<Vec<TicketRecord>> {
    let mut q = c.prepare_cached(concat!(
        "SELECT ",
        ticket_cols!(),
        " FROM tickets WHERE ticket_sn > ?1 ORDER BY ticket_sn LIMIT ?2"
    ))?;
    q.query_map(params![after_sn, limit.min(AUDIT_PAGE_MAX)], ticket_row)?.collect()
}

/// The ticket's status, if it exists.
pub(crate) fn status(c: &Connection, ticket_sn: &str) -> rusqlite::Result<Option<TicketStatus>> {
    let mut q = c.prepare_cached("SELECT status FROM tickets WHERE ticket_sn = ?1")?;
    q.query_row([ticket_sn], |r| decode(r, 0, TicketStatus::parse)).optional()
}

/// Move an ISSUED ticket to `to`; whether it moved.
pub(crate) fn set_status_from_issued(c: &Connection, ticket_sn: &str, to: TicketStatus) -> rusqlite::Result<bool> {
    let mut q = c.prepare_cached("UPDATE tickets SET status = ?1 WHERE ticket_sn = ?2 AND status = 'ISSUED'")?;
    Ok(q.execute(params![to.as_str(), ticket_sn])? == 1)
}

pub fn check_in(c: &Connection, s: &Scan) -> rusqlite::Result<CheckIn> {
    if set_status_from_issued(c, &s.ticket_sn, TicketStatus::CheckedIn)? {
        c.prepare_cached("INSERT INTO checkins (ticket_sn, gate_id, station, at_ms) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![s.ticket_sn, s.gate_id, s.station, s.at_ms])?;
        return Ok(CheckIn::Accepted);
    }
    let mut q = c.prepare_cached(
        "SELECT t.status, k.gate_id, k.at_ms FROM tickets t LEFT JOIN checkins k ON k.ticket_sn = t.ticket_sn
         WHERE t.ticket_sn = ?1",
    )?;
    let found = q
        .query_row([&s.ticket_sn], |r| {
            Ok((decode(r, 0, TicketStatus::parse)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<i64>>(2)?))
        })
        .optional()?;
    Ok(match found {
        None => CheckIn::Unknown,
        Some((TicketStatus::CheckedIn, gate_id, at_ms)) => {
            CheckIn::AlreadyCheckedIn { gate_id: gate_id.unwrap_or_default(), at_ms: at_ms.unwrap_or_default() }
        }
        Some((other, _, _)) => CheckIn::Revoked(other),
    })
}

/// A refund row (PENDING), the ticket's revocation and the outbox event that gives its seat
/// and money back: what a refund and a rebook both write.
pub(crate) fn insert_refund(c: &Connection, r: &TicketRefundRecord, reason: &str) -> rusqlite::Result<()> {
    c.prepare_cached(concat!(
        "INSERT INTO ticket_refunds (",
        refund_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PENDING', ?7)"
    ))?
    .execute(params![
        r.refund_no,
        r.ticket_sn,
        r.order_no,
        r.payment_no,
        r.refund_fen,
        r.fee_fen,
        r.created_at_ms
    ])?;
    c.prepare_cached("INSERT INTO revocations (ticket_sn, reason, revoked_at_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![r.ticket_sn, reason, r.created_at_ms])?;
    outbox::insert(c, &[OutboxEvent::TicketRefund { refund_no: r.refund_no.clone() }], r.created_at_ms)
}

pub fn refund(c: &Connection, r: &TicketRefundRecord) -> rusqlite::Result<RefundTicket> {
    if !set_status_from_issued(c, &r.ticket_sn, TicketStatus::Refunded)? {
        return Ok(match status(c, &r.ticket_sn)? {
            None => RefundTicket::Unknown,
            Some(TicketStatus::Refunded) => {
                let mut q =
                    c.prepare_cached(concat!("SELECT ", refund_cols!(), " FROM ticket_refunds WHERE ticket_sn = ?1"))?;
                RefundTicket::Existing(q.query_row([&r.ticket_sn], refund_row)?)
            }
            // A rebooked ticket has a refund row too (its seat went back), but it was not
            // refunded: it is simply not refundable.
            Some(other) => RefundTicket::NotRefundable(other),
        });
    }
    insert_refund(c, r, "REFUNDED")?;
    c.prepare_cached(
        "UPDATE orders SET version = version + 1, updated_at_ms = ?2, status = CASE WHEN EXISTS
           (SELECT 1 FROM tickets WHERE order_no = ?1 AND status IN ('ISSUED', 'CHECKED_IN'))
         THEN 'PARTIALLY_REFUNDED' ELSE 'REFUNDED' END
         WHERE order_no = ?1 AND status IN ('TICKETED', 'PARTIALLY_REFUNDED')",
    )?
    .execute(params![r.order_no, r.created_at_ms])?;
    let detail = format!("{} payment {} refund {} fee {}", r.refund_no, r.payment_no, r.refund_fen, r.fee_fen);
    audit::record(c, r.created_at_ms, "ticket.refund", &r.ticket_sn, detail)?;
    Ok(RefundTicket::Started(TicketRefundRecord { status: RefundStatus::Pending, ..r.clone() }))
}

pub fn refund_get(c: &Connection, refund_no: &str) -> rusqlite::Result<Option<TicketRefundRecord>> {
    let mut q = c.prepare_cached(concat!("SELECT ", refund_cols!(), " FROM ticket_refunds WHERE refund_no = ?1"))?;
    q.query_row([refund_no], refund_row).optional()
}

pub fn complete_refund(c: &Connection, d: &TicketRefundDone) -> rusqlite::Result<bool> {
    let done = c
        .prepare_cached("UPDATE ticket_refunds SET status = 'DONE' WHERE refund_no = ?1 AND status = 'PENDING'")?
        .execute([&d.refund_no])?;
    if done == 0 {
        return Ok(false);
    }
    audit::record(c, d.now_ms, "ticket.refund.done", &d.refund_no, format!("channel refund {}", d.channel_refund_id))?;
    Ok(true)
}

pub fn revocations(c: &Connection, after_seq: i64, limit: u32) -> rusqlite::Result<Vec<Revocation>> {
    let mut q =
        c.prepare_cached("SELECT seq, ticket_sn, revoked_at_ms FROM revocations WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    q.query_map(params![after_seq, limit.min(AUDIT_PAGE_MAX)], |r| {
        Ok(Revocation { seq: r.get(0)?, ticket_sn: r.get(1)?, revoked_at_ms: r.get(2)? })
    })?
    .collect()
}
