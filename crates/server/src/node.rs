//! This node's claim on its database: one seat engine per database (see
//! `chepiao_store::lease`), so a second node started on a database that already belongs to
//! another engine refuses to start, before it could sell a seat the first one sold.

use std::sync::Arc;
use std::time::Duration;

use chepiao_engine::Clock;
use chepiao_store::{ENGINE_LEASE, Store};

use crate::start::StartError;

/// How often the claim's "last seen" is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The engine this node runs and this process, as the lease names them.
#[derive(Clone, Debug)]
pub struct NodeClaim {
    pub engine_id: String,
    pub instance: String,
}

/// Claim the database for the engine in `engine_dir`, or refuse with a message saying whose it is.
pub async fn claim(store: &dyn Store, engine_dir: &std::path::Path, now_ms: i64) -> Result<NodeClaim, StartError> {
    let engine_id = chepiao_engine::engine_id(engine_dir)
        .map_err(|e| StartError::Config(format!("{}: the engine's id: {e}", engine_dir.display())))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let instance = format!("pid {} on {}", std::process::id(), host.trim());
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
