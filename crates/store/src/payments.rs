//! Payments and the rules of a payment channel's notify.
//!
//! A batch of notifies is applied in one transaction in three steps, the middle one pure and
//! shared by both backends: the backend records the nonces and reads the payments and their
//! orders; [`plan_notifies`] decides every notify in arrival order against the state the
//! earlier ones left; the backend writes the plan (payments, orders, outbox, audit).

use std::collections::{HashMap, HashSet};

use crate::audit::AuditEntry;
use crate::error::Result;
use crate::orders::OrderStatus;
use crate::outbox::OutboxEvent;
use crate::status::status_enum;

status_enum! {
    /// A payment attempt. `RefundPending` waits for the channel to give the money back.
    PaymentStatus {
        Created = "CREATED",
        Success = "SUCCESS",
        Failed = "FAILED",
        RefundPending = "REFUND_PENDING",
        Refunded = "REFUNDED",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub payment_no: String,
    pub order_no: String,
    pub channel: String,
    pub amount_fen: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub payment_no: String,
    pub order_no: String,
    pub channel: String,
    pub amount_fen: i64,
    pub status: PaymentStatus,
    /// The channel's own transaction id, once it reported one.
    pub txn_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A verified payment notify (signature and timestamp already checked by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub channel: String,
    pub payment_no: String,
    pub amount_fen: i64,
    pub success: bool,
    pub txn_id: String,
    pub nonce: String,
    /// The raw body, for the audit log.
    pub raw: String,
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// No such payment on this channel.
    UnknownPayment,
    /// This nonce was seen before: a replayed message. Nothing changed.
    Replayed,
    /// The amount differs from the payment's. Nothing changed but the audit log.
    AmountMismatch { expected_fen: i64 },
    /// The payment was settled already (a provider's retry). Nothing changed.
    Duplicate { status: PaymentStatus },
    /// The payer's payment failed; the order may be paid again.
    Failed,
    /// Payment captured: the order is PAID and an outbox row asks for its tickets.
    Paid { order_no: String },
    /// Payment captured for an order that can no longer be paid (expired, cancelled or paid
    /// by another payment): an outbox row asks for the refund.
    RefundDue { order_no: String, order_status: OrderStatus },
}

/// What a notify does to the rows it touches; computed by [`decide_notify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEffect {
    pub outcome: NotifyOutcome,
    pub payment_to: Option<PaymentStatus>,
    pub order_to: Option<OrderStatus>,
    pub outbox: Option<OutboxEvent>,
}

/// The rules of a notify, given the payment and its order as they are inside the transaction.
pub fn decide_notify(n: &Notify, payment: Option<&PaymentRecord>, order_status: Option<OrderStatus>) -> NotifyEffect {
    let effect = |outcome, payment_to, order_to, outbox| NotifyEffect { outcome, payment_to, order_to, outbox };
    let (Some(p), Some(order_status)) = (payment, order_status) else {
        return effect(NotifyOutcome::UnknownPayment, None, None, None);
    };
    if p.amount_fen != n.amount_fen {
        return effect(NotifyOutcome::AmountMismatch { expected_fen: p.amount_fen }, None, None, None);
    }
    if p.status != PaymentStatus::Created {
        return effect(NotifyOutcome::Duplicate { status: p.status }, None, None, None);
    }
    if !n.success {
        return effect(NotifyOutcome::Failed, Some(PaymentStatus::Failed), None, None);
    }
    let order_no = p.order_no.clone();
    if order_status == OrderStatus::PendingPayment {
        let outbox = OutboxEvent::Ticket { order_no: order_no.clone() };
        return effect(
            NotifyOutcome::Paid { order_no },
            Some(PaymentStatus::Success),
            Some(OrderStatus::Paid),
            Some(outbox),
        );
    }
    let outbox = OutboxEvent::Refund { payment_no: p.payment_no.clone() };
    effect(NotifyOutcome::RefundDue { order_no, order_status }, Some(PaymentStatus::RefundPending), None, Some(outbox))
}

/// What a backend read for a batch of notifies, inside its transaction.
#[derive(Debug, Default)]
pub struct NotifyReads {
    /// (channel, nonce) pairs this batch recorded for the first time.
    pub fresh_nonces: HashSet<(String, String)>,
    /// (channel, nonce, body hash) seen before: the same bytes again are a provider's resend.
    pub resent: HashSet<(String, String, Vec<u8>)>,
    /// The batch's payments, by number.
    pub payments: HashMap<String, PaymentRecord>,
    /// The status of their orders, by order number.
    pub orders: HashMap<String, OrderStatus>,
}

/// What a batch of notifies writes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NotifyPlan {
    /// One per notify, in order.
    pub outcomes: Vec<NotifyOutcome>,
    /// Payments whose status (and txn id) changed, as they end up.
    pub payments: Vec<PaymentRecord>,
    /// Orders that go PENDING_PAYMENT → PAID.
    pub paid_orders: Vec<String>,
    pub outbox: Vec<OutboxEvent>,
    /// One entry per notify: every one that passed the signature check is audited.
    pub audit: Vec<AuditEntry>,
    /// The time the writes carry: the latest notify's.
    pub now_ms: i64,
}

/// The hash a notify's nonce is recorded with: the same bytes again are a resend.
pub fn body_hash(raw: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(raw.as_bytes()).to_vec()
}

/// Decide a batch of notifies in order, each against the state the earlier ones left.
pub fn plan_notifies(ns: &[Notify], mut reads: NotifyReads) -> NotifyPlan {
    let mut plan = NotifyPlan { now_ms: ns.iter().map(|n| n.received_at_ms).max().unwrap_or(0), ..Default::default() };
    let mut changed: Vec<String> = Vec::new();
    for n in ns {
        let nonce = (n.channel.clone(), n.nonce.clone());
        let same_bytes = (n.channel.clone(), n.nonce.clone(), body_hash(&n.raw));
        let outcome = if reads.resent.contains(&same_bytes) && !reads.fresh_nonces.contains(&nonce) {
            // The same bytes again: answered as the duplicate it is, with no effect.
            match reads.payments.get(&n.payment_no).filter(|p| p.channel == n.channel) {
                Some(p) => NotifyOutcome::Duplicate { status: p.status },
                None => NotifyOutcome::UnknownPayment,
            }
        } else if !reads.fresh_nonces.remove(&nonce) {
            NotifyOutcome::Replayed
        } else {
            // A later copy of these bytes in this batch is a resend.
            reads.resent.insert(same_bytes);
            let payment = reads.payments.get_mut(&n.payment_no).filter(|p| p.channel == n.channel);
            let order = payment.as_ref().and_then(|p| reads.orders.get(&p.order_no).copied());
            let effect = decide_notify(n, payment.as_deref(), order);
            if let Some(p) = payment {
                if let Some(to) = effect.payment_to {
                    p.status = to;
                    p.txn_id = Some(n.txn_id.clone());
                    p.updated_at_ms = plan.now_ms;
                    changed.push(p.payment_no.clone());
                }
                if let Some(to) = effect.order_to {
                    debug_assert_eq!(to, OrderStatus::Paid);
                    // Seen by the order's other payments later in the batch.
                    reads.orders.insert(p.order_no.clone(), to);
                    plan.paid_orders.push(p.order_no.clone());
                }
            }
            plan.outbox.extend(effect.outbox);
            effect.outcome
        };
        plan.audit.push(AuditEntry {
            at_ms: n.received_at_ms,
            kind: format!("payment.notify.{}", n.channel),
            subject: n.payment_no.clone(),
            detail: format!("{outcome:?} {}", n.raw),
        });
        plan.outcomes.push(outcome);
    }
    changed.sort();
    changed.dedup();
    plan.payments = changed.into_iter().map(|no| reads.payments.remove(&no).expect("changed above")).collect();
    plan
}

/// Where every captured payment stands: the I2 check that `chepiao load` ends with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentAudit {
    /// Payments whose money was taken (success, refund pending, refunded).
    pub captured: u64,
    /// ... whose order got its tickets.
    pub ticketed: u64,
    /// ... given back.
    pub refunded: u64,
    /// Captured but neither ticketed nor refunded yet (at most [`STUCK_LISTED_MAX`] listed).
    pub in_flight: Vec<String>,
    pub in_flight_total: u64,
}

pub const STUCK_LISTED_MAX: usize = 100;

impl PaymentAudit {
    pub fn count(&mut self, payment_no: &str, status: &str, order_status: &str) {
        self.captured += 1;
        let ticketed = ["TICKETED", "PARTIALLY_REFUNDED", "REFUNDED"].contains(&order_status);
        match status {
            "SUCCESS" if ticketed => self.ticketed += 1,
            "REFUNDED" => self.refunded += 1,
            _ => {
                self.in_flight_total += 1;
                if self.in_flight.len() < STUCK_LISTED_MAX {
                    self.in_flight.push(payment_no.to_string());
                }
            }
        }
    }
}

/// A refund of a whole captured payment, once the channel gave the money back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundDone {
    pub payment_no: String,
    pub refund_id: String,
    pub now_ms: i64,
}

/// A paid order whose seats could not be confirmed: refunded instead of ticketed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unticketable {
    pub order_no: String,
    pub reason: String,
    pub now_ms: i64,
}

#[async_trait::async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// Record payments (at most [`crate::error::CREATE_BATCH_MAX`]): all or none.
    async fn create_payments(&self, ps: &[NewPayment]) -> Result<()>;
    async fn create_payment(&self, p: &NewPayment) -> Result<()> {
        self.create_payments(std::slice::from_ref(p)).await
    }
    async fn payment(&self, payment_no: &str) -> Result<Option<PaymentRecord>>;
    async fn payments_of(&self, order_no: &str) -> Result<Vec<PaymentRecord>>;
    /// Apply verified notifies (at most [`crate::error::CREATE_BATCH_MAX`]) in one transaction:
    /// nonces, payments, orders, outbox, audit (see the module doc).
    async fn apply_notifies(&self, ns: &[Notify]) -> Result<Vec<NotifyOutcome>>;
    async fn apply_notify(&self, n: &Notify) -> Result<NotifyOutcome> {
        let mut out = self.apply_notifies(std::slice::from_ref(n)).await?;
        Ok(out.pop().expect("one outcome per notify"))
    }
    /// Forget nonces seen before `before_ms` (older notifies fail the timestamp check anyway).
    async fn prune_nonces(&self, before_ms: i64) -> Result<u64>;
    /// PAID → REFUNDED when its seats could not be confirmed; its payments go to the refund
    /// outbox. False when the order was not PAID.
    async fn refund_unticketable(&self, u: &Unticketable) -> Result<bool>;
    /// REFUND_PENDING → REFUNDED once the channel gave the money back. False when it was not pending.
    async fn complete_refund(&self, r: &RefundDone) -> Result<bool>;
    /// Where every captured payment stands (I2).
    async fn payment_audit(&self) -> Result<PaymentAudit>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(status: PaymentStatus) -> PaymentRecord {
        PaymentRecord {
            payment_no: "P1".into(),
            order_no: "E1".into(),
            channel: "mockpay".into(),
            amount_fen: 100,
            status,
            txn_id: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn notify(amount_fen: i64, success: bool) -> Notify {
        Notify {
            channel: "mockpay".into(),
            payment_no: "P1".into(),
            amount_fen,
            success,
            txn_id: "T1".into(),
            nonce: "n".into(),
            raw: "{}".into(),
            received_at_ms: 0,
        }
    }

    #[test]
    fn notify_rules() {
        let p = payment(PaymentStatus::Created);
        let pending = Some(OrderStatus::PendingPayment);
        assert_eq!(decide_notify(&notify(100, true), None, None).outcome, NotifyOutcome::UnknownPayment);
        let e = decide_notify(&notify(99, true), Some(&p), pending);
        assert_eq!(e.outcome, NotifyOutcome::AmountMismatch { expected_fen: 100 });
        assert_eq!((e.payment_to, e.order_to, e.outbox), (None, None, None), "a wrong amount changes nothing");
        let e = decide_notify(&notify(100, true), Some(&p), pending);
        assert_eq!(e.order_to, Some(OrderStatus::Paid));
        assert_eq!(e.outbox, Some(OutboxEvent::Ticket { order_no: "E1".into() }));
        let e = decide_notify(&notify(100, true), Some(&payment(PaymentStatus::Success)), Some(OrderStatus::Paid));
        assert_eq!(e.outcome, NotifyOutcome::Duplicate { status: PaymentStatus::Success });
        for dead in [OrderStatus::Expired, OrderStatus::Cancelled, OrderStatus::Paid] {
            let e = decide_notify(&notify(100, true), Some(&p), Some(dead));
            assert_eq!(e.payment_to, Some(PaymentStatus::RefundPending), "{dead}");
            assert_eq!(e.order_to, None);
            assert_eq!(e.outbox, Some(OutboxEvent::Refund { payment_no: "P1".into() }));
        }
        let e = decide_notify(&notify(100, false), Some(&p), pending);
        assert_eq!((e.outcome, e.payment_to, e.order_to), (NotifyOutcome::Failed, Some(PaymentStatus::Failed), None));
    }

    #[test]
    fn a_batch_is_decided_in_order() {
        let mut second = payment(PaymentStatus::Created);
        second.payment_no = "P2".into();
        let mut reads = NotifyReads::default();
        for nonce in ["a", "c"] {
            reads.fresh_nonces.insert(("mockpay".into(), nonce.into()));
        }
        reads.payments.insert("P1".into(), payment(PaymentStatus::Created));
        reads.payments.insert("P2".into(), second);
        reads.orders.insert("E1".into(), OrderStatus::PendingPayment);
        let n = |payment_no: &str, nonce: &str| Notify {
            payment_no: payment_no.into(),
            nonce: nonce.into(),
            ..notify(100, true)
        };
        // The same bytes twice are a provider's resend; other bytes reusing the nonce, a replay.
        let forged = Notify { raw: "{\"nonce\":\"a\",\"forged\":1}".into(), ..n("P1", "a") };
        let plan = plan_notifies(&[n("P1", "a"), n("P1", "a"), forged, n("P2", "c")], reads);
        assert_eq!(
            plan.outcomes,
            [
                NotifyOutcome::Paid { order_no: "E1".into() },
                NotifyOutcome::Duplicate { status: PaymentStatus::Success },
                NotifyOutcome::Replayed,
                NotifyOutcome::RefundDue { order_no: "E1".into(), order_status: OrderStatus::Paid },
            ]
        );
        assert_eq!(plan.paid_orders, ["E1"]);
        assert_eq!(
            plan.payments.iter().map(|p| p.status).collect::<Vec<_>>(),
            [PaymentStatus::Success, PaymentStatus::RefundPending]
        );
        assert_eq!(plan.audit.len(), 4, "every notify is audited, resends and replays too");
    }
}
