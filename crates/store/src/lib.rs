//! The storage boundary of chepiao: one [`Store`] trait, one implementation per relational
//! backend (`chepiao-store-sqlite`, the embedded default; `chepiao-store-postgres`), each with
//! its own migrations, as atuin does it. The server holds an `Arc<dyn Store>` and never knows
//! which backend it speaks to.
//!
//! The [`testsuite`] module (feature `testsuite`) is the one suite every backend must pass;
//! each backend's tests call it with a fresh, empty store.

use async_trait::async_trait;
use chepiao_domain::{NetworkData, RunId, ServiceDate};

#[cfg(feature = "testsuite")]
pub mod testsuite;

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

/// Longest date window one `ensure_runs`/`runs_between` call may cover.
pub const RUN_WINDOW_DAYS_MAX: i64 = 366;

/// Everything chepiao keeps in its relational database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
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
}

/// Check a date window against [`RUN_WINDOW_DAYS_MAX`].
pub fn check_window(first: ServiceDate, last: ServiceDate) -> Result<()> {
    let days = last.days_since(first);
    if !(0..RUN_WINDOW_DAYS_MAX).contains(&days) {
        return Err(StoreError::Limit(format!("run window {first}..{last} must be 1 to {RUN_WINDOW_DAYS_MAX} days")));
    }
    Ok(())
}
