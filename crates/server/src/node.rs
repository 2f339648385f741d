//! This node's claim on its database: one seat engine per database (see
//! `chepiao_store::lease`), so a second node started on a database that already belongs to
//! another engine refuses to start, before it could sell a seat the first one sold. Nodes of a
//! cluster (`cluster = true`) all run replicas of one engine, named by its log's streams, so
//! they share the claim, and a one-node engine is still refused.
//!
//! Also the cluster's background duties ([`duties_forever`]): one node at a time holds the
//! duties lease and runs them; when it dies, another takes the lease once its time to live
//! has passed.

use std::sync::Arc;
use std::time::Duration;

use chepiao_engine::Clock;
use chepiao_store::{DUTIES_LEASE, ENGINE_LEASE, Store};

use crate::start::StartError;

/// How often the claim's "last seen" is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The engine this node runs and this process, as the lease names them.
#[derive(Clone, Debug)]
pub struct NodeClaim {
    pub engine_id: String,
    pub instance: String,
}

/// Claim the database for this node's engine (the one in `engine_dir`, or the cluster's), or
/// refuse with a message saying whose it is.
pub async fn claim(store: &dyn Store, config: &crate::Config, now_ms: i64) -> Result<NodeClaim, StartError> {
    let engine_dir = config.engine_dir();
    let engine_id = if config.cluster {
        format!("cluster:{}", config.engine_stream)
    } else {
        chepiao_engine::engine_id(&engine_dir)
            .map_err(|e| StartError::Config(format!("{}: the engine's id: {e}", engine_dir.display())))?
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let instance = format!("pid {} on {} ({:016x})", std::process::id(), host.trim(), chepiao_engine::random_u64());
    let lease = store.claim_lease(ENGINE_LEASE, &engine_id, &instance, now_ms).await?;
    if lease.holder != engine_id {
        return Err(StartError::OtherEngine { ours: engine_id, lease: Box::new(lease) });
    }
    tracing::info!(engine = engine_id, since_ms = lease.since_ms, "this database belongs to this node's seat engine");
    Ok(NodeClaim { engine_id, instance })
}

/// Renew the claim's "last seen" every few seconds (errors are logged; the claim stays).
pub async fn renew_forever(store: Arc<dyn Store>, claim: NodeClaim, clock: Clock) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let now = clock() as i64;
        match store.claim_lease(ENGINE_LEASE, &claim.engine_id, &claim.instance, now).await {
            Ok(l) if l.holder == claim.engine_id => {}
            Ok(l) => tracing::error!(holder = l.holder, "the database was given to another engine while this node ran"),
            Err(e) => tracing::warn!(error = %e, "renewing this node's claim on the database failed"),
        }
    }
}

/// How long the duties lease lives without renewal: a dead holder's duties move after it.
pub const DUTIES_TTL: Duration = Duration::from_secs(10);
/// How often the holder renews it (and the others try to take it).
const DUTIES_RENEW_EVERY: Duration = Duration::from_secs(2);

/// Hold the duties lease when this node can, and run `start()`'s tasks only while it is held:
/// they are aborted as soon as a renewal fails or finds another holder (a node cut off from
/// the database stops before its lease could pass to another).
pub async fn duties_forever(
    store: Arc<dyn Store>,
    claim: NodeClaim,
    clock: Clock,
    start: impl Fn() -> Vec<tokio::task::JoinHandle<()>> + Send + 'static,
) {
    // Aborted with this task too (a node shutting down stops its duties).
    let mut running = AbortOnDrop(Vec::new());
    loop {
        let now = clock() as i64;
        let ttl = DUTIES_TTL.as_millis() as i64;
        let held = match store.take_lease(DUTIES_LEASE, &claim.instance, &claim.instance, now, ttl).await {
            Ok(l) => l.holder == claim.instance,
            Err(e) => {
                tracing::warn!(error = %e, "renewing the duties lease failed");
                false
            }
        };
        if held && running.0.is_empty() {
            tracing::info!(instance = claim.instance, "this node took the background duties");
            running.0 = start();
        } else if !held && !running.0.is_empty() {
            tracing::warn!(instance = claim.instance, "this node gave up the background duties");
            running = AbortOnDrop(Vec::new());
        }
        tokio::time::sleep(DUTIES_RENEW_EVERY).await;
    }
}

/// Tasks aborted when this is dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
