//! The waiting room: one queue per sale, joined once per user, admitted in order at a set rate.
//!
//! A *sale* (config `sales`) is a set of runs that open at a given time. Users join its queue
//! (joining again keeps the place). Each queue orders users by a score: the join sequence,
//! pushed back by `slow_lane_offset` places for users the risk checks put in the slow lane.
//! From `opens_at`, an admission tick lets `admit_per_s` users through, from the front; the
//! rate's budget is kept in the backend, so several API nodes sharing Redis admit at the
//! configured rate together, not each. An admitted user gets a **queue token**
//! ([`QueueTokens`]): HMAC-signed, bound to the user and the sale, valid for `queue_token_ttl_s`
//! (2–3 minutes). `POST /api/v1/orders` for a sale's runs requires it. A user whose admission
//! lapsed joins again at the back.
//!
//! Two backends implement [`QueueBackend`], with one test suite ([`suite`]): in memory (the
//! default; one node) and Redis (`--redis-url`; sorted sets, with Lua scripts where a step must be
//! atomic).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::hotsale::token::QueueTokens;

/// Users one sale's queue holds; joins beyond it are refused (the sale is hopelessly full).
pub const QUEUE_LEN_MAX: u64 = 5_000_000;
/// Users one admission tick may let through.
pub const ADMIT_BATCH_MAX: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue backend: {0}")]
    Backend(String),
}

/// Which lane a user joins in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Normal,
    /// Pushed back `slow_lane_offset` places (suspect buyers).
    Slow,
}

/// Where a user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `position` users are ahead.
    Waiting {
        position: u64,
    },
    Admitted {
        at_ms: i64,
    },
    /// The queue is full: not joined.
    Full,
}

/// The storage of the queues; see the module doc. Implementations must make `join` and
/// `admit` atomic: two nodes joining one user get one place; two nodes admitting at once
/// share one rate budget.
#[async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Join (or find the user's place). `lane_offset` is added to the join sequence.
    async fn join(&self, sale: &str, user: i64, lane_offset: u64, slow: bool) -> Result<Place, QueueError>;
    /// The user's place; None if not in the queue nor admitted.
    async fn status(&self, sale: &str, user: i64) -> Result<Option<Place>, QueueError>;
    /// Admit from the front at `per_s` users a second since the last admission (at most
    /// `burst` at once); returns the users admitted.
    async fn admit(&self, sale: &str, per_s: u32, burst: u32, now_ms: i64) -> Result<Vec<i64>, QueueError>;
    /// Forget the user's admission made at `at_ms` (lapsed, or its token spent), so that the
    /// user may join again, at the back. A newer admission stays: two joins at once that both
    /// found the old one over must not end the new one the first of them queued for.
    async fn forget(&self, sale: &str, user: i64, at_ms: i64) -> Result<(), QueueError>;
    /// Users waiting.
    async fn waiting(&self, sale: &str) -> Result<u64, QueueError>;
    /// Users admitted (and not since forgotten), on every node sharing the backend.
    async fn admitted(&self, sale: &str) -> Result<u64, QueueError>;
    /// Spend queue token `token_id` on the order with idempotency key `key`, remembered until
    /// `until_ms` (the token's expiry). True when the token is now this key's (or was already:
    /// a retry); false when another order spent it.
    async fn spend(&self, token_id: &str, key: &str, until_ms: i64, now_ms: i64) -> Result<bool, QueueError>;
    /// Give a token back: the order it admitted was refused and made nothing.
    async fn unspend(&self, token_id: &str, key: &str) -> Result<(), QueueError>;
    /// Whether token `token_id` admitted an order (spent, and not given back) and has not
    /// expired by `now_ms`.
    async fn spent(&self, token_id: &str, now_ms: i64) -> Result<bool, QueueError>;
}

/// A sale as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleConfig {
    pub sale_id: String,
    /// RFC 3339: admission starts then (joining may start earlier).
    pub opens_at: String,
    /// Runs sold through this waiting room (`G1-20261122`).
    pub run_ids: Vec<String>,
    /// Users admitted per second.
    pub admit_per_s: u32,
}

/// A sale, parsed.
#[derive(Debug, Clone)]
pub struct Sale {
    pub sale_id: String,
    pub opens_at_ms: i64,
    pub run_ids: Vec<String>,
    pub admit_per_s: u32,
}

impl Sale {
    pub fn parse(c: &SaleConfig) -> Result<Sale, String> {
        let ok_id = !c.sale_id.is_empty()
            && c.sale_id.len() <= 64
            && c.sale_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_id {
            return Err(format!("sales: {:?} is not 1-64 letters, digits, - or _", c.sale_id));
        }
        let opens_at_ms = chrono::DateTime::parse_from_rfc3339(&c.opens_at)
            .map_err(|e| format!("sales.{}: opens_at: {e}", c.sale_id))?
            .timestamp_millis();
        if !(1..=ADMIT_BATCH_MAX * 10).contains(&c.admit_per_s) {
            return Err(format!("sales.{}: admit_per_s must be 1 to {}", c.sale_id, ADMIT_BATCH_MAX * 10));
        }
        if c.run_ids.is_empty() || c.run_ids.len() > 10_000 {
            return Err(format!("sales.{}: 1 to 10000 run_ids", c.sale_id));
        }
        Ok(Sale { sale_id: c.sale_id.clone(), opens_at_ms, run_ids: c.run_ids.clone(), admit_per_s: c.admit_per_s })
    }
}

/// The waiting rooms of every configured sale, over one backend.
pub struct WaitingRoom {
    pub backend: Arc<dyn QueueBackend>,
    pub tokens: QueueTokens,
    sales: Vec<Sale>,
    /// run_id → index into `sales`.
    by_run: HashMap<String, usize>,
    pub slow_lane_offset: u64,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    NotJoined,
    Waiting { position: u64 },
    Admitted { token: String, expires_at_ms: i64 },
    Full,
}

impl WaitingRoom {
    pub fn new(
        backend: Arc<dyn QueueBackend>,
        tokens: QueueTokens,
        sales: Vec<Sale>,
        slow_lane_offset: u64,
    ) -> Result<WaitingRoom, String> {
        let mut by_run = HashMap::new();
        for (i, s) in sales.iter().enumerate() {
            for r in &s.run_ids {
                if by_run.insert(r.clone(), i).is_some() {
                    return Err(format!("sales: run {r} is in two sales"));
                }
            }
        }
        Ok(WaitingRoom { backend, tokens, sales, by_run, slow_lane_offset })
    }

    pub fn sales(&self) -> &[Sale] {
        &self.sales
    }

    pub fn sale(&self, sale_id: &str) -> Option<&Sale> {
        self.sales.iter().find(|s| s.sale_id == sale_id)
    }

    /// The sale whose waiting room guards `run_id`, if any.
    pub fn sale_of_run(&self, run_id: &str) -> Option<&Sale> {
        self.by_run.get(run_id).map(|&i| &self.sales[i])
    }

    /// Join `sale`'s queue, or find the user's place. An admission that lapsed, or whose token
    /// admitted an order already (a token admits one), is over: the user joins again, at the back.
    pub async fn join(&self, sale: &Sale, user: i64, lane: Lane, now_ms: i64) -> Result<Status, QueueError> {
        let offset = if lane == Lane::Slow { self.slow_lane_offset } else { 0 };
        let place = self.backend.join(&sale.sale_id, user, offset, lane == Lane::Slow).await?;
        let status = self.status_of(sale, user, Some(place), now_ms);
        // The admission's time when it is over: lapsed (no status), or its token spent.
        let over_since = match (&status, place) {
            (None, Place::Admitted { at_ms }) => Some(at_ms),
            (Some(Status::Admitted { token, .. }), Place::Admitted { at_ms }) => {
                self.backend.spent(QueueTokens::id(token), now_ms).await?.then_some(at_ms)
            }
            _ => None,
        };
        let Some(at_ms) = over_since else { return Ok(status.unwrap_or(Status::NotJoined)) };
        self.backend.forget(&sale.sale_id, user, at_ms).await?;
        let place = self.backend.join(&sale.sale_id, user, offset, lane == Lane::Slow).await?;
        Ok(self.status_of(sale, user, Some(place), now_ms).unwrap_or(Status::NotJoined))
    }

    pub async fn status(&self, sale: &Sale, user: i64, now_ms: i64) -> Result<Status, QueueError> {
        let place = self.backend.status(&sale.sale_id, user).await?;
        Ok(self.status_of(sale, user, place, now_ms).unwrap_or(Status::NotJoined))
    }

    /// None: an admission that lapsed.
    fn status_of(&self, sale: &Sale, user: i64, place: Option<Place>, now_ms: i64) -> Option<Status> {
        Some(match place {
            None => Status::NotJoined,
            Some(Place::Full) => Status::Full,
            Some(Place::Waiting { position }) => Status::Waiting { position },
            Some(Place::Admitted { at_ms }) => {
                let expires_at_ms = at_ms + self.tokens.ttl_ms();
                if expires_at_ms <= now_ms {
                    return None;
                }
                Status::Admitted { token: self.tokens.issue(&sale.sale_id, user, expires_at_ms), expires_at_ms }
            }
        })
    }

    /// One admission tick for every open sale; returns the users admitted.
    pub async fn tick(&self, now_ms: i64) -> Result<u64, QueueError> {
        let mut admitted = 0;
        for sale in self.sales.iter().filter(|s| s.opens_at_ms <= now_ms) {
            let burst = sale.admit_per_s.min(ADMIT_BATCH_MAX);
            admitted += self.backend.admit(&sale.sale_id, sale.admit_per_s, burst, now_ms).await?.len() as u64;
        }
        Ok(admitted)
    }
}

/// Admit forever, every `tick`, by `clock`.
pub async fn admit_forever(room: Arc<WaitingRoom>, clock: chepiao_engine::Clock, tick: std::time::Duration) {
    loop {
        tokio::time::sleep(tick).await;
        match room.tick(clock.as_ref()() as i64).await {
            Ok(n) => metrics::counter!("chepiao_queue_admitted_total").increment(n),
            Err(e) => tracing::warn!(error = %e, "waiting room: admission tick failed"),
        }
    }
}

/// The queue score of the `seq`-th joiner: lanes interleave without ties.
pub fn score(seq: u64, lane_offset: u64, slow: bool) -> u64 {
    (seq + lane_offset) * 2 + u64::from(slow)
}

/// The suite every backend passes (called by the server's tests with a fresh backend each).
#[doc(hidden)]
pub mod suite {
    use super::*;

    pub async fn run_all(b: &dyn QueueBackend, prefix: &str) {
        join_is_idempotent_and_fifo(b, &format!("{prefix}-fifo")).await;
        admission_follows_join_order_and_rate(b, &format!("{prefix}-rate")).await;
        slow_lane_is_admitted_later(b, &format!("{prefix}-slow")).await;
        tokens_are_spent_once(b, &format!("{prefix}-token")).await;
    }

    async fn join_is_idempotent_and_fifo(b: &dyn QueueBackend, sale: &str) {
        let name = b.name();
        assert_eq!(b.status(sale, 1).await.unwrap(), None, "{name}");
        for user in 1..=5 {
            assert_eq!(b.join(sale, user, 0, false).await.unwrap(), Place::Waiting { position: user as u64 - 1 });
        }
        assert_eq!(b.join(sale, 3, 0, false).await.unwrap(), Place::Waiting { position: 2 }, "{name}: keeps its place");
        assert_eq!(b.waiting(sale).await.unwrap(), 5);
        assert_eq!(b.status(sale, 4).await.unwrap(), Some(Place::Waiting { position: 3 }));
    }

    async fn admission_follows_join_order_and_rate(b: &dyn QueueBackend, sale: &str) {
        let name = b.name();
        for user in 1..=10 {
            b.join(sale, user, 0, false).await.unwrap();
        }
        // The first call starts the clock; 10 a second, 300 ms later: 3 users, the first three.
        assert!(b.admit(sale, 10, 10, 1_000).await.unwrap().is_empty(), "{name}");
        assert_eq!(b.admit(sale, 10, 10, 1_300).await.unwrap(), [1, 2, 3], "{name}");
        assert!(b.admit(sale, 10, 10, 1_300).await.unwrap().is_empty(), "{name}: the budget was spent");
        assert_eq!(b.status(sale, 2).await.unwrap(), Some(Place::Admitted { at_ms: 1_300 }));
        assert_eq!(b.status(sale, 5).await.unwrap(), Some(Place::Waiting { position: 1 }), "{name}");
        assert_eq!(b.join(sale, 2, 0, false).await.unwrap(), Place::Admitted { at_ms: 1_300 }, "{name}");
        // A long pause admits at most the burst.
        assert_eq!(b.admit(sale, 10, 2, 60_000).await.unwrap(), [4, 5], "{name}");
        b.forget(sale, 1, 1_299).await.unwrap();
        assert_eq!(b.status(sale, 1).await.unwrap(), Some(Place::Admitted { at_ms: 1_300 }), "{name}: not that one");
        b.forget(sale, 1, 1_300).await.unwrap();
        assert_eq!(b.status(sale, 1).await.unwrap(), None, "{name}");
        assert_eq!(b.join(sale, 1, 0, false).await.unwrap(), Place::Waiting { position: 5 }, "{name}: at the back");
    }

    async fn slow_lane_is_admitted_later(b: &dyn QueueBackend, sale: &str) {
        let name = b.name();
        b.join(sale, 1, 3, true).await.unwrap(); // suspect: 3 places back
        for user in 2..=6 {
            b.join(sale, user, 0, false).await.unwrap();
        }
        b.admit(sale, 1000, 1000, 0).await.unwrap();
        let order = b.admit(sale, 1000, 1000, 6).await.unwrap();
        assert_eq!(order, [2, 3, 4, 1, 5, 6], "{name}: the slow joiner goes after the next three");
    }

    async fn tokens_are_spent_once(b: &dyn QueueBackend, token: &str) {
        let name = b.name();
        assert!(!b.spent(token, 1_000).await.unwrap(), "{name}: not spent yet");
        assert!(b.spend(token, "k1", 60_000, 1_000).await.unwrap(), "{name}");
        assert!(b.spend(token, "k1", 60_000, 1_001).await.unwrap(), "{name}: a retry of the same order");
        assert!(!b.spend(token, "k2", 60_000, 1_002).await.unwrap(), "{name}: another order");
        assert!(b.spent(token, 1_003).await.unwrap(), "{name}");
        b.unspend(token, "k2").await.unwrap();
        assert!(b.spent(token, 1_004).await.unwrap(), "{name}: only its own order gives it back");
        b.unspend(token, "k1").await.unwrap();
        assert!(!b.spent(token, 1_005).await.unwrap(), "{name}: given back");
        assert!(b.spend(token, "k2", 60_000, 1_006).await.unwrap(), "{name}: usable again");
    }
}
