//! The PostgreSQL implementation of [`Store`], selected with `--database-url postgres://...`.
//!
//! How the parts fit:
//! - [`writer`]: group-commit writers, each a thread with a connection of its own, taken in
//!   turn (PostgreSQL runs transactions side by side, and one connection's round trips would
//!   otherwise bound every write; appends to the audit chain still serialise on its head row);
//! - one module per aggregate (`network`, `users`, `orders`, `payments`, `outbox`, `tickets`,
//!   `audit`, `after_sale`, `stats` for the sales statistics, `lease` for a cluster's duties
//!   lease): plain async functions over a connection or the pool; multi-row
//!   writes are one statement with `UNNEST` over arrays; the decisions they apply are
//!   `chepiao_store`'s, shared with SQLite;
//! - `row`: reading chepiao's values out of rows;
//! - [`statistics`]: a task that analyses tables as they double, so that the plans PostgreSQL
//!   keeps for prepared statements are not the ones it made while the tables were empty;
//! - reads go through a pool; the migrations in `migrations/` are embedded.

mod after_sale;
mod audit;
mod lease;
mod network;
mod orders;
mod outbox;
mod payments;
mod row;
pub mod statistics;
mod stats;
mod tickets;
mod users;
pub mod writer;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chepiao_domain::network::NetworkData;
use chepiao_domain::{RunId, ServiceDate};
use chepiao_store::*;
use sqlx::PgConnection;
use sqlx::migrate::{Migration, MigrationType, Migrator};
pub use sqlx::postgres::PgConnectOptions as ConnectOptions;
use sqlx::postgres::{PgPool, PgPoolOptions};
use writer::{JobFuture, Writer, db};

/// Pooled read connections per API node; PostgreSQL's default max_connections is 100.
const CONNECTIONS_MAX: u32 = 16;
/// Group writers (and their connections) per store.
const WRITERS: usize = 4;

fn migrator() -> Migrator {
    let m = |version, description: &'static str, sql: &'static str| {
        Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
    };
    Migrator {
        migrations: Cow::Owned(vec![
            m(1, "network", include_str!("../migrations/0001_network.sql")),
            m(2, "users", include_str!("../migrations/0002_users.sql")),
            m(3, "flow", include_str!("../migrations/0003_flow.sql")),
            m(4, "checkin", include_str!("../migrations/0004_checkin.sql")),
            m(5, "refunds", include_str!("../migrations/0005_refunds.sql")),
            m(6, "after_sale", include_str!("../migrations/0006_after_sale.sql")),
            m(7, "passenger_masked", include_str!("../migrations/0007_passenger_masked.sql")),
            m(8, "sale_day", include_str!("../migrations/0008_sale_day.sql")),
            m(9, "purchase_rules", include_str!("../migrations/0009_purchase_rules.sql")),
            m(10, "sales_stats", include_str!("../migrations/0010_sales_stats.sql")),
            m(11, "fewer_order_indexes", include_str!("../migrations/0011_fewer_order_indexes.sql")),
        ]),
        ..Migrator::DEFAULT
    }
}

pub struct PgStore {
    pool: PgPool,
    writers: Vec<Writer>,
    next_writer: std::sync::atomic::AtomicUsize,
    /// The statistics keeper ([`statistics::keep`]); stopped with the store.
    keeper: tokio::task::AbortHandle,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl PgStore {
    /// Connect to `url` and bring the schema up to date.
    pub async fn connect(url: &str) -> Result<PgStore> {
        Self::connect_with(ConnectOptions::from_str(url).map_err(db)?).await
    }

    /// Connect with explicit options (tests use this to give each test its own schema).
    pub async fn connect_with(options: ConnectOptions) -> Result<PgStore> {
        let pool =
            PgPoolOptions::new().max_connections(CONNECTIONS_MAX).connect_with(options.clone()).await.map_err(db)?;
        migrator().run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let mut writers = Vec::with_capacity(WRITERS);
        for i in 0..WRITERS {
            writers.push(Writer::connect(&format!("postgres-writer-{i}"), options.clone()).await?);
        }
        let keeper = tokio::spawn(statistics::keep(pool.clone())).abort_handle();
        Ok(PgStore { pool, writers, next_writer: Default::default(), keeper })
    }

    /// Analyse the tables that doubled since the planner last looked, now (the keeper does this
    /// every second); the tables analysed.
    pub async fn analyse_grown(&self) -> Result<Vec<String>> {
        statistics::analyse_grown(&self.pool).await.map_err(db)
    }

    /// Run `job` with `data` in the next group commit of one of the writers, in turn.
    async fn write<D, T, F>(&self, data: D, job: F) -> Result<T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c> Fn(&'c mut PgConnection, Arc<D>) -> JobFuture<'c, T> + Send + Sync + 'static,
    {
        let i = self.next_writer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = Arc::new(data);
        self.writers[i % self.writers.len()].write(move |c| job(c, data.clone())).await
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        for w in &self.writers {
            w.write(|c| Box::pin(async move { sqlx::query("SELECT 1").execute(c).await.map(drop) })).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl NetworkStore for PgStore {
    async fn save_network(&self, data: &NetworkData) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        network::save(&mut tx, data).await?;
        tx.commit().await.map_err(db)
    }

    async fn load_network(&self) -> Result<NetworkData> {
        network::load(&self.pool).await
    }

    async fn ensure_runs(&self, first: ServiceDate, last: ServiceDate) -> Result<u64> {
        check_window(first, last)?;
        network::ensure_runs(&self.pool, first, last).await
    }

    async fn runs_between(&self, first: ServiceDate, last: ServiceDate) -> Result<Vec<RunRecord>> {
        check_window(first, last)?;
        network::runs_between(&self.pool, first, last).await
    }

    async fn set_run_status(&self, run: &RunId, status: RunStatus) -> Result<bool> {
        network::set_run_status(&self.pool, run, status).await
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, username: &str, password_hash: &str, created_at_ms: i64) -> Result<Option<i64>> {
        users::create(&self.pool, username, password_hash, created_at_ms).await.map_err(db)
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        users::by_name(&self.pool, username).await.map_err(db)
    }

    async fn add_passenger(&self, p: &NewPassenger, max_per_user: u32) -> Result<AddPassenger> {
        users::add_passenger(&self.pool, p, max_per_user).await.map_err(db)
    }

    async fn passengers(&self, user_id: i64) -> Result<Vec<PassengerRecord>> {
        users::passengers(&self.pool, user_id).await.map_err(db)
    }

    async fn token_version(&self, user_id: i64) -> Result<Option<u32>> {
        users::token_version(&self.pool, user_id).await.map_err(db)
    }

    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<u32> {
        let hash = password_hash.to_string();
        self.write(hash, move |c, h| Box::pin(async move { users::bump(c, user_id, Some(&h)).await })).await
    }

    async fn bump_token_version(&self, user_id: i64) -> Result<u32> {
        self.write((), move |c, _| Box::pin(async move { users::bump(c, user_id, None).await })).await
    }
}

#[async_trait]
impl OrderStore for PgStore {
    async fn create_orders(&self, new: &[NewOrder]) -> Result<Vec<CreateOrder>> {
        chepiao_store::check_batch_len(new.len(), "orders")?;
        if new.is_empty() {
            return Ok(Vec::new());
        }
        self.write(new.to_vec(), |c, o| Box::pin(async move { orders::create(c, &o).await })).await
    }

    async fn order(&self, order_no: &str) -> Result<Option<OrderRecord>> {
        orders::get(&self.pool, order_no).await.map_err(db)
    }

    async fn orders_in(&self, order_nos: &[String]) -> Result<Vec<OrderRecord>> {
        orders::many(&self.pool, order_nos).await.map_err(db)
    }

    async fn orders_after(&self, after_no: &str, limit: u32) -> Result<Vec<OrderRecord>> {
        orders::after(&self.pool, after_no, limit).await.map_err(db)
    }

    async fn order_by_key(&self, user_id: i64, idem_key: &str) -> Result<Option<OrderRecord>> {
        orders::by_key(&self.pool, user_id, idem_key).await.map_err(db)
    }

    async fn orders_of(&self, q: PageQuery) -> Result<OrderPage> {
        q.check()?;
        orders::page(&self.pool, &q).await.map_err(db)
    }

    async fn transition_order(&self, t: &Transition) -> Result<Option<OrderRecord>> {
        self.write(t.clone(), |c, t| Box::pin(async move { orders::transition(c, &t).await })).await
    }

    async fn expire_orders(&self, now_ms: i64, limit: u32) -> Result<Vec<OrderRecord>> {
        self.write((), move |c, _| Box::pin(orders::expire(c, now_ms, limit))).await
    }

    async fn unreleased_orders(&self, limit: u32) -> Result<Vec<OrderRecord>> {
        orders::unreleased(&self.pool, limit).await.map_err(db)
    }

    async fn mark_seats_released(&self, order_no: &str) -> Result<()> {
        self.write(order_no.to_string(), |c, no| Box::pin(async move { orders::mark_released(c, &no).await })).await
    }

    async fn purchase_facts(&self, q: &PurchaseQuery) -> Result<PurchaseFacts> {
        if q.trips.len() > TRIPS_PER_QUERY_MAX {
            return Err(StoreError::Limit(format!("at most {TRIPS_PER_QUERY_MAX} trips per query")));
        }
        orders::purchase_facts(&self.pool, q).await.map_err(db)
    }

    async fn known_holds(&self, holds: &[i64]) -> Result<Vec<i64>> {
        if holds.len() > HOLDS_LOOKUP_MAX {
            return Err(StoreError::Limit(format!("at most {HOLDS_LOOKUP_MAX} holds per lookup")));
        }
        orders::known_holds(&self.pool, holds).await.map_err(db)
    }

    async fn hold_id_max(&self) -> Result<i64> {
        orders::hold_id_max(&self.pool).await.map_err(db)
    }
}

#[async_trait]
impl PaymentStore for PgStore {
    async fn create_payments(&self, ps: &[NewPayment]) -> Result<()> {
        chepiao_store::check_batch_len(ps.len(), "payments")?;
        self.write(ps.to_vec(), |c, ps| Box::pin(async move { payments::create(c, &ps).await })).await
    }

    async fn payment(&self, payment_no: &str) -> Result<Option<PaymentRecord>> {
        payments::get(&self.pool, payment_no).await.map_err(db)
    }

    async fn payments_of(&self, order_no: &str) -> Result<Vec<PaymentRecord>> {
        payments::of_order(&self.pool, order_no).await.map_err(db)
    }

    async fn apply_notifies(&self, ns: &[Notify]) -> Result<Vec<NotifyOutcome>> {
        chepiao_store::check_batch_len(ns.len(), "notifies")?;
        self.write(ns.to_vec(), |c, ns| Box::pin(async move { payments::notifies(c, &ns).await })).await
    }

    async fn prune_nonces(&self, before_ms: i64) -> Result<u64> {
        self.write((), move |c, _| Box::pin(payments::prune_nonces(c, before_ms))).await
    }

    async fn refund_unticketable(&self, u: &Unticketable) -> Result<bool> {
        self.write(u.clone(), |c, u| Box::pin(async move { payments::unticketable(c, &u).await })).await
    }

    async fn complete_refund(&self, r: &RefundDone) -> Result<bool> {
        self.write(r.clone(), |c, r| Box::pin(async move { payments::complete_refund(c, &r).await })).await
    }

    async fn payment_audit(&self) -> Result<PaymentAudit> {
        payments::audit_payments(&self.pool).await.map_err(db)
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn outbox_due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = outbox::due(&self.pool, now_ms, limit).await.map_err(db)?;
        rows.into_iter().map(outbox_row).collect()
    }

    async fn outbox_sent(&self, ids: &[i64], redeliver_at_ms: i64) -> Result<()> {
        self.write(ids.to_vec(), move |c, ids| Box::pin(async move { outbox::sent(c, &ids, redeliver_at_ms).await }))
            .await
    }

    async fn outbox_unsent(&self, ids: &[i64], now_ms: i64) -> Result<()> {
        self.write(ids.to_vec(), move |c, ids| Box::pin(async move { outbox::unsent(c, &ids, now_ms).await })).await
    }

    async fn outbox_done(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(ids.to_vec(), |c, ids| Box::pin(async move { outbox::done(c, &ids).await })).await
    }

    async fn outbox_failed(&self, failures: &[OutboxFailure], policy: RetryPolicy, now_ms: i64) -> Result<Vec<i64>> {
        self.write(failures.to_vec(), move |c, fs| {
            Box::pin(async move { outbox::failed(c, &fs, policy, now_ms).await })
        })
        .await
    }

    async fn outbox_requeue_sent(&self, now_ms: i64) -> Result<u64> {
        self.write((), move |c, _| Box::pin(async move { outbox::requeue_sent(c, now_ms).await })).await
    }

    async fn outbox_list(&self, state: OutboxState, after_id: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = outbox::list(&self.pool, state, after_id, limit).await.map_err(db)?;
        rows.into_iter().map(outbox_row).collect()
    }

    async fn outbox_retry(&self, id: i64, now_ms: i64) -> Result<Option<OutboxRow>> {
        let raw = self.write((), move |c, _| Box::pin(async move { outbox::retry(c, id, now_ms).await })).await?;
        raw.map(outbox_row).transpose()
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts> {
        outbox::counts(&self.pool).await.map_err(db)
    }
}

#[async_trait]
impl StatsStore for PgStore {
    async fn sales_facts(&self, q: &SalesQuery) -> Result<SalesFacts> {
        q.check()?;
        stats::sales_facts(&self.pool, q).await.map_err(db)
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn claim_lease(&self, name: &str, holder: &str, instance: &str, now_ms: i64) -> Result<Lease> {
        let data = (name.to_string(), holder.to_string(), instance.to_string());
        self.write(data, move |c, d| Box::pin(async move { lease::claim(c, &d.0, &d.1, &d.2, now_ms, i64::MIN).await }))
            .await
    }

    async fn take_lease(&self, name: &str, holder: &str, instance: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease> {
        let data = (name.to_string(), holder.to_string(), instance.to_string());
        let stale_before_ms = now_ms.saturating_sub(ttl_ms);
        self.write(data, move |c, d| {
            Box::pin(async move { lease::claim(c, &d.0, &d.1, &d.2, now_ms, stale_before_ms).await })
        })
        .await
    }
}

#[async_trait]
impl TicketStore for PgStore {
    async fn issue_tickets(&self, batch: &[OrderTickets], now_ms: i64) -> Result<Vec<String>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write(batch.to_vec(), move |c, b| Box::pin(async move { tickets::issue(c, &b, now_ms).await })).await
    }

    async fn tickets_of(&self, order_no: &str) -> Result<Vec<TicketRecord>> {
        tickets::of_order(&self.pool, order_no).await.map_err(db)
    }

    async fn ticket(&self, ticket_sn: &str) -> Result<Option<TicketRecord>> {
        tickets::get(&self.pool, ticket_sn).await.map_err(db)
    }

    async fn tickets_after(&self, after_sn: &str, limit: u32) -> Result<Vec<TicketRecord>> {
        tickets::after(&self.pool, after_sn, limit).await.map_err(db)
    }

    async fn check_in(&self, scan: &Scan) -> Result<CheckIn> {
        self.write(scan.clone(), |c, s| Box::pin(async move { tickets::check_in(c, &s).await })).await
    }

    async fn refund_ticket(&self, r: &TicketRefundRecord) -> Result<RefundTicket> {
        self.write(r.clone(), |c, r| Box::pin(async move { tickets::refund(c, &r).await })).await
    }

    async fn ticket_refund(&self, refund_no: &str) -> Result<Option<TicketRefundRecord>> {
        tickets::refund_get(&self.pool, refund_no).await.map_err(db)
    }

    async fn complete_ticket_refund(&self, done: &TicketRefundDone) -> Result<bool> {
        self.write(done.clone(), |c, d| Box::pin(async move { tickets::complete_refund(c, &d).await })).await
    }

    async fn revocations(&self, after_seq: i64, limit: u32) -> Result<Vec<Revocation>> {
        tickets::revocations(&self.pool, after_seq, limit).await.map_err(db)
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn audit_append(&self, e: &AuditEntry) -> Result<i64> {
        self.write(e.clone(), |c, e| Box::pin(async move { audit::append(c, std::slice::from_ref(&*e)).await })).await
    }

    async fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        audit::range(&self.pool, after_seq, limit).await.map_err(db)
    }
}

#[async_trait]
impl AfterSaleStore for PgStore {
    async fn create_wish(&self, w: &NewWish, order: &NewOrder) -> Result<CreateWish> {
        let args = (w.clone(), order.clone());
        self.write(args, |c, a| Box::pin(async move { after_sale::create_wish(c, &a.0, &a.1).await })).await
    }

    async fn wish(&self, wish_id: &str) -> Result<Option<WishRecord>> {
        after_sale::wish(&self.pool, wish_id).await.map_err(db)
    }

    async fn waiting_wishes(&self, limit: u32) -> Result<Vec<WishRecord>> {
        after_sale::waiting(&self.pool, limit).await.map_err(db)
    }

    async fn fulfil_wish(&self, f: &Fulfil) -> Result<bool> {
        self.write(f.clone(), |c, f| Box::pin(async move { after_sale::fulfil(c, &f).await })).await
    }

    async fn end_wish(&self, wish_id: &str, to: WishStatus, now_ms: i64) -> Result<EndWish> {
        let id = wish_id.to_string();
        self.write(id, move |c, id| Box::pin(async move { after_sale::end_wish(c, &id, to, now_ms).await })).await
    }

    async fn expire_wishes(&self, now_ms: i64, limit: u32) -> Result<Vec<WishRecord>> {
        self.write((), move |c, _| Box::pin(after_sale::expire_wishes(c, now_ms, limit))).await
    }

    async fn notifications(&self, user_id: i64, limit: u32) -> Result<Vec<Notification>> {
        after_sale::notifications(&self.pool, user_id, limit).await.map_err(db)
    }

    async fn settle_free_order(&self, order_no: &str, now_ms: i64) -> Result<bool> {
        let no = order_no.to_string();
        self.write(no, move |c, no| Box::pin(async move { after_sale::settle_free(c, &no, now_ms).await })).await
    }

    async fn rebook_swap(&self, new_order_no: &str, refund: &TicketRefundRecord) -> Result<RebookSwap> {
        let args = (new_order_no.to_string(), refund.clone());
        self.write(args, |c, a| Box::pin(async move { after_sale::rebook_swap(c, &a.0, &a.1).await })).await
    }

    async fn rebooked_to(&self, old_ticket_sn: &str) -> Result<Option<String>> {
        after_sale::rebooked_to(&self.pool, old_ticket_sn).await.map_err(db)
    }
}
