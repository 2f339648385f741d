//! The outbox relay: moves outbox rows to the event bus, oldest first, and deletes each batch
//! once the bus has it. Woken at once when a payment commits, and every `poll` otherwise (rows
//! written by another node, or left by a crash). If the bus is unavailable the rows stay in
//! the outbox and the relay retries with backoff; nothing is lost (I2).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chepiao_store::Store;
use tokio::sync::Notify;

use crate::bus::EventBus;

/// Rows per batch.
pub const RELAY_BATCH_MAX: u32 = 512;

pub struct Relay {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    wake: Notify,
    paused: AtomicBool,
}

impl Relay {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn EventBus>) -> Relay {
        Relay { store, bus, wake: Notify::new(), paused: AtomicBool::new(false) }
    }

    pub fn bus_name(&self) -> &'static str {
        self.bus.name()
    }

    /// New rows were committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stop or restart publishing (an operator's switch; tests use it to play a bus outage).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        self.wake();
    }

    pub async fn run_forever(self: Arc<Self>, poll: Duration) {
        let mut backoff = poll;
        loop {
            let _ = tokio::time::timeout(backoff, self.wake.notified()).await;
            if self.paused.load(Ordering::SeqCst) {
                continue;
            }
            match self.drain().await {
                Ok(()) => backoff = poll,
                Err(e) => {
                    tracing::warn!(error = %e, bus = self.bus.name(), "relay: publishing failed; the outbox keeps the rows");
                    backoff = (backoff * 2).clamp(poll, Duration::from_secs(5));
                }
            }
        }
    }

    /// Publish until the outbox is empty (or paused).
    async fn drain(&self) -> Result<(), String> {
        while !self.paused.load(Ordering::SeqCst) {
            let rows = self.store.outbox_pending(RELAY_BATCH_MAX).await.map_err(|e| e.to_string())?;
            if rows.is_empty() {
                return Ok(());
            }
            self.bus.publish(&rows).await.map_err(|e| e.to_string())?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            self.store.outbox_done(&ids).await.map_err(|e| e.to_string())?;
            metrics::counter!("chepiao_outbox_published_total").increment(ids.len() as u64);
            if (rows.len() as u32) < RELAY_BATCH_MAX {
                return Ok(());
            }
        }
        Ok(())
    }
}
