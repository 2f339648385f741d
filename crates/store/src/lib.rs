//! The storage boundary of chepiao: what it keeps in its relational database, as records and
//! traits, one module per aggregate; one implementation per backend, each with its own
//! migrations, as atuin does it (`chepiao-store-sqlite`, the embedded default, on rusqlite;
//! `chepiao-store-postgres` on sqlx). The rest of chepiao holds an `Arc<dyn Store>` and never
//! knows which backend it speaks to.
//!
//! How the parts fit, in the order an order lives:
//! - [`network`]: stations, trains, their stops and runs (a train on a date);
//! - [`users`]: accounts and their passengers (PII arrives encrypted);
//! - [`orders`]: an order is a seat hold with a pay window; its state machine;
//! - [`payments`]: payments and the rules of a channel's notify ([`payments::plan_notifies`]:
//!   pure, so that both backends apply the same decisions inside their own transaction);
//! - [`outbox`]: what a committed transaction asks the rest of the system to do, at least once;
//! - [`tickets`]: issued tickets, check-ins, refunds and the revocations gates sync;
//! - [`audit`]: the append-only, hash-chained log ([`audit::chain`] computes new entries);
//! - [`after_sale`]: rebooking, the waitlist and its notifications;
//! - [`stats`]: sales statistics for operators (a line per order leg, grouped by SQL);
//! - [`lease`]: which seat engine a database belongs to (one per database for now).
//!
//! Why the SQL is written per backend rather than shared: the embedded default writes from one
//! thread that owns its SQLite connection and runs each batch's statements itself (rusqlite,
//! synchronous, prepared statements cached), while PostgreSQL is driven asynchronously over
//! the network (sqlx). Sharing one SQL text would mean either a generic layer with a wall of
//! driver bounds or giving up the in-thread writer; two plain files per aggregate read better.
//! What must not differ between backends is not SQL but decisions, and those live here as pure
//! functions, checked by one suite ([`testsuite`], feature `testsuite`) that both pass.

pub mod after_sale;
pub mod audit;
pub mod error;
pub mod lease;
pub mod network;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod stats;
mod status;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod tickets;
pub mod users;

pub use after_sale::*;
pub use audit::*;
pub use error::{CREATE_BATCH_MAX, Result, StoreError, check_batch_len, parse};
pub use lease::*;
pub use network::*;
pub use orders::*;
pub use outbox::*;
pub use payments::*;
pub use stats::*;
pub use tickets::*;
pub use users::*;

/// Everything chepiao keeps in its relational database.
#[async_trait::async_trait]
pub trait Store:
    network::NetworkStore
    + users::UserStore
    + orders::OrderStore
    + payments::PaymentStore
    + outbox::OutboxStore
    + tickets::TicketStore
    + audit::AuditStore
    + after_sale::AfterSaleStore
    + lease::LeaseStore
    + stats::StatsStore
    + Send
    + Sync
    + 'static
{
    /// `"sqlite"` or `"postgres"`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// A cheap round trip to the database through every writer and a reader, for `/readyz`:
    /// an error while any of them cannot make progress.
    async fn ping(&self) -> Result<()>;
}
