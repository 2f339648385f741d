//! The outbox: what a committed transaction asks the rest of the system to do, at least once.
//! A row is written in the same transaction as the change that calls for it, and removed only
//! once the event bus has it.

use crate::error::Result;

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

/// An outbox row as a backend reads it: its kind must be one chepiao writes.
pub fn outbox_row(id: i64, kind: &str, subject: &str, created_at_ms: i64) -> Result<OutboxRow> {
    let event = OutboxEvent::from_parts(kind, subject)
        .ok_or_else(|| crate::error::StoreError::Corrupt { table: "outbox", detail: format!("kind {kind:?}") })?;
    Ok(OutboxRow { id, event, created_at_ms })
}

#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// The oldest outbox rows not yet handled, at most `limit` (capped at [`OUTBOX_BATCH_MAX`]).
    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxRow>>;
    /// Rows handled: remove them.
    async fn outbox_done(&self, ids: &[i64]) -> Result<()>;
}
