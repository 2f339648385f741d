//! Orders in SQLite.

use chepiao_store::{
    CreateOrder, NewOrder, OrderLine, OrderPage, OrderRecord, OrderStatus, Overlap, PageQuery, PurchaseFacts,
    PurchaseQuery, Transition, Trip, UnpaidOrder,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::row::decode;

/// The columns of an order, in the order [`order_row`] reads them.
macro_rules! order_cols {
    () => {
        "order_no, user_id, idem_key, request_hash, status, version, amount_fen, pay_before_ms, created_at_ms, \
         updated_at_ms, legs_json, seats_released"
    };
}

pub(crate) fn order_row(r: &Row) -> rusqlite::Result<OrderRecord> {
    Ok(OrderRecord {
        order_no: r.get(0)?,
        user_id: r.get(1)?,
        idem_key: r.get(2)?,
        request_hash: r.get(3)?,
        status: decode(r, 4, OrderStatus::parse)?,
        version: r.get(5)?,
        amount_fen: r.get(6)?,
        pay_before_ms: r.get(7)?,
        created_at_ms: r.get(8)?,
        updated_at_ms: r.get(9)?,
        legs_json: r.get(10)?,
        seats_released: r.get::<_, i64>(11)? != 0,
    })
}

pub fn create(c: &Connection, orders: &[NewOrder]) -> rusqlite::Result<Vec<CreateOrder>> {
    let mut insert = c.prepare_cached(concat!(
        "INSERT INTO orders (",
        order_cols!(),
        ", kind, source) VALUES (?1, ?2, ?3, ?4, 'PENDING_PAYMENT', 0, ?5, ?6, ?7, ?7, ?8, 0, ?9, ?10)
         ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING ",
        order_cols!()
    ))?;
    let mut out = Vec::with_capacity(orders.len());
    for o in orders {
        let created = insert
            .query_row(
                params![
                    o.order_no,
                    o.user_id,
                    o.idem_key,
                    o.request_hash,
                    o.amount_fen,
                    o.pay_before_ms,
                    o.created_at_ms,
                    o.legs_json,
                    o.kind.as_str(),
                    o.source
                ],
                order_row,
            )
            .optional()?;
        out.push(match created {
            Some(rec) => {
                insert_holds(c, &rec.order_no, &o.holds)?;
                insert_trips(c, &rec.order_no, &o.trips)?;
                insert_lines(c, &rec.order_no, &o.source, &o.lines)?;
                CreateOrder::Created(rec)
            }
            // The user's key was taken, before or earlier in this batch.
            None => CreateOrder::Existing(by_key(c, o.user_id, &o.idem_key)?.expect("the conflicting order exists")),
        });
    }
    Ok(out)
}

/// Record the engine holds `order_no` carries, in the caller's transaction.
pub(crate) fn insert_holds(c: &Connection, order_no: &str, holds: &[i64]) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached("INSERT INTO order_holds (hold_id, order_no) VALUES (?1, ?2)")?;
    for hold in holds {
        q.execute(params![hold, order_no])?;
    }
    Ok(())
}

/// Record the passengers' trips of `order_no`, in the caller's transaction.
pub(crate) fn insert_trips(c: &Connection, order_no: &str, trips: &[Trip]) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached(
        "INSERT INTO trips (order_no, leg, passenger_id, person, departs_at_ms, arrives_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for t in trips {
        q.execute(params![order_no, t.leg, t.passenger_id, t.person, t.departs_at_ms, t.arrives_at_ms])?;
    }
    Ok(())
}

/// Record a new order's lines for the sales statistics, in the caller's transaction.
pub(crate) fn insert_lines(c: &Connection, order_no: &str, source: &str, lines: &[OrderLine]) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached(
        "INSERT INTO order_lines (day, train_code, class, order_no, leg, status, source, seats, amount_fen)
         VALUES (?1, ?2, ?3, ?4, ?5, 'PENDING_PAYMENT', ?6, ?7, ?8)",
    )?;
    for l in lines {
        q.execute(params![l.day.to_string(), l.train_code, l.class, order_no, l.leg, source, l.seats, l.amount_fen])?;
    }
    Ok(())
}

/// A live trip: its order is live, and its passenger's ticket on that leg (if issued) is not
/// refunded or rebooked.
const LIVE_TRIP: &str = "o.status IN ('PENDING_PAYMENT', 'PAID', 'TICKETED', 'PARTIALLY_REFUNDED')
    AND NOT EXISTS (SELECT 1 FROM tickets k WHERE k.order_no = t.order_no AND k.leg = t.leg
                    AND k.passenger_id = t.passenger_id AND k.status IN ('REFUNDED', 'REBOOKED'))";

/// What the purchase rules need to know about a user before an order.
pub fn purchase_facts(c: &Connection, q: &PurchaseQuery) -> rusqlite::Result<PurchaseFacts> {
    let unpaid = c
        .prepare_cached(
            "SELECT order_no, idem_key FROM orders INDEXED BY orders_by_user
             WHERE user_id = ?1 AND created_at_ms >= ?2 AND status = 'PENDING_PAYMENT' AND kind <> 'wish' LIMIT 1",
        )?
        .query_row(params![q.user_id, q.since_ms], |r| Ok(UnpaidOrder { order_no: r.get(0)?, idem_key: r.get(1)? }))
        .optional()?;
    let cancelled_today = c
        .prepare_cached(
            "SELECT count(*) FROM orders INDEXED BY orders_by_user
             WHERE user_id = ?1 AND created_at_ms >= ?2 AND status = 'CANCELLED' AND updated_at_ms >= ?3
               AND kind <> 'wish'",
        )?
        .query_row(params![q.user_id, q.since_ms, q.day_start_ms], |r| r.get(0))?;
    // The same person in any account; another account's order is not named to this user.
    let sql = format!(
        "SELECT CASE WHEN o.user_id = ?4 THEN t.order_no ELSE '' END
         FROM trips t JOIN orders o ON o.order_no = t.order_no
         WHERE t.person = ?1 AND t.departs_at_ms < ?3 AND t.arrives_at_ms > ?2 AND t.order_no <> ?5
           AND {LIVE_TRIP} LIMIT 1"
    );
    let mut overlapping = c.prepare_cached(&sql)?;
    let ignore = q.ignore_order.as_deref().unwrap_or("");
    let mut overlaps = Vec::new();
    for trip in &q.trips {
        let found: Option<String> = overlapping
            .query_row(params![trip.person, trip.departs_at_ms, trip.arrives_at_ms, q.user_id, ignore], |r| r.get(0))
            .optional()?;
        overlaps.extend(found.map(|order_no| Overlap { passenger_id: trip.passenger_id, order_no }));
    }
    Ok(PurchaseFacts { unpaid, cancelled_today, overlaps })
}

/// Which of `holds` an order carries.
pub fn known_holds(c: &Connection, holds: &[i64]) -> rusqlite::Result<Vec<i64>> {
    let mut q = c.prepare_cached("SELECT 1 FROM order_holds WHERE hold_id = ?1")?;
    let mut known = Vec::new();
    for &hold in holds {
        if q.exists([hold])? {
            known.push(hold);
        }
    }
    Ok(known)
}

pub fn hold_id_max(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT coalesce(max(hold_id), 0) FROM order_holds")?.query_row([], |r| r.get(0))
}

pub fn get(c: &Connection, order_no: &str) -> rusqlite::Result<Option<OrderRecord>> {
    let mut q = c.prepare_cached(concat!("SELECT ", order_cols!(), " FROM orders WHERE order_no = ?1"))?;
    q.query_row([order_no], order_row).optional()
}

pub fn many(c: &Connection, order_nos: &[String]) -> rusqlite::Result<Vec<OrderRecord>> {
    let mut out = Vec::with_capacity(order_nos.len());
    for no in order_nos {
        out.extend(get(c, no)?);
    }
    Ok(out)
}

pub fn after(c: &Connection, after_no: &str, limit: u32) -> rusqlite::Result<Vec<OrderRecord>> {
    let mut q = c.prepare_cached(concat!(
        "SELECT ",
        order_cols!(),
        " FROM orders WHERE order_no > ?1 ORDER BY order_no LIMIT ?2"
    ))?;
    q.query_map(params![after_no, limit.min(chepiao_store::AUDIT_PAGE_MAX)], order_row)?.collect()
}

pub fn by_key(c: &Connection, user_id: i64, idem_key: &str) -> rusqlite::Result<Option<OrderRecord>> {
    let mut q =
        c.prepare_cached(concat!("SELECT ", order_cols!(), " FROM orders WHERE user_id = ?1 AND idem_key = ?2"))?;
    q.query_row(params![user_id, idem_key], order_row).optional()
}

pub fn page(c: &Connection, q: &PageQuery) -> rusqlite::Result<OrderPage> {
    let status = q.status.map_or("", |s| s.as_str());
    let mut items = c.prepare_cached(concat!(
        "SELECT ",
        order_cols!(),
        " FROM orders WHERE user_id = ?1 AND (?2 = '' OR status = ?2)
         ORDER BY created_at_ms DESC, order_no DESC LIMIT ?3 OFFSET ?4"
    ))?;
    let items = items
        .query_map(params![q.user_id, status, q.page_size, q.offset()], order_row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut total = c.prepare_cached("SELECT count(*) FROM orders WHERE user_id = ?1 AND (?2 = '' OR status = ?2)")?;
    let total: i64 = total.query_row(params![q.user_id, status], |r| r.get(0))?;
    Ok(OrderPage { items, total: total as u64 })
}

pub fn transition(c: &Connection, t: &Transition) -> rusqlite::Result<Option<OrderRecord>> {
    let mut q = c.prepare_cached(concat!(
        "UPDATE orders SET status = ?1, version = version + 1, updated_at_ms = ?2
         WHERE order_no = ?3 AND status = ?4 AND version = ?5 RETURNING ",
        order_cols!()
    ))?;
    q.query_row(params![t.to.as_str(), t.now_ms, t.order_no, t.from.as_str(), t.version], order_row).optional()
}

pub fn expire(c: &Connection, now_ms: i64, limit: u32) -> rusqlite::Result<Vec<OrderRecord>> {
    let mut q = c.prepare_cached(concat!(
        "UPDATE orders SET status = 'EXPIRED', version = version + 1, updated_at_ms = ?1
         WHERE order_no IN (SELECT order_no FROM orders WHERE status = 'PENDING_PAYMENT'
                            AND pay_before_ms <= ?1 ORDER BY pay_before_ms LIMIT ?2)
         AND status = 'PENDING_PAYMENT' RETURNING ",
        order_cols!()
    ))?;
    q.query_map(params![now_ms, limit], order_row)?.collect()
}

pub fn unreleased(c: &Connection, limit: u32) -> rusqlite::Result<Vec<OrderRecord>> {
    let mut q = c.prepare_cached(concat!(
        "SELECT ",
        order_cols!(),
        " FROM orders WHERE seats_released = 0 AND status IN ('CANCELLED', 'EXPIRED') LIMIT ?1"
    ))?;
    q.query_map([limit], order_row)?.collect()
}

pub fn mark_released(c: &Connection, order_no: &str) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE orders SET seats_released = 1 WHERE order_no = ?1")?.execute([order_no])?;
    Ok(())
}

/// One order's status move, guarded by the status it must have; whether it moved.
pub(crate) fn set_status(
    c: &Connection,
    order_no: &str,
    from: OrderStatus,
    to: OrderStatus,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let mut q = c.prepare_cached(
        "UPDATE orders SET status = ?1, version = version + 1, updated_at_ms = ?2 WHERE order_no = ?3 AND status = ?4",
    )?;
    Ok(q.execute(params![to.as_str(), now_ms, order_no, from.as_str()])? == 1)
}
