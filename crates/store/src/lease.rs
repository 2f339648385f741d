//! Which seat engine a database belongs to, and which node does the background duties.
//!
//! Each node's seat engine holds the whole inventory in its own log, so two engines selling
//! from one database would sell every seat twice. Until the engine is replicated (the cluster
//! issue), a database belongs to one engine, named by the id kept in its directory: the first
//! node to start claims it, the same engine (restarted, or its directory moved to another
//! machine) finds its claim, and any other engine is refused at start. The claim records when
//! its holder was last seen, for the refusal's message.

use async_trait::async_trait;

use crate::error::Result;

/// The claim on a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The engine's id (kept in its directory).
    pub holder: String,
    /// The process (one per start) that last renewed it, and where it runs.
    pub instance: String,
    pub since_ms: i64,
    pub seen_at_ms: i64,
}

/// The lease every node with a seat engine takes.
pub const ENGINE_LEASE: &str = "seat-engine";

#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Claim lease `name` for `holder` if nobody has it; renew it if `holder` has it. Returns
    /// the lease as it stands after the call: someone else's when it was not ours to take.
    async fn claim_lease(&self, name: &str, holder: &str, instance: &str, now_ms: i64) -> Result<Lease>;

    /// Claim lease `name` for `holder` as `claim_lease` does, and also take it from a holder not
    /// seen for `ttl_ms` (one that died): a lease with a time to live, for work one node of
    /// several does at a time.
    async fn take_lease(&self, name: &str, holder: &str, instance: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease>;
}

/// The lease of the cluster's background duties (the sweeper, the relay, the waitlist matcher,
/// reconciliation, ...): one node at a time does them, another takes over when it dies.
pub const DUTIES_LEASE: &str = "background-duties";
