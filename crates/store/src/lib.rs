//! The storage boundary of chepiao: one [`Store`] trait, one implementation per relational
//! backend (`chepiao-store-sqlite`, the embedded default; `chepiao-store-postgres`), each with
//! its own migrations, as atuin does it. The server holds an `Arc<dyn Store>` and never knows
//! which backend it speaks to.
//!
//! The [`testsuite`] module (feature `testsuite`) is the one suite every backend must pass;
//! each backend's tests call it with a fresh, empty store.

use async_trait::async_trait;
use chepiao_domain::network::{Station, Stop, Train};
use chepiao_domain::{NetworkData, RunId, ServiceDate};

#[macro_use]
pub mod flow;
pub mod after_sale;
#[doc(hidden)]
pub mod after_sale_sql;
#[doc(hidden)]
pub mod flow_sql;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod writer;

pub use after_sale::*;
pub use flow::*;

/// Errors a store reports. Backends map their driver errors into these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// Migrations failed or the schema is newer than this binary.
    #[error("migration error: {0}")]
    Migration(String),
    /// The store holds a value the domain refuses (a corrupt or hand-edited row).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// A request exceeded an explicit limit of the store.
    #[error("limit exceeded: {0}")]
    Limit(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether a run is on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Scheduled,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Cancelled => "CANCELLED",
        }
    }
    pub fn parse(s: &str) -> Option<RunStatus> {
        match s {
            "SCHEDULED" => Some(RunStatus::Scheduled),
            "CANCELLED" => Some(RunStatus::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: RunId,
    pub status: RunStatus,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    /// PHC string (argon2id).
    pub password_hash: String,
}

/// A passenger to store; PII already encrypted by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPassenger {
    pub user_id: i64,
    pub name_enc: Vec<u8>,
    pub id_type: String,
    pub id_no_enc: Vec<u8>,
    /// Keyed hash of the ID number: unique per user.
    pub id_no_index: Vec<u8>,
    pub created_at_ms: i64,
}

/// A passenger as stored (PII still encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassengerRecord {
    pub id: i64,
    pub user_id: i64,
    pub name_enc: Vec<u8>,
    pub id_type: String,
    pub id_no_enc: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddPassenger {
    Added(i64),
    /// The user already has a passenger with this ID number.
    Duplicate,
    /// The user has the most passengers allowed.
    TooMany,
}

/// Longest date window one `ensure_runs`/`runs_between` call may cover.
pub const RUN_WINDOW_DAYS_MAX: i64 = 366;

/// The purchase flow's rows: orders, payments, the outbox, tickets and the audit log. Both
/// backends implement it with the same SQL (see `flow_sql`).
#[async_trait]
pub trait FlowStore: Send + Sync + 'static {
    /// Record a new order, or return the user's order with the same idempotency key.
    async fn create_order(&self, o: &NewOrder) -> Result<CreateOrder>;
    /// [`FlowStore::create_order`] for many orders in one statement (at most
    /// [`CREATE_BATCH_MAX`]); answers in the order given.
    async fn create_orders(&self, orders: &[NewOrder]) -> Result<Vec<CreateOrder>>;
    async fn order(&self, order_no: &str) -> Result<Option<OrderRecord>>;
    /// Every order in order_no order after `after_no`, for audits.
    async fn orders_after(&self, after_no: &str, limit: u32) -> Result<Vec<OrderRecord>>;
    /// The user's order with this idempotency key.
    async fn order_by_key(&self, user_id: i64, idem_key: &str) -> Result<Option<OrderRecord>>;
    /// A user's orders, newest first; `page` from 1, `page_size` up to [`PAGE_SIZE_MAX`].
    async fn orders_of(
        &self,
        user_id: i64,
        status: Option<OrderStatus>,
        page: u32,
        page_size: u32,
    ) -> Result<OrderPage>;
    /// Move `order` to `to` if it is still as read (status and version): optimistic locking.
    /// None when another writer moved it first. Panics on a transition the state machine forbids.
    async fn transition_order(&self, order: &OrderRecord, to: OrderStatus, now_ms: i64) -> Result<Option<OrderRecord>>;
    /// Expire up to `limit` unpaid orders whose pay window closed; returns them.
    async fn expire_orders(&self, now_ms: i64, limit: u32) -> Result<Vec<OrderRecord>>;
    /// Cancelled or expired orders whose seats were not yet given back.
    async fn unreleased_orders(&self, limit: u32) -> Result<Vec<OrderRecord>>;
    async fn mark_seats_released(&self, order_no: &str) -> Result<()>;

    async fn create_payment(&self, p: &NewPayment) -> Result<()>;
    /// Many payments in one statement (at most [`CREATE_BATCH_MAX`]): all recorded or none.
    async fn create_payments(&self, ps: &[NewPayment]) -> Result<()>;
    async fn payment(&self, payment_no: &str) -> Result<Option<PaymentRecord>>;
    async fn payments_of(&self, order_no: &str) -> Result<Vec<PaymentRecord>>;
    /// Apply a verified notify in one transaction: nonce, payment, order, outbox, audit.
    async fn apply_notify(&self, n: &Notify) -> Result<NotifyOutcome>;
    /// [`FlowStore::apply_notify`] for many notifies (at most [`CREATE_BATCH_MAX`]) in one
    /// transaction, decided in the order given.
    async fn apply_notifies(&self, ns: &[Notify]) -> Result<Vec<NotifyOutcome>>;
    /// Forget nonces seen before `before_ms` (older notifies fail the timestamp check anyway).
    async fn prune_nonces(&self, before_ms: i64) -> Result<u64>;

    /// The oldest outbox rows not yet handled, at most `limit` (capped at [`OUTBOX_BATCH_MAX`]).
    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxRow>>;
    /// Rows handled: remove them.
    async fn outbox_done(&self, ids: &[i64]) -> Result<()>;

    /// PAID → TICKETED with its tickets, in one transaction. False when the order was not PAID
    /// (another issuer got there first).
    async fn issue_tickets(&self, order_no: &str, tickets: &[TicketRecord], now_ms: i64) -> Result<bool>;
    /// [`FlowStore::issue_tickets`] for many orders in one transaction; returns the orders
    /// that were PAID and are now TICKETED.
    async fn issue_tickets_many(&self, batch: &[(String, Vec<TicketRecord>)], now_ms: i64) -> Result<Vec<String>>;
    /// The orders among `order_nos` that exist.
    async fn orders_in(&self, order_nos: &[String]) -> Result<Vec<OrderRecord>>;
    /// PAID → REFUNDED when its seats could not be confirmed; its payments go to the refund
    /// outbox. False when the order was not PAID.
    async fn refund_unticketable(&self, order_no: &str, reason: &str, now_ms: i64) -> Result<bool>;
    /// REFUND_PENDING → REFUNDED once the channel gave the money back. False when it was not pending.
    async fn complete_refund(&self, payment_no: &str, refund_id: &str, now_ms: i64) -> Result<bool>;
    async fn tickets_of(&self, order_no: &str) -> Result<Vec<TicketRecord>>;
    async fn ticket(&self, ticket_sn: &str) -> Result<Option<TicketRecord>>;
    /// Tickets in ticket_sn order after `after_sn`, for audits.
    async fn tickets_after(&self, after_sn: &str, limit: u32) -> Result<Vec<TicketRecord>>;
    /// Check a ticket in at a gate: ISSUED → CHECKED_IN exactly once, ever (I5).
    async fn check_in(&self, ticket_sn: &str, gate_id: &str, station: &str, at_ms: i64) -> Result<CheckIn>;
    /// Refund an ISSUED ticket (see [`RefundTicket`]): in one transaction the ticket goes
    /// REFUNDED, the refund row, the revocation, the order's status, an outbox event and an
    /// audit entry are written. A new refund is PENDING whatever `r.status` says.
    async fn refund_ticket(&self, r: &TicketRefundRecord) -> Result<RefundTicket>;
    async fn ticket_refund(&self, refund_no: &str) -> Result<Option<TicketRefundRecord>>;
    /// PENDING → DONE once seat and money went back. False when it was done already.
    async fn complete_ticket_refund(&self, refund_no: &str, channel_refund_id: &str, now_ms: i64) -> Result<bool>;
    /// Revocations after cursor `after_seq`, oldest first.
    async fn revocations(&self, after_seq: i64, limit: u32) -> Result<Vec<Revocation>>;
    /// Where every captured payment stands (I2).
    async fn payment_audit(&self) -> Result<PaymentAudit>;

    async fn audit_append(&self, e: &AuditEntry) -> Result<i64>;
    /// Audit entries after `after_seq`, in order.
    async fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>>;
}

/// Everything chepiao keeps in its relational database.
#[async_trait]
pub trait Store: FlowStore + AfterSaleStore + Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// A cheap round trip to the database, for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Write the network (stations, trains and their stops) in one transaction. Stations and
    /// trains are upserted by telecode and code; a train's stops are replaced. Re-importing the
    /// same data changes nothing.
    async fn save_network(&self, data: &NetworkData) -> Result<()>;

    /// The stored network; empty when nothing was imported yet.
    async fn load_network(&self) -> Result<NetworkData>;

    /// Make sure every train has a run on every date in `[first, last]`; existing runs (and
    /// their status) are left alone. Returns how many runs were created.
    async fn ensure_runs(&self, first: ServiceDate, last: ServiceDate) -> Result<u64>;

    /// The runs dated within `[first, last]`.
    async fn runs_between(&self, first: ServiceDate, last: ServiceDate) -> Result<Vec<RunRecord>>;

    /// Set a run's status (an operator cancels a run, or puts it back on sale). False when
    /// there is no such run.
    async fn set_run_status(&self, run: &RunId, status: RunStatus) -> Result<bool>;

    /// Create a user; None when the username is taken.
    async fn create_user(&self, username: &str, password_hash: &str, created_at_ms: i64) -> Result<Option<i64>>;

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>>;

    /// Add a passenger to a user's list, unless it is a duplicate or the list is full
    /// (`max_per_user`).
    async fn add_passenger(&self, p: &NewPassenger, max_per_user: u32) -> Result<AddPassenger>;

    /// A user's passengers, oldest first.
    async fn passengers(&self, user_id: i64) -> Result<Vec<PassengerRecord>>;
}

/// Check a date window against [`RUN_WINDOW_DAYS_MAX`].
pub fn check_window(first: ServiceDate, last: ServiceDate) -> Result<()> {
    let days = last.days_since(first);
    if !(0..RUN_WINDOW_DAYS_MAX).contains(&days) {
        return Err(StoreError::Limit(format!("run window {first}..{last} must be 1 to {RUN_WINDOW_DAYS_MAX} days")));
    }
    Ok(())
}

fn parse<T: std::str::FromStr>(table: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| StoreError::Corrupt { table, detail: format!("{s:?}: {e}") })
}

fn unsigned(table: &'static str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt { table, detail: format!("{v} is not a u32") })
}

/// A `stations` row as a backend reads it.
pub struct StationRow<'a> {
    pub telecode: &'a str,
    pub name: String,
    pub pinyin: String,
    pub initials: String,
    pub city: String,
    pub country: Option<String>,
}

impl StationRow<'_> {
    pub fn into_station(self) -> Result<Station> {
        Ok(Station {
            telecode: parse("stations", self.telecode)?,
            name: self.name,
            pinyin: self.pinyin,
            initials: self.initials,
            city: self.city,
            country: self.country,
        })
    }
}

/// A `stops` row as a backend reads it (integers widened to i64).
pub struct StopRow<'a> {
    pub train_code: &'a str,
    pub telecode: &'a str,
    pub arrive_min: Option<i64>,
    pub depart_min: Option<i64>,
    pub km: i64,
}

/// Trains from `stops` rows ordered by (train code, seq): the shared half of `load_network`.
pub fn trains_from_rows<'a>(rows: impl IntoIterator<Item = StopRow<'a>>) -> Result<Vec<Train>> {
    let mut trains: Vec<Train> = Vec::new();
    for r in rows {
        if trains.last().is_none_or(|t| t.code.as_str() != r.train_code) {
            trains.push(Train { code: parse("stops", r.train_code)?, stops: Vec::new() });
        }
        let stop = Stop {
            telecode: parse("stops", r.telecode)?,
            arrive_min: r.arrive_min.map(|m| unsigned("stops", m)).transpose()?,
            depart_min: r.depart_min.map(|m| unsigned("stops", m)).transpose()?,
            km: unsigned("stops", r.km)?,
        };
        trains.last_mut().expect("pushed above").stops.push(stop);
    }
    Ok(trains)
}
