//! The SQLite implementation of [`Store`]: chepiao's embedded default. One database file under
//! the data directory, WAL mode, `synchronous = FULL` (a commit is on disk before it is
//! acknowledged), the WAL copied into the database every [`CHECKPOINT_EVERY`] by a thread of its
//! own.
//!
//! How the parts fit:
//! - [`threads`]: the one writer thread that owns the write connection and group-commits the
//!   jobs queued to it (each job's statements run on that thread, prepared once and cached),
//!   the reader threads, each with a read-only connection (WAL lets them read beside the
//!   writer), and the checkpointer, which copies the WAL into the database beside the writer;
//! - one module per aggregate (`network`, `users`, `orders`, `payments`, `outbox`, `tickets`,
//!   `audit`, `after_sale`, `stats` for the sales statistics, `lease` for the duties lease):
//!   plain functions over a `rusqlite::Connection`, run on those
//!   threads; the decisions they apply are `chepiao_store`'s, shared with PostgreSQL;
//! - `row`: reading chepiao's values out of rows (a spelling it never writes is a corrupt row);
//! - `schema`: the migrations in `migrations/`, embedded in the binary.

mod after_sale;
mod audit;
mod lease;
mod network;
mod orders;
mod outbox;
mod payments;
mod row;
mod schema;
mod stats;
pub mod threads;
mod tickets;
mod users;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chepiao_domain::network::NetworkData;
use chepiao_domain::{RunId, ServiceDate};
use chepiao_store::*;
use rusqlite::{Connection, OpenFlags};
use threads::{Checkpointer, Readers, Writer};

/// Reader connections (threads).
const READERS_MAX: usize = 4;
/// How long a statement waits on a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements each connection keeps.
const STATEMENT_CACHE_LEN: usize = 128;
/// How often the checkpointer copies the WAL into the database ([`threads::Checkpointer`]).
/// Measured at half the peak order rate (docs/BENCHMARKS.md, issue 17): order p99 14.7, 16.4
/// and 20.5 ms every 50 ms, 18.0 and 20.5 ms every 200 ms, 23.7 ms every second, 28.4 ms with
/// SQLite's automatic checkpoint on the writer; the bytes written per order were the same
/// (28–29 KB) at 50 and 200 ms, against 39 KB with the automatic checkpoint every 1,000 pages.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// WAL pages past which the writer runs a (passive) checkpoint itself, for when the checkpointer
/// falls behind. Neither can start the WAL over while a reader still reads an older snapshot
/// from it; readers here run one short query each, so that does not last.
const WAL_CHECKPOINT_PAGES: i64 = 40_000;
/// When the WAL is started over, a file longer than this (grown while the checkpoints were held
/// back) is cut back to it: above the writer's own bound (40,000 pages of 4 KiB, 164 MB).
const WAL_BYTES_KEPT_MAX: i64 = 256 * 1024 * 1024;

pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    _checkpointer: Checkpointer,
}

fn open(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE_LEN);
    c.pragma_update(None, "foreign_keys", true)?;
    Ok(c)
}

impl SqliteStore {
    /// Open (creating if missing) the database at `url` (`sqlite://path/to/file.db` or a plain
    /// path) and bring its schema up to date.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let path = Path::new(url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url));
        let path = path.to_path_buf();
        // Opening and migrating read files: off the async threads.
        type Conns = (Connection, Vec<Connection>, Connection);
        let (writer, readers, checkpoints) = tokio::task::spawn_blocking(move || -> Result<Conns> {
            let db = threads::db;
            let mut writer = open(&path, OpenFlags::default()).map_err(db)?;
            writer.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
            writer.pragma_update(None, "synchronous", "FULL").map_err(db)?;
            writer.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES).map_err(db)?;
            writer.pragma_update(None, "journal_size_limit", WAL_BYTES_KEPT_MAX).map_err(db)?;
            schema::migrate(&mut writer)?;
            let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let readers = (0..READERS_MAX).map(|_| open(&path, read_only)).collect::<rusqlite::Result<_>>();
            Ok((writer, readers.map_err(db)?, open(&path, OpenFlags::default()).map_err(db)?))
        })
        .await
        .map_err(|e| StoreError::Database(format!("opening SQLite: {e}")))??;
        let started = |e: std::io::Error| StoreError::Database(format!("starting the SQLite threads: {e}"));
        Ok(SqliteStore {
            writer: Writer::start(writer).map_err(started)?,
            readers: Readers::start(readers).map_err(started)?,
            _checkpointer: Checkpointer::start(checkpoints, CHECKPOINT_EVERY).map_err(started)?,
        })
    }

    /// Run `f` on a reader connection (tests read raw rows with it).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.readers.read(f).await
    }

    /// Run `f` in the writer's next group commit (tests break rows with it).
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.writer.write(f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await?;
        self.write(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

#[async_trait]
impl NetworkStore for SqliteStore {
    async fn save_network(&self, data: &NetworkData) -> Result<()> {
        // One job, so the whole network is one atomic write.
        let data = std::sync::Arc::new(data.clone());
        self.write(move |c| network::save(c, &data)).await
    }

    async fn load_network(&self) -> Result<NetworkData> {
        self.read(network::load).await
    }

    async fn ensure_runs(&self, first: ServiceDate, last: ServiceDate) -> Result<u64> {
        check_window(first, last)?;
        self.write(move |c| network::ensure_runs(c, first, last)).await
    }

    async fn runs_between(&self, first: ServiceDate, last: ServiceDate) -> Result<Vec<RunRecord>> {
        check_window(first, last)?;
        self.read(move |c| network::runs_between(c, first, last)).await
    }

    async fn set_run_status(&self, run: &RunId, status: RunStatus) -> Result<bool> {
        let run = run.clone();
        self.write(move |c| network::set_run_status(c, &run, status)).await
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, username: &str, password_hash: &str, created_at_ms: i64) -> Result<Option<i64>> {
        let (name, hash) = (username.to_string(), password_hash.to_string());
        self.write(move |c| users::create(c, &name, &hash, created_at_ms)).await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        let name = username.to_string();
        self.read(move |c| users::by_name(c, &name)).await
    }

    async fn add_passenger(&self, p: &NewPassenger, max_per_user: u32) -> Result<AddPassenger> {
        let p = p.clone();
        self.write(move |c| users::add_passenger(c, &p, max_per_user)).await
    }

    async fn passengers(&self, user_id: i64) -> Result<Vec<PassengerRecord>> {
        self.read(move |c| users::passengers(c, user_id)).await
    }

    async fn token_version(&self, user_id: i64) -> Result<Option<u32>> {
        self.read(move |c| users::token_version(c, user_id)).await
    }

    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<u32> {
        let hash = password_hash.to_string();
        self.write(move |c| users::bump(c, user_id, Some(&hash))).await
    }

    async fn bump_token_version(&self, user_id: i64) -> Result<u32> {
        self.write(move |c| users::bump(c, user_id, None)).await
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn create_orders(&self, new: &[NewOrder]) -> Result<Vec<CreateOrder>> {
        chepiao_store::check_batch_len(new.len(), "orders")?;
        let new = new.to_vec();
        self.write(move |c| orders::create(c, &new)).await
    }

    async fn order(&self, order_no: &str) -> Result<Option<OrderRecord>> {
        let no = order_no.to_string();
        self.read(move |c| orders::get(c, &no)).await
    }

    async fn orders_in(&self, order_nos: &[String]) -> Result<Vec<OrderRecord>> {
        let nos = order_nos.to_vec();
        self.read(move |c| orders::many(c, &nos)).await
    }

    async fn orders_after(&self, after_no: &str, limit: u32) -> Result<Vec<OrderRecord>> {
        let after = after_no.to_string();
        self.read(move |c| orders::after(c, &after, limit)).await
    }

    async fn order_by_key(&self, user_id: i64, idem_key: &str) -> Result<Option<OrderRecord>> {
        let key = idem_key.to_string();
        self.read(move |c| orders::by_key(c, user_id, &key)).await
    }

    async fn orders_of(&self, q: PageQuery) -> Result<OrderPage> {
        q.check()?;
        self.read(move |c| orders::page(c, &q)).await
    }

    async fn transition_order(&self, t: &Transition) -> Result<Option<OrderRecord>> {
        let t = t.clone();
        self.write(move |c| orders::transition(c, &t)).await
    }

    async fn expire_orders(&self, now_ms: i64, limit: u32) -> Result<Vec<OrderRecord>> {
        self.write(move |c| orders::expire(c, now_ms, limit)).await
    }

    async fn unreleased_orders(&self, limit: u32) -> Result<Vec<OrderRecord>> {
        self.read(move |c| orders::unreleased(c, limit)).await
    }

    async fn mark_seats_released(&self, order_no: &str) -> Result<()> {
        let no = order_no.to_string();
        self.write(move |c| orders::mark_released(c, &no)).await
    }

    async fn purchase_facts(&self, q: &PurchaseQuery) -> Result<PurchaseFacts> {
        if q.trips.len() > TRIPS_PER_QUERY_MAX {
            return Err(StoreError::Limit(format!("at most {TRIPS_PER_QUERY_MAX} trips per query")));
        }
        let q = q.clone();
        self.read(move |c| orders::purchase_facts(c, &q)).await
    }

    async fn known_holds(&self, holds: &[i64]) -> Result<Vec<i64>> {
        if holds.len() > HOLDS_LOOKUP_MAX {
            return Err(StoreError::Limit(format!("at most {HOLDS_LOOKUP_MAX} holds per lookup")));
        }
        let holds = holds.to_vec();
        self.read(move |c| orders::known_holds(c, &holds)).await
    }

    async fn hold_id_max(&self) -> Result<i64> {
        self.read(orders::hold_id_max).await
    }
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn create_payments(&self, ps: &[NewPayment]) -> Result<()> {
        chepiao_store::check_batch_len(ps.len(), "payments")?;
        let ps = ps.to_vec();
        self.write(move |c| payments::create(c, &ps)).await
    }

    async fn payment(&self, payment_no: &str) -> Result<Option<PaymentRecord>> {
        let no = payment_no.to_string();
        self.read(move |c| payments::get(c, &no)).await
    }

    async fn payments_of(&self, order_no: &str) -> Result<Vec<PaymentRecord>> {
        let no = order_no.to_string();
        self.read(move |c| payments::of_order(c, &no)).await
    }

    async fn apply_notifies(&self, ns: &[Notify]) -> Result<Vec<NotifyOutcome>> {
        chepiao_store::check_batch_len(ns.len(), "notifies")?;
        let ns = ns.to_vec();
        self.write(move |c| payments::notifies(c, &ns)).await
    }

    async fn prune_nonces(&self, before_ms: i64) -> Result<u64> {
        self.write(move |c| payments::prune_nonces(c, before_ms)).await
    }

    async fn refund_unticketable(&self, u: &Unticketable) -> Result<bool> {
        let u = u.clone();
        self.write(move |c| payments::unticketable(c, &u)).await
    }

    async fn complete_refund(&self, r: &RefundDone) -> Result<bool> {
        let r = r.clone();
        self.write(move |c| payments::complete_refund(c, &r)).await
    }

    async fn payment_audit(&self) -> Result<PaymentAudit> {
        self.read(payments::audit_payments).await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn outbox_due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = self.read(move |c| outbox::due(c, now_ms, limit)).await?;
        rows.into_iter().map(outbox_row).collect()
    }

    async fn outbox_sent(&self, ids: &[i64], redeliver_at_ms: i64) -> Result<()> {
        let ids = ids.to_vec();
        self.write(move |c| outbox::sent(c, &ids, redeliver_at_ms)).await
    }

    async fn outbox_unsent(&self, ids: &[i64], now_ms: i64) -> Result<()> {
        let ids = ids.to_vec();
        self.write(move |c| outbox::unsent(c, &ids, now_ms)).await
    }

    async fn outbox_done(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.write(move |c| outbox::done(c, &ids)).await
    }

    async fn outbox_failed(&self, failures: &[OutboxFailure], policy: RetryPolicy, now_ms: i64) -> Result<Vec<i64>> {
        let failures = failures.to_vec();
        self.write(move |c| outbox::failed(c, &failures, policy, now_ms)).await
    }

    async fn outbox_requeue_sent(&self, now_ms: i64) -> Result<u64> {
        self.write(move |c| outbox::requeue_sent(c, now_ms)).await
    }

    async fn outbox_list(&self, state: OutboxState, after_id: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = self.read(move |c| outbox::list(c, state, after_id, limit)).await?;
        rows.into_iter().map(outbox_row).collect()
    }

    async fn outbox_retry(&self, id: i64, now_ms: i64) -> Result<Option<OutboxRow>> {
        self.write(move |c| outbox::retry(c, id, now_ms)).await?.map(outbox_row).transpose()
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.read(outbox::counts).await
    }
}

#[async_trait]
impl StatsStore for SqliteStore {
    async fn sales_facts(&self, q: &SalesQuery) -> Result<SalesFacts> {
        q.check()?;
        let q = q.clone();
        self.read(move |c| stats::sales_facts(c, &q)).await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn claim_lease(&self, name: &str, holder: &str, instance: &str, now_ms: i64) -> Result<Lease> {
        let (name, holder, instance) = (name.to_string(), holder.to_string(), instance.to_string());
        self.write(move |c| lease::claim(c, &name, &holder, &instance, now_ms, i64::MIN)).await
    }

    async fn take_lease(&self, name: &str, holder: &str, instance: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease> {
        let (name, holder, instance) = (name.to_string(), holder.to_string(), instance.to_string());
        let stale_before_ms = now_ms.saturating_sub(ttl_ms);
        self.write(move |c| lease::claim(c, &name, &holder, &instance, now_ms, stale_before_ms)).await
    }
}

#[async_trait]
impl TicketStore for SqliteStore {
    async fn issue_tickets(&self, batch: &[OrderTickets], now_ms: i64) -> Result<Vec<String>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.write(move |c| tickets::issue(c, &batch, now_ms)).await
    }

    async fn tickets_of(&self, order_no: &str) -> Result<Vec<TicketRecord>> {
        let no = order_no.to_string();
        self.read(move |c| tickets::of_order(c, &no)).await
    }

    async fn ticket(&self, ticket_sn: &str) -> Result<Option<TicketRecord>> {
        let sn = ticket_sn.to_string();
        self.read(move |c| tickets::get(c, &sn)).await
    }

    async fn tickets_after(&self, after_sn: &str, limit: u32) -> Result<Vec<TicketRecord>> {
        let after = after_sn.to_string();
        self.read(move |c| tickets::after(c, &after, limit)).await
    }

    async fn check_in(&self, scan: &Scan) -> Result<CheckIn> {
        let scan = scan.clone();
        self.write(move |c| tickets::check_in(c, &scan)).await
    }

    async fn refund_ticket(&self, r: &TicketRefundRecord) -> Result<RefundTicket> {
        let r = r.clone();
        self.write(move |c| tickets::refund(c, &r)).await
    }

    async fn ticket_refund(&self, refund_no: &str) -> Result<Option<TicketRefundRecord>> {
        let no = refund_no.to_string();
        self.read(move |c| tickets::refund_get(c, &no)).await
    }

    async fn complete_ticket_refund(&self, done: &TicketRefundDone) -> Result<bool> {
        let done = done.clone();
        self.write(move |c| tickets::complete_refund(c, &done)).await
    }

    async fn revocations(&self, after_seq: i64, limit: u32) -> Result<Vec<Revocation>> {
        self.read(move |c| tickets::revocations(c, after_seq, limit)).await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_append(&self, e: &AuditEntry) -> Result<i64> {
        let e = e.clone();
        self.write(move |c| audit::append(c, std::slice::from_ref(&e))).await
    }

    async fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        self.read(move |c| audit::range(c, after_seq, limit)).await
    }
}

#[async_trait]
impl AfterSaleStore for SqliteStore {
    async fn create_wish(&self, w: &NewWish, order: &NewOrder) -> Result<CreateWish> {
        let (w, order) = (w.clone(), order.clone());
        self.write(move |c| after_sale::create_wish(c, &w, &order)).await
    }

    async fn wish(&self, wish_id: &str) -> Result<Option<WishRecord>> {
        let id = wish_id.to_string();
        self.read(move |c| after_sale::wish(c, &id)).await
    }

    async fn waiting_wishes(&self, limit: u32) -> Result<Vec<WishRecord>> {
        self.read(move |c| after_sale::waiting(c, limit)).await
    }

    async fn fulfil_wish(&self, f: &Fulfil) -> Result<bool> {
        let f = f.clone();
        self.write(move |c| after_sale::fulfil(c, &f)).await
    }

    async fn end_wish(&self, wish_id: &str, to: WishStatus, now_ms: i64) -> Result<EndWish> {
        let id = wish_id.to_string();
        self.write(move |c| after_sale::end_wish(c, &id, to, now_ms)).await
    }

    async fn expire_wishes(&self, now_ms: i64, limit: u32) -> Result<Vec<WishRecord>> {
        self.write(move |c| after_sale::expire_wishes(c, now_ms, limit)).await
    }

    async fn notifications(&self, user_id: i64, limit: u32) -> Result<Vec<Notification>> {
        self.read(move |c| after_sale::notifications(c, user_id, limit)).await
    }

    async fn settle_free_order(&self, order_no: &str, now_ms: i64) -> Result<bool> {
        let no = order_no.to_string();
        self.write(move |c| after_sale::settle_free(c, &no, now_ms)).await
    }

    async fn rebook_swap(&self, new_order_no: &str, refund: &TicketRefundRecord) -> Result<RebookSwap> {
        let (no, r) = (new_order_no.to_string(), refund.clone());
        self.write(move |c| after_sale::rebook_swap(c, &no, &r)).await
    }

    async fn rebooked_to(&self, old_ticket_sn: &str) -> Result<Option<String>> {
        let sn = old_ticket_sn.to_string();
        self.read(move |c| after_sale::rebooked_to(c, &sn)).await
    }
}
