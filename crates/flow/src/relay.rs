//! The outbox relay: hands due outbox rows to the event bus, earliest due first. Woken at once
//! when a transaction queued events, and every `poll` otherwise (rows written by another node,
//! retries whose backoff ended, hand-offs with no outcome in time).
//!
//! Each event succeeds or fails alone: a row is marked SENT (one more attempt) before the bus
//! gets it; what the bus handled is deleted, what failed is put back after a backoff (or goes
//! DEAD when out of attempts, for an operator), so one event that always fails never holds up
//! the others. If the bus is down the rows go back as they were (the attempt is not counted)
//! and the relay retries with backoff; nothing is lost (I2).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chepiao_engine::Clock;
use chepiao_store::{AuditEntry, OutboxFailure, OutboxRow, OutboxState, RetryPolicy, Store, StoreError};
use tokio::sync::Notify;

use crate::bus::{Delivery, EventBus};

/// Rows per batch.
pub const RELAY_BATCH_MAX: u32 = 512;

/// What an operator's retry of an outbox event did.
#[derive(Debug)]
pub enum Retried {
    /// The DEAD event is due again now, its attempts counted from zero (audited).
    Now(OutboxRow),
    /// The event is not DEAD (it is retried on its own): left as it is.
    NotDead(OutboxRow),
    /// No such event (or handled and deleted).
    Unknown,
}

pub struct Relay {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    clock: Clock,
    policy: RetryPolicy,
    /// How long a SENT row waits for its outcome before it is handed over again.
    redeliver_after_ms: i64,
    wake: Notify,
    paused: AtomicBool,
    /// Outcomes the store could not take (it was down): recorded before anything else next
    /// time, so handled events are not handed over again after the redelivery delay.
    unrecorded: tokio::sync::Mutex<Option<(Vec<i64>, Vec<Delivery>)>>,
}

impl Relay {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn EventBus>,
        clock: Clock,
        policy: RetryPolicy,
        redeliver_after_ms: i64,
    ) -> Relay {
        Relay {
            store,
            bus,
            clock,
            policy,
            redeliver_after_ms,
            wake: Notify::new(),
            paused: AtomicBool::new(false),
            unrecorded: Default::default(),
        }
    }

    pub fn bus_name(&self) -> &'static str {
        self.bus.name()
    }

    /// A round trip to the bus (readiness).
    pub async fn ping_bus(&self) -> Result<(), crate::bus::BusError> {
        self.bus.ping().await
    }

    fn now_ms(&self) -> i64 {
        (self.clock)() as i64
    }

    /// An operator's retry of DEAD event `id`: due now, its attempts counted from zero, the
    /// retry in the audit log, and the relay woken.
    pub async fn retry_dead(&self, id: i64) -> Result<Retried, StoreError> {
        let now_ms = self.now_ms();
        let Some(row) = self.store.outbox_retry(id, now_ms).await? else {
            return Ok(self.find(id).await?.map_or(Retried::Unknown, Retried::NotDead));
        };
        let detail = format!("{} {}", row.event.kind(), row.event.subject());
        let entry = AuditEntry { at_ms: now_ms, kind: "event.retry".into(), subject: id.to_string(), detail };
        self.store.audit_append(&entry).await?;
        self.wake();
        Ok(Retried::Now(row))
    }

    /// Event `id` in whatever state it is (None once handled and deleted).
    async fn find(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        for which in OutboxState::ALL {
            // Ids start at 1: `id - 1` of any id the caller sends, without overflow.
            let rows = self.store.outbox_list(*which, id.saturating_sub(1), 1).await?;
            if let Some(r) = rows.into_iter().find(|r| r.id == id) {
                return Ok(Some(r));
            }
        }
        Ok(None)
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
        if self.bus.in_process() {
            // What this process had handed to its own bus died with the last one.
            match self.store.outbox_requeue_sent(self.now_ms()).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "outbox rows in hand at the last stop are due again"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "requeueing sent outbox rows failed; they come due later"),
            }
        }
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

    /// Hand over what is due until nothing is (or paused).
    async fn drain(&self) -> Result<(), String> {
        let mut unrecorded = self.unrecorded.lock().await;
        if let Some((ids, deliveries)) = unrecorded.take()
            && let Err(e) = self.record(&ids, deliveries.clone()).await
        {
            *unrecorded = Some((ids, deliveries));
            return Err(e);
        }
        drop(unrecorded);
        while !self.paused.load(Ordering::SeqCst) {
            let now = self.now_ms();
            let rows = self.store.outbox_due(now, RELAY_BATCH_MAX).await.map_err(|e| e.to_string())?;
            if rows.is_empty() {
                return Ok(());
            }
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            self.store.outbox_sent(&ids, now + self.redeliver_after_ms).await.map_err(|e| e.to_string())?;
            let deliveries = match self.bus.publish(&rows).await {
                Ok(d) => d,
                Err(e) => {
                    self.store.outbox_unsent(&ids, now).await.map_err(|e| e.to_string())?;
                    return Err(e.to_string());
                }
            };
            if let Err(e) = self.record(&ids, deliveries.clone()).await {
                *self.unrecorded.lock().await = Some((ids, deliveries));
                return Err(e);
            }
            if (rows.len() as u32) < RELAY_BATCH_MAX {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Delete what was handled, schedule what failed.
    async fn record(&self, ids: &[i64], deliveries: Vec<Delivery>) -> Result<(), String> {
        assert_eq!(ids.len(), deliveries.len(), "one outcome per event");
        let mut handled = Vec::new();
        let mut failed = Vec::new();
        for (&id, d) in ids.iter().zip(deliveries) {
            match d {
                Delivery::Handled => handled.push(id),
                Delivery::Failed(error) => failed.push(OutboxFailure { id, error }),
                Delivery::Queued => {}
            }
        }
        self.store.outbox_done(&handled).await.map_err(|e| e.to_string())?;
        metrics::counter!("chepiao_outbox_published_total").increment(ids.len() as u64);
        if !failed.is_empty() {
            for f in &failed {
                tracing::warn!(outbox_id = f.id, error = %f.error, "event failed; retried after a backoff");
            }
            metrics::counter!("chepiao_events_failed_total").increment(failed.len() as u64);
            let dead =
                self.store.outbox_failed(&failed, self.policy, self.now_ms()).await.map_err(|e| e.to_string())?;
            for id in &dead {
                tracing::error!(outbox_id = id, "event is DEAD after its attempts; an operator must retry it");
            }
            metrics::counter!("chepiao_events_dead_total").increment(dead.len() as u64);
        }
        Ok(())
    }
}
