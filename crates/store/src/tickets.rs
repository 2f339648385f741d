//! Tickets: issued once per order (PAID → TICKETED with its tickets, one transaction), checked
//! in once ever (I5), refunded once with the revocation gates sync.

use crate::error::Result;
use crate::status::status_enum;

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

/// One order's tickets, to issue with its move PAID → TICKETED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTickets {
    pub order_no: String,
    pub tickets: Vec<TicketRecord>,
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

/// A ticket refund finished: seat and money went back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRefundDone {
    pub refund_no: String,
    pub channel_refund_id: String,
    pub now_ms: i64,
}

/// A revoked ticket, in the order gates sync them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub ticket_sn: String,
    pub revoked_at_ms: i64,
}

/// A gate's scan of a ticket, to check it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub ticket_sn: String,
    pub gate_id: String,
    pub station: String,
    pub at_ms: i64,
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

#[async_trait::async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// PAID → TICKETED with its tickets, for every order of `batch` still PAID, in one
    /// transaction; returns the orders moved (the others were ticketed or refunded already).
    async fn issue_tickets(&self, batch: &[OrderTickets], now_ms: i64) -> Result<Vec<String>>;
    async fn tickets_of(&self, order_no: &str) -> Result<Vec<TicketRecord>>;
    async fn ticket(&self, ticket_sn: &str) -> Result<Option<TicketRecord>>;
    /// Tickets in ticket_sn order after `after_sn`, for audits.
    async fn tickets_after(&self, after_sn: &str, limit: u32) -> Result<Vec<TicketRecord>>;
    /// Check a ticket in at a gate: ISSUED → CHECKED_IN exactly once, ever (I5).
    async fn check_in(&self, scan: &Scan) -> Result<CheckIn>;
    /// Refund an ISSUED ticket (see [`RefundTicket`]): in one transaction the ticket goes
    /// REFUNDED, the refund row, the revocation, the order's status, an outbox event and an
    /// audit entry are written. A new refund is PENDING whatever `r.status` says.
    async fn refund_ticket(&self, r: &TicketRefundRecord) -> Result<RefundTicket>;
    async fn ticket_refund(&self, refund_no: &str) -> Result<Option<TicketRefundRecord>>;
    /// PENDING → DONE once seat and money went back. False when it was done already.
    async fn complete_ticket_refund(&self, done: &TicketRefundDone) -> Result<bool>;
    /// Revocations after cursor `after_seq`, oldest first.
    async fn revocations(&self, after_seq: i64, limit: u32) -> Result<Vec<Revocation>>;
}
