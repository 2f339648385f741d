//! The outbox: what a committed transaction asks the rest of the system to do, at least once.
//! A row is written in the same transaction as the change that calls for it, and removed only
//! once its event was handled.
//!
//! A row's life: PENDING (due at `next_at_ms`) → SENT when handed to the bus (each hand-off is
//! an attempt; if no outcome arrives by `next_at_ms` the row is due again, so an event the bus
//! lost is handed again) → deleted when handled. A failed handling puts it back to PENDING
//! after a backoff ([`RetryPolicy`]); after `attempts_max` attempts it is DEAD, left for an
//! operator to look at and retry, and never blocks the events behind it.

use crate::error::Result;
use crate::status::status_enum;

status_enum! {
    /// Where an outbox row is in its life (see the module doc).
    OutboxState { Pending = "PENDING", Sent = "SENT", Dead = "DEAD" }
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
    pub state: OutboxState,
    /// Hand-offs so far.
    pub attempts: u32,
    /// When the row is due (PENDING), or handed again unless handled first (SENT).
    pub next_at_ms: i64,
    pub last_error: Option<String>,
}

/// How failed events are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after which a failing event is DEAD.
    pub attempts_max: u32,
    /// The wait after the first failure; it doubles per attempt up to `backoff_ms_max`.
    pub backoff_ms_min: i64,
    pub backoff_ms_max: i64,
}

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`, after `attempts` failed.
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(30);
        self.backoff_ms_min.saturating_mul(1 << doublings).min(self.backoff_ms_max)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts_max: 10, backoff_ms_min: 1_000, backoff_ms_max: 300_000 }
    }
}

/// Rows per state, for metrics and the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub sent: u64,
    pub dead: u64,
    /// When the oldest row not yet handled (pending or sent) was written.
    pub oldest_ms: Option<i64>,
}

/// Outbox rows one call hands out.
pub const OUTBOX_BATCH_MAX: u32 = 1_024;

/// An outbox row as a backend reads it ([`OUTBOX_COLUMNS`]), before [`outbox_row`] checks it.
#[derive(Debug, Clone)]
pub struct RawOutboxRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub created_at_ms: i64,
    pub state: String,
    pub attempts: i64,
    pub next_at_ms: i64,
    pub last_error: Option<String>,
}

/// The columns a backend selects for [`outbox_row`].
pub const OUTBOX_COLUMNS: &str = "id, kind, subject, created_at_ms, state, attempts, next_at_ms, last_error";

/// An outbox row as a backend reads it: its kind and state must be ones chepiao writes.
pub fn outbox_row(raw: RawOutboxRow) -> Result<OutboxRow> {
    let RawOutboxRow { id, kind, subject, created_at_ms, state, attempts, next_at_ms, last_error } = raw;
    let corrupt = |detail: String| crate::error::StoreError::Corrupt { table: "outbox", detail };
    let event = OutboxEvent::from_parts(&kind, &subject).ok_or_else(|| corrupt(format!("kind {kind:?}")))?;
    let state = OutboxState::parse(&state).ok_or_else(|| corrupt(format!("state {state:?}")))?;
    let attempts = u32::try_from(attempts).map_err(|_| corrupt(format!("attempts {attempts}")))?;
    Ok(OutboxRow { id, event, created_at_ms, state, attempts, next_at_ms, last_error })
}

/// A handling that failed: why, for the row's `last_error` (cut to [`ERROR_LEN_MAX`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxFailure {
    pub id: i64,
    pub error: String,
}

/// Characters of an error kept on a row.
pub const ERROR_LEN_MAX: usize = 500;

/// The error as a row keeps it.
pub fn error_text(e: &str) -> String {
    e.chars().take(ERROR_LEN_MAX).collect()
}

#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Rows due at `now_ms` (PENDING ones whose time came, SENT ones with no outcome in time),
    /// earliest first, at most `limit` (capped at [`OUTBOX_BATCH_MAX`]). DEAD rows never are.
    async fn outbox_due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxRow>>;
    /// Rows handed to the bus: SENT, one more attempt, due again at `redeliver_at_ms`.
    async fn outbox_sent(&self, ids: &[i64], redeliver_at_ms: i64) -> Result<()>;
    /// Rows the bus did not take (it is down): PENDING again, the attempt not counted.
    async fn outbox_unsent(&self, ids: &[i64], now_ms: i64) -> Result<()>;
    /// Rows handled: remove them.
    async fn outbox_done(&self, ids: &[i64]) -> Result<()>;
    /// Handlings that failed: PENDING after the policy's backoff, or DEAD once out of attempts.
    /// Returns the ids that went DEAD.
    async fn outbox_failed(&self, failures: &[OutboxFailure], policy: RetryPolicy, now_ms: i64) -> Result<Vec<i64>>;
    /// SENT rows back to PENDING (at start, when the bus was this process: what it had in hand
    /// died with it).
    async fn outbox_requeue_sent(&self, now_ms: i64) -> Result<u64>;
    /// Rows in `state` after id `after_id`, by id, at most `limit` (capped at [`OUTBOX_BATCH_MAX`]).
    async fn outbox_list(&self, state: OutboxState, after_id: i64, limit: u32) -> Result<Vec<OutboxRow>>;
    /// An operator's retry of a DEAD row: PENDING, attempts from zero, due now; the row as the
    /// retry left it. None when the row is not DEAD (or gone).
    async fn outbox_retry(&self, id: i64, now_ms: i64) -> Result<Option<OutboxRow>>;
    async fn outbox_counts(&self) -> Result<OutboxCounts>;
}
