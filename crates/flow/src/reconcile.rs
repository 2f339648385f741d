//! Reconciliation: engine holds that no order carries are given back.
//!
//! An order holds its seats in the engine first and records itself (with the holds it
//! carries) second. A crash between the two, or a store that refused the row, would leave
//! seats held with no order for the rest of the hold's TTL: a phantom sell-out in a rush. So at
//! start every held hold made before this process started is looked up in the store, and then
//! every `reconcile_after_s` the held holds older than that are; those no order carries are
//! released. A hold whose order is still being written is younger than the delay, by design of
//! the delay (the buy path's time limit is far shorter).

use std::sync::Arc;
use std::time::Duration;

use chepiao_engine::{LiveHold, Reject, Reply, hold_shard};

use crate::context::Flow;
use crate::error::Result;

/// Held holds looked up per store call (summed over shards).
const PAGE_LEN: u32 = 2_000;
/// How often the periodic pass runs.
const EVERY: Duration = Duration::from_secs(15);

/// Release the orphans made before this process started, then keep releasing those older
/// than `reconcile_after_s`.
pub async fn reconcile_forever(flow: Arc<Flow>, started_ms: i64) {
    let mut made_before = started_ms;
    loop {
        match reconcile(&flow, made_before as u64).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(released = n, "released engine holds that no order carries"),
            Err(e) => tracing::warn!(error = %e, "reconciling engine holds failed; retrying"),
        }
        tokio::time::sleep(EVERY).await;
        made_before = flow.now_ms() - flow.config.reconcile_after_s as i64 * 1000;
    }
}

/// One pass over the held holds made before `made_before_ms`; how many were released.
pub async fn reconcile(flow: &Flow, made_before_ms: u64) -> Result<u64> {
    let shards = flow.engine.shard_count();
    let per_shard = (PAGE_LEN / shards as u32).max(1);
    let mut after = vec![0u64; shards];
    let mut released = 0;
    loop {
        let page = flow.engine.live_holds(made_before_ms, &after, per_shard).await?;
        if page.is_empty() {
            return Ok(released);
        }
        for h in &page {
            after[hold_shard(h.hold) % shards] = h.hold;
        }
        let ids: Vec<i64> = page.iter().map(|h| h.hold as i64).collect();
        let known = flow.store.known_holds(&ids).await?;
        let orphans: Vec<&LiveHold> = page.iter().filter(|h| !known.contains(&(h.hold as i64))).collect();
        let mut this_page = 0;
        for h in orphans {
            match flow.engine.release(h.hold, h.run.clone()).await? {
                Reply::Released => this_page += 1,
                Reply::Rejected(Reject::AlreadySold) => {}
                other => tracing::error!(hold = h.hold, ?other, "releasing an orphan hold"),
            }
        }
        metrics::counter!("chepiao_orphan_holds_released_total").increment(this_page);
        released += this_page;
    }
}
