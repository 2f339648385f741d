//! Records of the purchase flow (orders, payments, the outbox, tickets, the audit log) and the
//! rules that decide what a payment notify does. The rules are pure functions, so every backend
//! applies the same ones inside its own transaction.

use sha2::{Digest, Sha256};

macro_rules! status_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// Where an order is in its life (API.md's names).
    OrderStatus {
        PendingPayment = "PENDING_PAYMENT",
        Paid = "PAID",
        Ticketed = "TICKETED",
        Cancelled = "CANCELLED",
        Expired = "EXPIRED",
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        Refunded = "REFUNDED",
    }
}

impl OrderStatus {
    /// The state machine: every transition an order may take. Anything else is a bug or a race
    /// lost, and is refused.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (PendingPayment, Paid | Cancelled | Expired)
                | (Paid, Ticketed | Refunded)
                | (Ticketed, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }

    /// The order holds seats it must give back (no payment will come).
    pub fn is_dead(self) -> bool {
        matches!(self, OrderStatus::Cancelled | OrderStatus::Expired)
    }
}

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

/// An order to record; `legs_json` is the server's description of legs and seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_no: String,
    pub user_id: i64,
    pub idem_key: String,
    /// A hash of the request body: the same key with another body is refused.
    pub request_hash: Vec<u8>,
    pub amount_fen: i64,
    pub pay_before_ms: i64,
    pub created_at_ms: i64,
    pub legs_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_no: String,
    pub user_id: i64,
    pub idem_key: String,
    pub request_hash: Vec<u8>,
    pub status: OrderStatus,
    /// Bumped by every transition (optimistic locking).
    pub version: i64,
    pub amount_fen: i64,
    pub pay_before_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub legs_json: String,
    /// A dead order's seats were given back to the engine.
    pub seats_released: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOrder {
    Created(OrderRecord),
    /// The user already has an order with this idempotency key.
    Existing(OrderRecord),
}

/// Orders one `create_orders` call records.
pub const CREATE_BATCH_MAX: usize = 256;

/// A page of a user's orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub items: Vec<OrderRecord>,
    pub total: u64,
}

/// Largest page of orders a store returns.
pub const PAGE_SIZE_MAX: u32 = 100;

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

/// What the outbox asks the rest of the system to do, at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxEvent {
    /// Confirm the order's seats and issue its tickets.
    Ticket { order_no: String },
    /// Give a captured payment back through its channel.
    Refund { payment_no: String },
    /// A refunded ticket: its seat back to the engine, its money back through the channel.
    TicketRefund { refund_no: String },
}

impl OutboxEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxEvent::Ticket { .. } => "ticket",
            OutboxEvent::Refund { .. } => "refund",
            OutboxEvent::TicketRefund { .. } => "ticket_refund",
        }
    }
    pub fn subject(&self) -> &str {
        match self {
            OutboxEvent::Ticket { order_no } => order_no,
            OutboxEvent::Refund { payment_no } => payment_no,
            OutboxEvent::TicketRefund { refund_no } => refund_no,
        }
    }
    pub fn from_parts(kind: &str, subject: &str) -> Option<OutboxEvent> {
        match kind {
            "ticket" => Some(OutboxEvent::Ticket { order_no: subject.to_string() }),
            "refund" => Some(OutboxEvent::Refund { payment_no: subject.to_string() }),
            "ticket_refund" => Some(OutboxEvent::TicketRefund { refund_no: subject.to_string() }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub event: OutboxEvent,
    pub created_at_ms: i64,
}

/// Outbox rows one call hands out.
pub const OUTBOX_BATCH_MAX: u32 = 1_024;

status_enum! {
    TicketStatus {
        Issued = "ISSUED",
        CheckedIn = "CHECKED_IN",
        Refunded = "REFUNDED",
        Rebooked = "REBOOKED",
    }
}

status_enum! {
    /// A ticket refund: pending until the seat and the money went back.
    RefundStatus {
        Pending = "PENDING",
        Done = "DONE",
    }
}

/// A ticket refund as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRefundRecord {
    pub refund_no: String,
    pub ticket_sn: String,
    pub order_no: String,
    pub payment_no: String,
    pub refund_fen: i64,
    pub fee_fen: i64,
    pub status: RefundStatus,
    pub created_at_ms: i64,
}

/// What asking to refund a ticket found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundTicket {
    /// ISSUED → REFUNDED now, with this refund (and its outbox event, revocation and audit).
    Started(TicketRefundRecord),
    /// Refunded before: the same refund.
    Existing(TicketRefundRecord),
    /// Checked in or rebooked: not refundable.
    NotRefundable(TicketStatus),
    Unknown,
}

/// A revoked ticket, in the order gates sync them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub ticket_sn: String,
    pub revoked_at_ms: i64,
}

/// What an online check-in found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckIn {
    /// ISSUED → CHECKED_IN, now.
    Accepted,
    /// Checked in before, at this gate and time.
    AlreadyCheckedIn {
        gate_id: String,
        at_ms: i64,
    },
    /// Refunded or rebooked: the ticket is revoked.
    Revoked(TicketStatus),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    pub ticket_sn: String,
    pub order_no: String,
    pub user_id: i64,
    pub leg: i64,
    pub passenger_idx: i64,
    pub passenger_id: i64,
    pub run_id: String,
    pub from_station: String,
    pub to_station: String,
    pub class: String,
    pub coach: i64,
    pub seat: String,
    pub price_fen: i64,
    pub status: TicketStatus,
    /// The signed QR payload.
    pub qr: String,
    pub issued_at_ms: i64,
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

/// An entry to append to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// e.g. `payment.notify`, `payment.refund`.
    pub kind: String,
    /// What it is about (a payment number).
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The hash of the first entry's predecessor.
pub const AUDIT_GENESIS: [u8; 32] = [0; 32];

/// SHA-256 over the previous hash and every field, each length-prefixed so that no two
/// different entries hash alike.
pub fn audit_hash(prev: &[u8], seq: i64, e: &AuditEntry) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(e.at_ms.to_be_bytes());
    for field in [&e.kind, &e.subject, &e.detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_vec()
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit entry {seq}: its hash does not match its contents (edited)")]
    BadHash { seq: i64 },
    #[error("audit entry {seq}: it does not follow the entry before it (removed or reordered)")]
    BadLink { seq: i64 },
}

/// Check `records` (in sequence order) continue from `prev` (hash, seq); returns the new end.
pub fn verify_chain(prev: (Vec<u8>, i64), records: &[AuditRecord]) -> Result<(Vec<u8>, i64), ChainError> {
    let (mut hash, mut seq) = prev;
    for r in records {
        if r.seq != seq + 1 || r.prev_hash != hash {
            return Err(ChainError::BadLink { seq: r.seq });
        }
        if audit_hash(&r.prev_hash, r.seq, &r.entry) != r.hash {
            return Err(ChainError::BadHash { seq: r.seq });
        }
        (hash, seq) = (r.hash.clone(), r.seq);
    }
    Ok((hash, seq))
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
    fn state_machine_refuses_what_it_must() {
        use OrderStatus::*;
        assert!(PendingPayment.can_become(Paid));
        assert!(!Expired.can_become(Paid), "a dead order is never paid");
        assert!(!Ticketed.can_become(PendingPayment));
        assert!(!Paid.can_become(Cancelled), "a paid order is refunded, not cancelled");
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(*s));
            assert!(!s.can_become(PendingPayment));
        }
    }

    #[test]
    fn chain_detects_edits_and_gaps() {
        let mut records = Vec::new();
        let mut prev = AUDIT_GENESIS.to_vec();
        for seq in 1..=3 {
            let entry = AuditEntry { at_ms: seq, kind: "k".into(), subject: "s".into(), detail: format!("d{seq}") };
            let hash = audit_hash(&prev, seq, &entry);
            records.push(AuditRecord { seq, entry, prev_hash: prev.clone(), hash: hash.clone() });
            prev = hash;
        }
        let start = (AUDIT_GENESIS.to_vec(), 0);
        assert_eq!(verify_chain(start.clone(), &records).unwrap().1, 3);
        let mut edited = records.clone();
        edited[1].entry.detail = "forged".into();
        assert_eq!(verify_chain(start.clone(), &edited), Err(ChainError::BadHash { seq: 2 }));
        let mut gap = records.clone();
        gap.remove(1);
        assert_eq!(verify_chain(start, &gap), Err(ChainError::BadLink { seq: 3 }));
    }
}
