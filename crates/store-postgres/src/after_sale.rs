//! Rebooking, the waitlist and notifications in PostgreSQL.

use chepiao_store::{
    CreateOrder, CreateWish, EndWish, Fulfil, NOTIFICATIONS_PAGE_MAX, NewOrder, NewWish, Notification, OrderStatus,
    OutboxEvent, RebookSwap, TicketRefundRecord, TicketStatus, WISH_BATCH_MAX, WishRecord, WishStatus,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::row::status;
use crate::{audit, orders, outbox, payments, tickets};

macro_rules! wish_cols {
    () => {
        "seq, wish_id, user_id, order_no, run_id, class, from_station, to_station, passenger_ids, deadline_ms, \
         status, created_at_ms, updated_at_ms"
    };
}

fn wish_row(r: &PgRow) -> sqlx::Result<WishRecord> {
    let ids: String = r.try_get(8)?;
    let corrupt = || sqlx::Error::Decode(format!("wishes: passenger ids {ids:?}").into());
    let passenger_ids = ids.split(',').map(|p| p.parse().map_err(|_| corrupt())).collect::<sqlx::Result<_>>()?;
    Ok(WishRecord {
        seq: r.try_get(0)?,
        wish_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        order_no: r.try_get(3)?,
        run_id: r.try_get(4)?,
        class: r.try_get(5)?,
        from_station: r.try_get(6)?,
        to_station: r.try_get(7)?,
        passenger_ids,
        deadline_ms: r.try_get(9)?,
        status: status(r, 10, WishStatus::parse)?,
        created_at_ms: r.try_get(11)?,
        updated_at_ms: r.try_get(12)?,
    })
}

async fn notify_user(c: &mut PgConnection, n: &Notification) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO notifications (user_id, kind, subject, body, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(n.user_id)
        .bind(&n.kind)
        .bind(&n.subject)
        .bind(&n.body)
        .bind(n.created_at_ms)
        .execute(c)
        .await?;
    Ok(())
}

async fn wish_by<'e>(c: impl PgExecutor<'e>, column_is_order: bool, value: &str) -> sqlx::Result<Option<WishRecord>> {
    let sql = if column_is_order {
        concat!("SELECT ", wish_cols!(), " FROM wishes WHERE order_no = $1")
    } else {
        concat!("SELECT ", wish_cols!(), " FROM wishes WHERE wish_id = $1")
    };
    let row = sqlx::query(sql).bind(value).fetch_optional(c).await?;
    row.as_ref().map(wish_row).transpose()
}

pub async fn create_wish(c: &mut PgConnection, w: &NewWish, order: &NewOrder) -> sqlx::Result<CreateWish> {
    let order = match orders::create(c, std::slice::from_ref(order)).await?.pop().expect("one answer per order") {
        CreateOrder::Created(order) => order,
        CreateOrder::Existing(order) => {
            return Ok(match wish_by(&mut *c, true, &order.order_no).await? {
                Some(w) => CreateWish::Existing(w),
                None => CreateWish::KeyTaken(order),
            });
        }
    };
    let ids: Vec<String> = w.passenger_ids.iter().map(i64::to_string).collect();
    let row = sqlx::query(concat!(
        "INSERT INTO wishes (wish_id, user_id, order_no, run_id, class, from_station, to_station,
           passenger_ids, deadline_ms, status, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'ACTIVE', $10, $10) RETURNING ",
        wish_cols!()
    ))
    .bind(&w.wish_id)
    .bind(w.user_id)
    .bind(&order.order_no)
    .bind(&w.run_id)
    .bind(&w.class)
    .bind(&w.from_station)
    .bind(&w.to_station)
    .bind(ids.join(","))
    .bind(w.deadline_ms)
    .bind(w.created_at_ms)
    .fetch_one(c)
    .await?;
    Ok(CreateWish::Created(wish_row(&row)?))
}

pub async fn wish<'e>(c: impl PgExecutor<'e>, wish_id: &str) -> sqlx::Result<Option<WishRecord>> {
    wish_by(c, false, wish_id).await
}

pub async fn waiting<'e>(c: impl PgExecutor<'e>, limit: u32) -> sqlx::Result<Vec<WishRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        wish_cols!(),
        " FROM wishes WHERE status = 'ACTIVE'
           AND EXISTS (SELECT 1 FROM orders o WHERE o.order_no = wishes.order_no AND o.status = 'PAID')
         ORDER BY seq LIMIT $1"
    ))
    .bind(i64::from(limit.min(WISH_BATCH_MAX)))
    .fetch_all(c)
    .await?;
    rows.iter().map(wish_row).collect()
}

pub async fn fulfil(c: &mut PgConnection, f: &Fulfil) -> sqlx::Result<bool> {
    let found: Option<(String, i64)> = sqlx::query_as(
        "UPDATE wishes SET status = 'FULFILLED', updated_at_ms = $2
         WHERE wish_id = $1 AND status = 'ACTIVE'
           AND EXISTS (SELECT 1 FROM orders o WHERE o.order_no = wishes.order_no AND o.status = 'PAID')
         RETURNING order_no, user_id",
    )
    .bind(&f.wish_id)
    .bind(f.now_ms)
    .fetch_optional(&mut *c)
    .await?;
    let Some((order_no, user_id)) = found else { return Ok(false) };
    let moved = sqlx::query(
        "UPDATE orders SET legs_json = $2, version = version + 1, updated_at_ms = $3 WHERE order_no = $1 AND status = 'PAID'",
    )
    .bind(&order_no)
    .bind(&f.legs_json)
    .bind(f.now_ms)
    .execute(&mut *c)
    .await?;
    assert_eq!(moved.rows_affected(), 1, "the wish's order was checked PAID in this transaction");
    let order_nos = vec![order_no.clone(); f.holds.len()];
    orders::insert_holds(&mut *c, &f.holds, &order_nos).await?;
    outbox::insert(c, &[OutboxEvent::Ticket { order_no: order_no.clone() }], f.now_ms).await?;
    let body = format!("seats found: order {order_no} is being ticketed");
    let kind = "wish.fulfilled".to_string();
    let n =
        Notification { id: 0, user_id, kind, subject: f.wish_id.clone(), body: body.clone(), created_at_ms: f.now_ms };
    notify_user(c, &n).await?;
    audit::record(c, f.now_ms, "wish.fulfil", &f.wish_id, body).await?;
    Ok(true)
}

pub async fn end_wish(c: &mut PgConnection, wish_id: &str, to: WishStatus, now_ms: i64) -> sqlx::Result<EndWish> {
    assert!(matches!(to, WishStatus::Expired | WishStatus::Cancelled), "a wish ends expired or cancelled");
    let row = sqlx::query(concat!(
        "UPDATE wishes SET status = $2, updated_at_ms = $3 WHERE wish_id = $1 AND status = 'ACTIVE' RETURNING ",
        wish_cols!()
    ))
    .bind(wish_id)
    .bind(to.as_str())
    .bind(now_ms)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        return Ok(match wish(&mut *c, wish_id).await? {
            Some(w) => EndWish::NotActive(w),
            None => EndWish::Unknown,
        });
    };
    let wish = wish_row(&row)?;
    // Unpaid: the order dies (no seats to give back). Paid: it is refunded in full.
    let dead = if to == WishStatus::Expired { OrderStatus::Expired } else { OrderStatus::Cancelled };
    sqlx::query(
        "UPDATE orders SET status = CASE status WHEN 'PAID' THEN 'REFUNDED' ELSE $2 END,
           version = version + 1, updated_at_ms = $3, seats_released = 1
         WHERE order_no = $1 AND status IN ('PAID', 'PENDING_PAYMENT')",
    )
    .bind(&wish.order_no)
    .bind(dead.as_str())
    .bind(now_ms)
    .execute(&mut *c)
    .await?;
    let refunded = payments::refund_captured(c, &wish.order_no, now_ms).await?;
    let word = to.as_str().to_lowercase();
    let kind = format!("wish.{word}");
    let body = format!("wish {wish_id} {word}: {refunded} payment(s) refunded in full");
    let n = Notification {
        id: 0,
        user_id: wish.user_id,
        kind: kind.clone(),
        subject: wish_id.to_string(),
        body: body.clone(),
        created_at_ms: now_ms,
    };
    notify_user(c, &n).await?;
    audit::record(c, now_ms, &kind, wish_id, body).await?;
    Ok(EndWish::Ended(wish))
}

pub async fn expire_wishes(c: &mut PgConnection, now_ms: i64, limit: u32) -> sqlx::Result<Vec<WishRecord>> {
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT wish_id FROM wishes WHERE status = 'ACTIVE' AND deadline_ms <= $1 ORDER BY deadline_ms LIMIT $2",
    )
    .bind(now_ms)
    .bind(i64::from(limit.min(WISH_BATCH_MAX)))
    .fetch_all(&mut *c)
    .await?;
    let mut ended = Vec::new();
    for wish_id in &due {
        if let EndWish::Ended(w) = end_wish(c, wish_id, WishStatus::Expired, now_ms).await? {
            ended.push(w);
        }
    }
    Ok(ended)
}

pub async fn notifications<'e>(c: impl PgExecutor<'e>, user_id: i64, limit: u32) -> sqlx::Result<Vec<Notification>> {
    let rows = sqlx::query(
        "SELECT id, user_id, kind, subject, body, created_at_ms FROM notifications
         WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(i64::from(limit.min(NOTIFICATIONS_PAGE_MAX)))
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Notification {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                kind: r.try_get(2)?,
                subject: r.try_get(3)?,
                body: r.try_get(4)?,
                created_at_ms: r.try_get(5)?,
            })
        })
        .collect()
}

pub async fn settle_free(c: &mut PgConnection, order_no: &str, now_ms: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE orders SET status = 'PAID', version = version + 1, updated_at_ms = $2
         WHERE order_no = $1 AND status = 'PENDING_PAYMENT' AND amount_fen = 0",
    )
    .bind(order_no)
    .bind(now_ms)
    .execute(&mut *c)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    outbox::insert(c, &[OutboxEvent::Ticket { order_no: order_no.to_string() }], now_ms).await?;
    let detail = "nothing to pay (rebooked to a fare no dearer)".to_string();
    audit::record(c, now_ms, "order.settled_free", order_no, detail).await?;
    Ok(true)
}

pub async fn rebook_swap(c: &mut PgConnection, new_order_no: &str, r: &TicketRefundRecord) -> sqlx::Result<RebookSwap> {
    if !tickets::set_status_from_issued(c, &r.ticket_sn, TicketStatus::Rebooked).await? {
        if rebooked_to(&mut *c, &r.ticket_sn).await?.as_deref() == Some(new_order_no) {
            return Ok(RebookSwap::AlreadyOurs);
        }
        return Ok(match tickets::status_of(c, &r.ticket_sn).await? {
            None => RebookSwap::Unknown,
            Some(status) => RebookSwap::Lost(status),
        });
    }
    sqlx::query("INSERT INTO rebooks (old_ticket_sn, new_order_no, at_ms) VALUES ($1, $2, $3)")
        .bind(&r.ticket_sn)
        .bind(new_order_no)
        .bind(r.created_at_ms)
        .execute(&mut *c)
        .await?;
    tickets::insert_refund(c, r, "REBOOKED").await?;
    let detail = format!("to order {new_order_no}; {} payment {} refund {}", r.refund_no, r.payment_no, r.refund_fen);
    audit::record(c, r.created_at_ms, "ticket.rebook", &r.ticket_sn, detail).await?;
    Ok(RebookSwap::Swapped)
}

pub async fn rebooked_to<'e>(c: impl PgExecutor<'e>, old_ticket_sn: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT new_order_no FROM rebooks WHERE old_ticket_sn = $1")
        .bind(old_ticket_sn)
        .fetch_optional(c)
        .await
}
