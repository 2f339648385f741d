//! Payments and notifies in SQLite.

use chepiao_store::{
    NewPayment, Notify, NotifyOutcome, NotifyReads, OrderStatus, OutboxEvent, PaymentAudit, PaymentRecord,
    PaymentStatus, RefundDone, Unticketable, body_hash, plan_notifies,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::row::decode;
use crate::{audit, orders, outbox};

macro_rules! payment_cols {
    () => {
        "payment_no, order_no, channel, amount_fen, status, txn_id, created_at_ms, updated_at_ms"
    };
}

fn payment_row(r: &Row) -> rusqlite::Result<PaymentRecord> {
    Ok(PaymentRecord {
        payment_no: r.get(0)?,
        order_no: r.get(1)?,
        channel: r.get(2)?,
        amount_fen: r.get(3)?,
        status: decode(r, 4, PaymentStatus::parse)?,
        txn_id: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
    })
}

pub fn create(c: &Connection, ps: &[NewPayment]) -> rusqlite::Result<()> {
    let mut insert = c.prepare_cached(concat!(
        "INSERT INTO payments (",
        payment_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, 'CREATED', NULL, ?5, ?5)"
    ))?;
    for p in ps {
        insert.execute(params![p.payment_no, p.order_no, p.channel, p.amount_fen, p.created_at_ms])?;
    }
    Ok(())
}

pub fn get(c: &Connection, payment_no: &str) -> rusqlite::Result<Option<PaymentRecord>> {
    let mut q = c.prepare_cached(concat!("SELECT ", payment_cols!(), " FROM payments WHERE payment_no = ?1"))?;
    q.query_row([payment_no], payment_row).optional()
}

pub fn of_order(c: &Connection, order_no: &str) -> rusqlite::Result<Vec<PaymentRecord>> {
    let mut q = c.prepare_cached(concat!(
        "SELECT ",
        payment_cols!(),
        " FROM payments WHERE order_no = ?1 ORDER BY created_at_ms, payment_no"
    ))?;
    q.query_map([order_no], payment_row)?.collect()
}

/// Apply a batch of verified notifies (see `chepiao_store::payments`).
pub fn notifies(c: &Connection, ns: &[Notify]) -> rusqlite::Result<Vec<NotifyOutcome>> {
    let plan = plan_notifies(ns, read_for_notifies(c, ns)?);
    let mut update =
        c.prepare_cached("UPDATE payments SET status = ?1, txn_id = ?2, updated_at_ms = ?3 WHERE payment_no = ?4")?;
    for p in &plan.payments {
        update.execute(params![p.status.as_str(), p.txn_id, p.updated_at_ms, p.payment_no])?;
    }
    for no in &plan.paid_orders {
        let moved = orders::set_status(c, no, OrderStatus::PendingPayment, OrderStatus::Paid, plan.now_ms)?;
        // The order was read in this transaction, and SQLite has one writer.
        assert!(moved, "order {no} changed under the writer");
    }
    outbox::insert(c, &plan.outbox, plan.now_ms)?;
    audit::append(c, &plan.audit)?;
    Ok(plan.outcomes)
}

/// Record the batch's nonces (the fresh ones are the notifies' first sight), then read its
/// payments and their orders.
fn read_for_notifies(c: &Connection, ns: &[Notify]) -> rusqlite::Result<NotifyReads> {
    let mut reads = NotifyReads::default();
    let mut nonce = c.prepare_cached(
        "INSERT INTO notify_nonces (channel, nonce, seen_at_ms, body_hash) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )?;
    let mut seen = c.prepare_cached("SELECT body_hash FROM notify_nonces WHERE channel = ?1 AND nonce = ?2")?;
    for n in ns {
        let hash = body_hash(&n.raw);
        if nonce.execute(params![n.channel, n.nonce, n.received_at_ms, hash])? == 1 {
            reads.fresh_nonces.insert((n.channel.clone(), n.nonce.clone()));
        } else {
            let before: Option<Vec<u8>> =
                seen.query_row(params![n.channel, n.nonce], |r| r.get(0)).optional()?.flatten();
            if before.as_deref() == Some(&hash[..]) {
                reads.resent.insert((n.channel.clone(), n.nonce.clone(), hash));
            }
        }
    }
    let mut read = c.prepare_cached(concat!(
        "SELECT ",
        payment_cols!(),
        ", (SELECT status FROM orders o WHERE o.order_no = payments.order_no) FROM payments WHERE payment_no = ?1"
    ))?;
    for n in ns {
        if reads.payments.contains_key(&n.payment_no) {
            continue;
        }
        let found =
            read.query_row([&n.payment_no], |r| Ok((payment_row(r)?, decode(r, 8, OrderStatus::parse)?))).optional()?;
        if let Some((p, order)) = found {
            reads.orders.insert(p.order_no.clone(), order);
            reads.payments.insert(p.payment_no.clone(), p);
        }
    }
    Ok(reads)
}

pub fn prune_nonces(c: &Connection, before_ms: i64) -> rusqlite::Result<u64> {
    Ok(c.prepare_cached("DELETE FROM notify_nonces WHERE seen_at_ms < ?1")?.execute([before_ms])? as u64)
}

/// The order's captured payments go to the refund outbox (REFUND_PENDING).
pub(crate) fn refund_captured(c: &Connection, order_no: &str, now_ms: i64) -> rusqlite::Result<usize> {
    let mut q = c.prepare_cached(
        "UPDATE payments SET status = 'REFUND_PENDING', updated_at_ms = ?1
         WHERE order_no = ?2 AND status = 'SUCCESS' RETURNING payment_no",
    )?;
    let refunds: Vec<OutboxEvent> = q
        .query_map(params![now_ms, order_no], |r| Ok(OutboxEvent::Refund { payment_no: r.get(0)? }))?
        .collect::<rusqlite::Result<_>>()?;
    outbox::insert(c, &refunds, now_ms)?;
    Ok(refunds.len())
}

pub fn unticketable(c: &Connection, u: &Unticketable) -> rusqlite::Result<bool> {
    if !orders::set_status(c, &u.order_no, OrderStatus::Paid, OrderStatus::Refunded, u.now_ms)? {
        return Ok(false);
    }
    refund_captured(c, &u.order_no, u.now_ms)?;
    audit::record(c, u.now_ms, "order.unticketable", &u.order_no, u.reason.clone())?;
    Ok(true)
}

pub fn complete_refund(c: &Connection, r: &RefundDone) -> rusqlite::Result<bool> {
    let done = c
        .prepare_cached(
            "UPDATE payments SET status = 'REFUNDED', updated_at_ms = ?1
             WHERE payment_no = ?2 AND status = 'REFUND_PENDING'",
        )?
        .execute(params![r.now_ms, r.payment_no])?;
    if done == 0 {
        return Ok(false);
    }
    audit::record(c, r.now_ms, "payment.refund", &r.payment_no, format!("refund {}", r.refund_id))?;
    Ok(true)
}

pub fn audit_payments(c: &Connection) -> rusqlite::Result<PaymentAudit> {
    let mut q = c.prepare_cached(
        "SELECT p.payment_no, p.status, o.status FROM payments p JOIN orders o ON o.order_no = p.order_no
         WHERE p.status IN ('SUCCESS', 'REFUND_PENDING', 'REFUNDED')",
    )?;
    let mut audit = PaymentAudit::default();
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        audit.count(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?, &r.get::<_, String>(2)?);
    }
    Ok(audit)
}
