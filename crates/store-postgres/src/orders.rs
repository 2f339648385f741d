//! Orders in PostgreSQL.

use chepiao_store::{
    AUDIT_PAGE_MAX, CreateOrder, NewOrder, OrderLine, OrderPage, OrderRecord, OrderStatus, Overlap, PageQuery,
    PurchaseFacts, PurchaseQuery, Transition, Trip, UnpaidOrder,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::row::status;

/// The columns of an order, in the order [`order_row`] reads them.
macro_rules! order_cols {
    () => {
        "order_no, user_id, idem_key, request_hash, status, version, amount_fen, pay_before_ms, created_at_ms, \
         updated_at_ms, legs_json, seats_released"
    };
}

pub(crate) fn order_row(r: &PgRow) -> sqlx::Result<OrderRecord> {
    Ok(OrderRecord {
        order_no: r.try_get(0)?,
        user_id: r.try_get(1)?,
        idem_key: r.try_get(2)?,
        request_hash: r.try_get(3)?,
        status: status(r, 4, OrderStatus::parse)?,
        version: r.try_get(5)?,
        amount_fen: r.try_get(6)?,
        pay_before_ms: r.try_get(7)?,
        created_at_ms: r.try_get(8)?,
        updated_at_ms: r.try_get(9)?,
        legs_json: r.try_get(10)?,
        seats_released: r.try_get::<i64, _>(11)? != 0,
    })
}

/// Insert the orders in one statement; keys taken (before, or earlier in the batch) find the
/// order that holds them.
pub async fn create(c: &mut PgConnection, orders: &[NewOrder]) -> sqlx::Result<Vec<CreateOrder>> {
    let col = |f: fn(&NewOrder) -> String| orders.iter().map(f).collect::<Vec<_>>();
    let num = |f: fn(&NewOrder) -> i64| orders.iter().map(f).collect::<Vec<_>>();
    let rows = sqlx::query(concat!(
        "INSERT INTO orders (",
        order_cols!(),
        ", kind, source) SELECT o, u, k, h, 'PENDING_PAYMENT', 0, a, p, t, t, l, 0, kd, s
         FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[],
                     $8::text[], $9::text[], $10::text[]) AS n(o, u, k, h, a, p, t, l, kd, s)
         ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING ",
        order_cols!()
    ))
    .bind(col(|o| o.order_no.clone()))
    .bind(num(|o| o.user_id))
    .bind(col(|o| o.idem_key.clone()))
    .bind(orders.iter().map(|o| o.request_hash.clone()).collect::<Vec<_>>())
    .bind(num(|o| o.amount_fen))
    .bind(num(|o| o.pay_before_ms))
    .bind(num(|o| o.created_at_ms))
    .bind(col(|o| o.legs_json.clone()))
    .bind(col(|o| o.kind.as_str().to_string()))
    .bind(col(|o| o.source.clone()))
    .fetch_all(&mut *c)
    .await?;
    let mut created = std::collections::HashMap::new();
    for r in &rows {
        let o = order_row(r)?;
        created.insert(o.order_no.clone(), o);
    }
    let (mut hold_ids, mut hold_orders) = (Vec::new(), Vec::new());
    let fresh: Vec<&NewOrder> = orders.iter().filter(|o| created.contains_key(&o.order_no)).collect();
    for o in &fresh {
        hold_ids.extend(o.holds.iter().copied());
        hold_orders.extend(o.holds.iter().map(|_| o.order_no.clone()));
    }
    insert_holds(&mut *c, &hold_ids, &hold_orders).await?;
    insert_trips(&mut *c, &fresh).await?;
    insert_lines(&mut *c, &fresh).await?;
    let mut out = Vec::with_capacity(orders.len());
    for o in orders {
        out.push(match created.remove(&o.order_no) {
            Some(rec) => CreateOrder::Created(rec),
            None => {
                CreateOrder::Existing(by_key(&mut *c, o.user_id, &o.idem_key).await?.ok_or(sqlx::Error::RowNotFound)?)
            }
        });
    }
    Ok(out)
}

/// Record which order carries each hold (parallel lists), in the caller's transaction.
pub(crate) async fn insert_holds(c: &mut PgConnection, holds: &[i64], order_nos: &[String]) -> sqlx::Result<()> {
    if holds.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO order_holds (hold_id, order_no) SELECT * FROM UNNEST($1::bigint[], $2::text[])")
        .bind(holds)
        .bind(order_nos)
        .execute(c)
        .await?;
    Ok(())
}

/// The passengers' trips of new orders.
async fn insert_trips(c: &mut PgConnection, fresh: &[&NewOrder]) -> sqlx::Result<()> {
    let trips: Vec<(&str, &Trip)> =
        fresh.iter().flat_map(|o| o.trips.iter().map(|t| (o.order_no.as_str(), t))).collect();
    if trips.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO trips (order_no, leg, passenger_id, person, departs_at_ms, arrives_at_ms)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[])",
    )
    .bind(trips.iter().map(|(o, _)| o.to_string()).collect::<Vec<_>>())
    .bind(trips.iter().map(|(_, t)| t.leg).collect::<Vec<_>>())
    .bind(trips.iter().map(|(_, t)| t.passenger_id).collect::<Vec<_>>())
    .bind(trips.iter().map(|(_, t)| t.person.clone()).collect::<Vec<_>>())
    .bind(trips.iter().map(|(_, t)| t.departs_at_ms).collect::<Vec<_>>())
    .bind(trips.iter().map(|(_, t)| t.arrives_at_ms).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// The new orders' lines for the sales statistics.
async fn insert_lines(c: &mut PgConnection, fresh: &[&NewOrder]) -> sqlx::Result<()> {
    let lines: Vec<(&NewOrder, &OrderLine)> = fresh.iter().flat_map(|o| o.lines.iter().map(move |l| (*o, l))).collect();
    if lines.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO order_lines (order_no, leg, day, train_code, class, status, source, seats, amount_fen)
         SELECT o, l, d, t, c, 'PENDING_PAYMENT', s, n, a
         FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
              AS u(o, l, d, t, c, s, n, a)",
    )
    .bind(lines.iter().map(|(o, _)| o.order_no.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|(_, l)| l.leg).collect::<Vec<_>>())
    .bind(lines.iter().map(|(_, l)| l.day.to_string()).collect::<Vec<_>>())
    .bind(lines.iter().map(|(_, l)| l.train_code.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|(_, l)| l.class.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|(o, _)| o.source.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|(_, l)| l.seats).collect::<Vec<_>>())
    .bind(lines.iter().map(|(_, l)| l.amount_fen).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

/// What the purchase rules need to know about a user before an order.
pub async fn purchase_facts(c: &sqlx::PgPool, q: &PurchaseQuery) -> sqlx::Result<PurchaseFacts> {
    let unpaid: Option<(String, String)> = sqlx::query_as(
        "SELECT order_no, idem_key FROM orders
         WHERE user_id = $1 AND created_at_ms >= $2 AND status = 'PENDING_PAYMENT' AND kind <> 'wish' LIMIT 1",
    )
    .bind(q.user_id)
    .bind(q.since_ms)
    .fetch_optional(c)
    .await?;
    let cancelled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders
         WHERE user_id = $1 AND created_at_ms >= $2 AND status = 'CANCELLED' AND updated_at_ms >= $3
           AND kind <> 'wish'",
    )
    .bind(q.user_id)
    .bind(q.since_ms)
    .bind(q.day_start_ms)
    .fetch_one(c)
    .await?;
    let overlaps: Vec<(i64, String)> = sqlx::query_as(
        // The same person in any account; another account's order is not named to this user.
        "SELECT DISTINCT ON (q.p) q.p, CASE WHEN o.user_id = $6 THEN t.order_no ELSE '' END
         FROM UNNEST($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[]) AS q(p, person, d, a)
         JOIN trips t ON t.person = q.person AND t.departs_at_ms < q.a AND t.arrives_at_ms > q.d
         JOIN orders o ON o.order_no = t.order_no
         WHERE t.order_no <> $5
           AND o.status IN ('PENDING_PAYMENT', 'PAID', 'TICKETED', 'PARTIALLY_REFUNDED')
           AND NOT EXISTS (SELECT 1 FROM tickets k WHERE k.order_no = t.order_no AND k.leg = t.leg
                           AND k.passenger_id = t.passenger_id AND k.status IN ('REFUNDED', 'REBOOKED'))",
    )
    .bind(q.trips.iter().map(|t| t.passenger_id).collect::<Vec<_>>())
    .bind(q.trips.iter().map(|t| t.person.clone()).collect::<Vec<_>>())
    .bind(q.trips.iter().map(|t| t.departs_at_ms).collect::<Vec<_>>())
    .bind(q.trips.iter().map(|t| t.arrives_at_ms).collect::<Vec<_>>())
    .bind(q.ignore_order.as_deref().unwrap_or(""))
    .bind(q.user_id)
    .fetch_all(c)
    .await?;
    let unpaid = unpaid.map(|(order_no, idem_key)| UnpaidOrder { order_no, idem_key });
    let overlaps = overlaps.into_iter().map(|(passenger_id, order_no)| Overlap { passenger_id, order_no }).collect();
    Ok(PurchaseFacts { unpaid, cancelled_today: cancelled as u32, overlaps })
}

/// Which of `holds` an order carries.
pub async fn known_holds<'e>(c: impl PgExecutor<'e>, holds: &[i64]) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT hold_id FROM order_holds WHERE hold_id = ANY($1)").bind(holds).fetch_all(c).await
}

pub async fn hold_id_max<'e>(c: impl PgExecutor<'e>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(hold_id), 0) FROM order_holds").fetch_one(c).await
}

pub async fn get<'e>(c: impl PgExecutor<'e>, order_no: &str) -> sqlx::Result<Option<OrderRecord>> {
    let row = sqlx::query(concat!("SELECT ", order_cols!(), " FROM orders WHERE order_no = $1"))
        .bind(order_no)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(order_row).transpose()
}

pub async fn many<'e>(c: impl PgExecutor<'e>, order_nos: &[String]) -> sqlx::Result<Vec<OrderRecord>> {
    let rows = sqlx::query(concat!("SELECT ", order_cols!(), " FROM orders WHERE order_no = ANY($1)"))
        .bind(order_nos)
        .fetch_all(c)
        .await?;
    rows.iter().map(order_row).collect()
}

pub async fn after<'e>(c: impl PgExecutor<'e>, after_no: &str, limit: u32) -> sqlx::Result<Vec<OrderRecord>> {
    let rows =
        sqlx::query(concat!("SELECT ", order_cols!(), " FROM orders WHERE order_no > $1 ORDER BY order_no LIMIT $2"))
            .bind(after_no)
            .bind(i64::from(limit.min(AUDIT_PAGE_MAX)))
            .fetch_all(c)
            .await?;
    rows.iter().map(order_row).collect()
}

pub async fn by_key<'e>(c: impl PgExecutor<'e>, user_id: i64, idem_key: &str) -> sqlx::Result<Option<OrderRecord>> {
    let row = sqlx::query(concat!("SELECT ", order_cols!(), " FROM orders WHERE user_id = $1 AND idem_key = $2"))
        .bind(user_id)
        .bind(idem_key)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(order_row).transpose()
}

pub async fn page(c: &sqlx::PgPool, q: &PageQuery) -> sqlx::Result<OrderPage> {
    let status = q.status.map_or("", |s| s.as_str());
    let rows = sqlx::query(concat!(
        "SELECT ",
        order_cols!(),
        " FROM orders WHERE user_id = $1 AND ($2 = '' OR status = $2)
         ORDER BY created_at_ms DESC, order_no DESC LIMIT $3 OFFSET $4"
    ))
    .bind(q.user_id)
    .bind(status)
    .bind(i64::from(q.page_size))
    .bind(q.offset())
    .fetch_all(c)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = $1 AND ($2 = '' OR status = $2)")
        .bind(q.user_id)
        .bind(status)
        .fetch_one(c)
        .await?;
    Ok(OrderPage { items: rows.iter().map(order_row).collect::<sqlx::Result<_>>()?, total: total as u64 })
}

pub async fn transition(c: &mut PgConnection, t: &Transition) -> sqlx::Result<Option<OrderRecord>> {
    let row = sqlx::query(concat!(
        "UPDATE orders SET status = $1, version = version + 1, updated_at_ms = $2
         WHERE order_no = $3 AND status = $4 AND version = $5 RETURNING ",
        order_cols!()
    ))
    .bind(t.to.as_str())
    .bind(t.now_ms)
    .bind(&t.order_no)
    .bind(t.from.as_str())
    .bind(t.version)
    .fetch_optional(c)
    .await?;
    row.as_ref().map(order_row).transpose()
}

pub async fn expire(c: &mut PgConnection, now_ms: i64, limit: u32) -> sqlx::Result<Vec<OrderRecord>> {
    let rows = sqlx::query(concat!(
        "UPDATE orders SET status = 'EXPIRED', version = version + 1, updated_at_ms = $1
         WHERE order_no IN (SELECT order_no FROM orders WHERE status = 'PENDING_PAYMENT'
                            AND pay_before_ms <= $1 ORDER BY pay_before_ms LIMIT $2)
         AND status = 'PENDING_PAYMENT' RETURNING ",
        order_cols!()
    ))
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?;
    rows.iter().map(order_row).collect()
}

pub async fn unreleased<'e>(c: impl PgExecutor<'e>, limit: u32) -> sqlx::Result<Vec<OrderRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        order_cols!(),
        " FROM orders WHERE seats_released = 0 AND status IN ('CANCELLED', 'EXPIRED') LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?;
    rows.iter().map(order_row).collect()
}

pub async fn mark_released(c: &mut PgConnection, order_no: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE orders SET seats_released = 1 WHERE order_no = $1").bind(order_no).execute(c).await?;
    Ok(())
}

/// Move the orders among `order_nos` that have status `from` to `to`; returns those moved.
pub(crate) async fn set_status(
    c: &mut PgConnection,
    order_nos: &[String],
    from: OrderStatus,
    to: OrderStatus,
    now_ms: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "UPDATE orders SET status = $1, version = version + 1, updated_at_ms = $2
         WHERE order_no = ANY($3) AND status = $4 RETURNING order_no",
    )
    .bind(to.as_str())
    .bind(now_ms)
    .bind(order_nos)
    .bind(from.as_str())
    .fetch_all(c)
    .await
}
