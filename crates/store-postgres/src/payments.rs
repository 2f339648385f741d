//! Payments and notifies in PostgreSQL: a batch of notifies is a fixed number of statements
//! (nonces, one locked read, then one statement each for payments, orders, outbox and audit).

use chepiao_store::{
    NewPayment, Notify, NotifyOutcome, NotifyReads, OrderStatus, OutboxEvent, PaymentAudit, PaymentRecord,
    PaymentStatus, RefundDone, Unticketable, body_hash, plan_notifies,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::row::status;
use crate::{audit, orders, outbox};

macro_rules! payment_cols {
    () => {
        "payment_no, order_no, channel, amount_fen, status, txn_id, created_at_ms, updated_at_ms"
    };
}

fn payment_row(r: &PgRow) -> sqlx::Result<PaymentRecord> {
    Ok(PaymentRecord {
        payment_no: r.try_get(0)?,
        order_no: r.try_get(1)?,
        channel: r.try_get(2)?,
        amount_fen: r.try_get(3)?,
        status: status(r, 4, PaymentStatus::parse)?,
        txn_id: r.try_get(5)?,
        created_at_ms: r.try_get(6)?,
        updated_at_ms: r.try_get(7)?,
    })
}

pub async fn create(c: &mut PgConnection, ps: &[NewPayment]) -> sqlx::Result<()> {
    let col = |f: fn(&NewPayment) -> String| ps.iter().map(f).collect::<Vec<_>>();
    sqlx::query(concat!(
        "INSERT INTO payments (",
        payment_cols!(),
        ") SELECT p, o, ch, a, 'CREATED', NULL, t, t
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS n(p, o, ch, a, t)"
    ))
    .bind(col(|p| p.payment_no.clone()))
    .bind(col(|p| p.order_no.clone()))
    .bind(col(|p| p.channel.clone()))
    .bind(ps.iter().map(|p| p.amount_fen).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.created_at_ms).collect::<Vec<_>>())
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get<'e>(c: impl PgExecutor<'e>, payment_no: &str) -> sqlx::Result<Option<PaymentRecord>> {
    let row = sqlx::query(concat!("SELECT ", payment_cols!(), " FROM payments WHERE payment_no = $1"))
        .bind(payment_no)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(payment_row).transpose()
}

pub async fn of_order<'e>(c: impl PgExecutor<'e>, order_no: &str) -> sqlx::Result<Vec<PaymentRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        payment_cols!(),
        " FROM payments WHERE order_no = $1 ORDER BY created_at_ms, payment_no"
    ))
    .bind(order_no)
    .fetch_all(c)
    .await?;
    rows.iter().map(payment_row).collect()
}

/// Apply a batch of verified notifies (see `chepiao_store::payments`).
pub async fn notifies(c: &mut PgConnection, ns: &[Notify]) -> sqlx::Result<Vec<NotifyOutcome>> {
    let plan = plan_notifies(ns, read_for_notifies(c, ns).await?);
    let p = &plan.payments;
    sqlx::query(
        "UPDATE payments p SET status = n.s, txn_id = n.x, updated_at_ms = $4
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS n(no, s, x) WHERE p.payment_no = n.no",
    )
    .bind(p.iter().map(|p| p.payment_no.clone()).collect::<Vec<_>>())
    .bind(p.iter().map(|p| p.status.as_str()).collect::<Vec<_>>())
    .bind(p.iter().map(|p| p.txn_id.clone()).collect::<Vec<_>>())
    .bind(plan.now_ms)
    .execute(&mut *c)
    .await?;
    let paid =
        orders::set_status(c, &plan.paid_orders, OrderStatus::PendingPayment, OrderStatus::Paid, plan.now_ms).await?;
    // The rows were read and locked in this transaction.
    assert_eq!(paid.len(), plan.paid_orders.len(), "orders changed under their lock");
    outbox::insert(c, &plan.outbox, plan.now_ms).await?;
    audit::append(c, &plan.audit).await?;
    Ok(plan.outcomes)
}

/// Record the batch's nonces (the fresh ones are the notifies' first sight), then read and
/// lock its payments and their orders.
async fn read_for_notifies(c: &mut PgConnection, ns: &[Notify]) -> sqlx::Result<NotifyReads> {
    let mut reads = NotifyReads::default();
    let hashes: Vec<Vec<u8>> = ns.iter().map(|n| body_hash(&n.raw)).collect();
    let rows = sqlx::query(
        "INSERT INTO notify_nonces (channel, nonce, seen_at_ms, body_hash)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bytea[]) ON CONFLICT DO NOTHING
         RETURNING channel, nonce",
    )
    .bind(ns.iter().map(|n| n.channel.clone()).collect::<Vec<_>>())
    .bind(ns.iter().map(|n| n.nonce.clone()).collect::<Vec<_>>())
    .bind(ns.iter().map(|n| n.received_at_ms).collect::<Vec<_>>())
    .bind(&hashes)
    .fetch_all(&mut *c)
    .await?;
    for r in &rows {
        reads.fresh_nonces.insert((r.try_get(0)?, r.try_get(1)?));
    }
    // Nonces seen before: the same bytes again are a resend.
    let seen: Vec<(String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT n.channel, n.nonce, n.body_hash FROM notify_nonces n
         JOIN UNNEST($1::text[], $2::text[]) AS b(c, x) ON n.channel = b.c AND n.nonce = b.x",
    )
    .bind(ns.iter().map(|n| n.channel.clone()).collect::<Vec<_>>())
    .bind(ns.iter().map(|n| n.nonce.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *c)
    .await?;
    for (channel, nonce, hash) in seen {
        if let Some(hash) = hash.filter(|h| hashes.contains(h)) {
            reads.resent.insert((channel, nonce, hash));
        }
    }
    let rows = sqlx::query(
        "SELECT p.payment_no, p.order_no, p.channel, p.amount_fen, p.status, p.txn_id, p.created_at_ms,
                p.updated_at_ms, o.status
         FROM payments p JOIN orders o ON o.order_no = p.order_no WHERE p.payment_no = ANY($1) FOR UPDATE",
    )
    .bind(ns.iter().map(|n| n.payment_no.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *c)
    .await?;
    for r in &rows {
        let p = payment_row(r)?;
        reads.orders.insert(p.order_no.clone(), status(r, 8, OrderStatus::parse)?);
        reads.payments.insert(p.payment_no.clone(), p);
    }
    Ok(reads)
}

pub async fn prune_nonces(c: &mut PgConnection, before_ms: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM notify_nonces WHERE seen_at_ms < $1").bind(before_ms).execute(c).await?;
    Ok(done.rows_affected())
}

/// The order's captured payments go to the refund outbox (REFUND_PENDING); how many.
pub(crate) async fn refund_captured(c: &mut PgConnection, order_no: &str, now_ms: i64) -> sqlx::Result<usize> {
    let nos: Vec<String> = sqlx::query_scalar(
        "UPDATE payments SET status = 'REFUND_PENDING', updated_at_ms = $1
         WHERE order_no = $2 AND status = 'SUCCESS' RETURNING payment_no",
    )
    .bind(now_ms)
    .bind(order_no)
    .fetch_all(&mut *c)
    .await?;
    let events: Vec<OutboxEvent> = nos.into_iter().map(|payment_no| OutboxEvent::Refund { payment_no }).collect();
    outbox::insert(c, &events, now_ms).await?;
    Ok(events.len())
}

pub async fn unticketable(c: &mut PgConnection, u: &Unticketable) -> sqlx::Result<bool> {
    let nos = [u.order_no.clone()];
    if orders::set_status(c, &nos, OrderStatus::Paid, OrderStatus::Refunded, u.now_ms).await?.is_empty() {
        return Ok(false);
    }
    refund_captured(c, &u.order_no, u.now_ms).await?;
    audit::record(c, u.now_ms, "order.unticketable", &u.order_no, u.reason.clone()).await?;
    Ok(true)
}

pub async fn complete_refund(c: &mut PgConnection, r: &RefundDone) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE payments SET status = 'REFUNDED', updated_at_ms = $1 WHERE payment_no = $2 AND status = 'REFUND_PENDING'",
    )
    .bind(r.now_ms)
    .bind(&r.payment_no)
    .execute(&mut *c)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    audit::record(c, r.now_ms, "payment.refund", &r.payment_no, format!("refund {}", r.refund_id)).await?;
    Ok(true)
}

pub async fn audit_payments<'e>(c: impl PgExecutor<'e>) -> sqlx::Result<PaymentAudit> {
    let rows = sqlx::query(
        "SELECT p.payment_no, p.status, o.status FROM payments p JOIN orders o ON o.order_no = p.order_no
         WHERE p.status IN ('SUCCESS', 'REFUND_PENDING', 'REFUNDED')",
    )
    .fetch_all(c)
    .await?;
    let mut audit = PaymentAudit::default();
    for r in &rows {
        audit.count(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    }
    Ok(audit)
}
