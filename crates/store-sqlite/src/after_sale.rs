//! Rebooking, the waitlist and notifications in SQLite.

use chepiao_store::{
    CreateOrder, CreateWish, EndWish, Fulfil, NOTIFICATIONS_PAGE_MAX, NewOrder, NewWish, Notification, OrderStatus,
    OutboxEvent, RebookSwap, TicketRefundRecord, TicketStatus, WISH_BATCH_MAX, WishRecord, WishStatus,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::row::decode;
use crate::{audit, orders, outbox, payments, tickets};

macro_rules! wish_cols {
    () => {
        "seq, wish_id, user_id, order_no, run_id, class, from_station, to_station, passenger_ids, deadline_ms, \
         status, created_at_ms, updated_at_ms"
    };
}

fn wish_row(r: &Row) -> rusqlite::Result<WishRecord> {
    let ids: String = r.get(8)?;
    let passenger_ids =
        ids.split(',').map(|p| p.parse().map_err(|_| crate::row::corrupt(8, &ids))).collect::<Result<_, _>>()?;
    Ok(WishRecord {
        seq: r.get(0)?,
        wish_id: r.get(1)?,
        user_id: r.get(2)?,
        order_no: r.get(3)?,
        run_id: r.get(4)?,
        class: r.get(5)?,
        from_station: r.get(6)?,
        to_station: r.get(7)?,
        passenger_ids,
        deadline_ms: r.get(9)?,
        status: decode(r, 10, WishStatus::parse)?,
        created_at_ms: r.get(11)?,
        updated_at_ms: r.get(12)?,
    })
}

fn notify_user(c: &Connection, n: &Notification) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO notifications (user_id, kind, subject, body, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![n.user_id, n.kind, n.subject, n.body, n.created_at_ms])?;
    Ok(())
}

pub fn create_wish(c: &Connection, w: &NewWish, order: &NewOrder) -> rusqlite::Result<CreateWish> {
    let order = match orders::create(c, std::slice::from_ref(order))?.pop().expect("one answer per order") {
        CreateOrder::Created(order) => order,
        CreateOrder::Existing(order) => {
            return Ok(match wish_by_order(c, &order.order_no)? {
                Some(w) => CreateWish::Existing(w),
                None => CreateWish::KeyTaken(order),
            });
        }
    };
    let ids: Vec<String> = w.passenger_ids.iter().map(i64::to_string).collect();
    let mut q = c.prepare_cached(concat!(
        "INSERT INTO wishes (wish_id, user_id, order_no, run_id, class, from_station, to_station,
           passenger_ids, deadline_ms, status, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'ACTIVE', ?10, ?10) RETURNING ",
        wish_cols!()
    ))?;
    let row = q.query_row(
        params![
            w.wish_id,
            w.user_id,
            order.order_no,
            w.run_id,
            w.class,
            w.from_station,
            w.to_station,
            ids.join(","),
            w.deadline_ms,
            w.created_at_ms
        ],
        wish_row,
    )?;
    Ok(CreateWish::Created(row))
}

pub fn wish(c: &Connection, wish_id: &str) -> rusqlite::Result<Option<WishRecord>> {
    c.prepare_cached(concat!("SELECT ", wish_cols!(), " FROM wishes WHERE wish_id = ?1"))?
        .query_row([wish_id], wish_row)
        .optional()
}

fn wish_by_order(c: &Connection, order_no: &str) -> rusqlite::Result<Option<WishRecord>> {
    c.prepare_cached(concat!("SELECT ", wish_cols!(), " FROM wishes WHERE order_no = ?1"))?
        .query_row([order_no], wish_row)
        .optional()
}

pub fn waiting(c: &Connection, limit: u32) -> rusqlite::Result<Vec<WishRecord>> {
    let mut q = c.prepare_cached(concat!(
        "SELECT ",
        wish_cols!(),
        " FROM wishes WHERE status = 'ACTIVE'
           AND EXISTS (SELECT 1 FROM orders o WHERE o.order_no = wishes.order_no AND o.status = 'PAID')
         ORDER BY seq LIMIT ?1"
    ))?;
    q.query_map([limit.min(WISH_BATCH_MAX)], wish_row)?.collect()
}

pub fn fulfil(c: &Connection, f: &Fulfil) -> rusqlite::Result<bool> {
    let mut q = c.prepare_cached(
        "UPDATE wishes SET status = 'FULFILLED', updated_at_ms = ?2
         WHERE wish_id = ?1 AND status = 'ACTIVE'
           AND EXISTS (SELECT 1 FROM orders o WHERE o.order_no = wishes.order_no AND o.status = 'PAID')
         RETURNING order_no, user_id",
    )?;
    let found: Option<(String, i64)> =
        q.query_row(params![f.wish_id, f.now_ms], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let Some((order_no, user_id)) = found else { return Ok(false) };
    let moved = c
        .prepare_cached(
            "UPDATE orders SET legs_json = ?2, version = version + 1, updated_at_ms = ?3
             WHERE order_no = ?1 AND status = 'PAID'",
        )?
        .execute(params![order_no, f.legs_json, f.now_ms])?;
    assert_eq!(moved, 1, "the wish's order was checked PAID in this transaction");
    orders::insert_holds(c, &order_no, &f.holds)?;
    outbox::insert(c, &[OutboxEvent::Ticket { order_no: order_no.clone() }], f.now_ms)?;
    let body = format!("seats found: order {order_no} is being ticketed");
    let kind = "wish.fulfilled".to_string();
    notify_user(
        c,
        &Notification { id: 0, user_id, kind, subject: f.wish_id.clone(), body: body.clone(), created_at_ms: f.now_ms },
    )?;
    audit::record(c, f.now_ms, "wish.fulfil", &f.wish_id, body)?;
    Ok(true)
}

pub fn end_wish(c: &Connection, wish_id: &str, to: WishStatus, now_ms: i64) -> rusqlite::Result<EndWish> {
    assert!(matches!(to, WishStatus::Expired | WishStatus::Cancelled), "a wish ends expired or cancelled");
    let mut q = c.prepare_cached(concat!(
        "UPDATE wishes SET status = ?2, updated_at_ms = ?3 WHERE wish_id = ?1 AND status = 'ACTIVE' RETURNING ",
        wish_cols!()
    ))?;
    let Some(wish) = q.query_row(params![wish_id, to.as_str(), now_ms], wish_row).optional()? else {
        return Ok(match self::wish(c, wish_id)? {
            Some(w) => EndWish::NotActive(w),
            None => EndWish::Unknown,
        });
    };
    // Unpaid: the order dies (no seats to give back). Paid: it is refunded in full.
    let dead = if to == WishStatus::Expired { OrderStatus::Expired } else { OrderStatus::Cancelled };
    c.prepare_cached(
        "UPDATE orders SET status = CASE status WHEN 'PAID' THEN 'REFUNDED' ELSE ?2 END,
           version = version + 1, updated_at_ms = ?3, seats_released = 1
         WHERE order_no = ?1 AND status IN ('PAID', 'PENDING_PAYMENT')",
    )?
    .execute(params![wish.order_no, dead.as_str(), now_ms])?;
    let refunded = payments::refund_captured(c, &wish.order_no, now_ms)?;
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
    notify_user(c, &n)?;
    audit::record(c, now_ms, &kind, wish_id, body)?;
    Ok(EndWish::Ended(wish))
}

pub fn expire_wishes(c: &Connection, now_ms: i64, limit: u32) -> rusqlite::Result<Vec<WishRecord>> {
    let due: Vec<String> = c
        .prepare_cached(
            "SELECT wish_id FROM wishes WHERE status = 'ACTIVE' AND deadline_ms <= ?1 ORDER BY deadline_ms LIMIT ?2",
        )?
        .query_map(params![now_ms, limit.min(WISH_BATCH_MAX)], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut ended = Vec::new();
    for wish_id in &due {
        if let EndWish::Ended(w) = end_wish(c, wish_id, WishStatus::Expired, now_ms)? {
            ended.push(w);
        }
    }
    Ok(ended)
}

pub fn notifications(c: &Connection, user_id: i64, limit: u32) -> rusqlite::Result<Vec<Notification>> {
    let mut q = c.prepare_cached(
        "SELECT id, user_id, kind, subject, body, created_at_ms FROM notifications
         WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    q.query_map(params![user_id, limit.min(NOTIFICATIONS_PAGE_MAX)], |r| {
        Ok(Notification {
            id: r.get(0)?,
            user_id: r.get(1)?,
            kind: r.get(2)?,
            subject: r.get(3)?,
            body: r.get(4)?,
            created_at_ms: r.get(5)?,
        })
    })?
    .collect()
}

pub fn settle_free(c: &Connection, order_no: &str, now_ms: i64) -> rusqlite::Result<bool> {
    let done = c
        .prepare_cached(
            "UPDATE orders SET status = 'PAID', version = version + 1, updated_at_ms = ?2
             WHERE order_no = ?1 AND status = 'PENDING_PAYMENT' AND amount_fen = 0",
        )?
        .execute(params![order_no, now_ms])?;
    if done == 0 {
        return Ok(false);
    }
    outbox::insert(c, &[OutboxEvent::Ticket { order_no: order_no.to_string() }], now_ms)?;
    let detail = "nothing to pay (rebooked to a fare no dearer)".to_string();
    audit::record(c, now_ms, "order.settled_free", order_no, detail)?;
    Ok(true)
}

pub fn rebook_swap(c: &Connection, new_order_no: &str, r: &TicketRefundRecord) -> rusqlite::Result<RebookSwap> {
    if !tickets::set_status_from_issued(c, &r.ticket_sn, TicketStatus::Rebooked)? {
        if rebooked_to(c, &r.ticket_sn)?.as_deref() == Some(new_order_no) {
            return Ok(RebookSwap::AlreadyOurs);
        }
        return Ok(match tickets::status(c, &r.ticket_sn)? {
            None => RebookSwap::Unknown,
            Some(status) => RebookSwap::Lost(status),
        });
    }
    c.prepare_cached("INSERT INTO rebooks (old_ticket_sn, new_order_no, at_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![r.ticket_sn, new_order_no, r.created_at_ms])?;
    tickets::insert_refund(c, r, "REBOOKED")?;
    let detail = format!("to order {new_order_no}; {} payment {} refund {}", r.refund_no, r.payment_no, r.refund_fen);
    audit::record(c, r.created_at_ms, "ticket.rebook", &r.ticket_sn, detail)?;
    Ok(RebookSwap::Swapped)
}

pub fn rebooked_to(c: &Connection, old_ticket_sn: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT new_order_no FROM rebooks WHERE old_ticket_sn = ?1")?
        .query_row([old_ticket_sn], |r| r.get(0))
        .optional()
}
