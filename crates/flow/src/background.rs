//! The flow's background tasks: the expiry sweeper, the waitlist matcher, the outbox relay,
//! reconciliation of engine holds, the nonce pruner, the sale-window roll, retiring runs
//! that have arrived, the outbox gauges and, with NATS, the issuer's consumer.

use std::sync::Arc;
use std::time::Duration;

use chepiao_domain::{RunId, ServiceDate};

use crate::calendar::RunCalendar;
use crate::context::Flow;
use crate::payments::NOTIFY_SKEW_S;
use crate::time::ms_to_utc;
use crate::{orders, reconcile, waitlist};

/// Days after its date by which every run has arrived (the longest journeys take under three).
pub const RUN_DAYS_MAX: i64 = 4;
/// How long after its arrival a run leaves the engine, ms.
const RETIRE_AFTER_ARRIVAL_MS: i64 = 3600 * 1000;

/// Start the background tasks; the caller aborts them at shutdown.
pub fn spawn(flow: &Arc<Flow>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = spawn_everywhere(flow);
    tasks.extend(spawn_duties(flow));
    tasks
}

/// The tasks every node runs, one node or several: the sale-window roll (each node's own
/// calendar), the gauges and, with NATS, the issuer's share of the bus's consumer.
pub fn spawn_everywhere(flow: &Arc<Flow>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(roll_forever(flow.clone())), tokio::spawn(gauges_forever(flow.clone()))];
    if let Some(nats) = &flow.nats {
        tasks.push(tokio::spawn(nats.clone().consume_forever(flow.issuer.clone(), flow.config.event_retry)));
    }
    tasks
}

/// The duties one node does for all (a cluster runs them on the holder of the duties lease):
/// the expiry sweeper, the waitlist matcher, the outbox relay, reconciliation, the nonce
/// pruner and retiring arrived runs. Each is safe to repeat (its SQL moves a row only from the
/// state it expects, and engine commands are idempotent), so a lease that passes while its old
/// holder finishes a round costs work, not correctness.
pub fn spawn_duties(flow: &Arc<Flow>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(orders::sweep_forever(flow.clone(), Duration::from_millis(500))),
        tokio::spawn(waitlist::match_forever(flow.clone())),
        tokio::spawn(flow.relay.clone().run_forever(Duration::from_millis(200))),
        tokio::spawn(reconcile::reconcile_forever(flow.clone(), flow.now_ms())),
        tokio::spawn(prune_nonces_forever(flow.clone())),
        tokio::spawn(retire_forever(flow.clone())),
    ]
}

/// Forget notify nonces older than the notify time window (older notifies fail the `ts` check).
pub async fn prune_nonces_forever(flow: Arc<Flow>) {
    loop {
        let horizon_ms = flow.now_ms() - 2 * NOTIFY_SKEW_S * 1000;
        if let Err(e) = flow.store.prune_nonces(horizon_ms).await {
            tracing::warn!(error = %e, "pruning notify nonces failed");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// At each midnight (China time, by the flow's clock) create the runs of the new last sale day
/// and swap in a fresh calendar. A failure is logged and retried a minute later; search keeps
/// the old calendar meanwhile. The clock is read every second, so a test that moves it sees
/// the roll at once.
pub async fn roll_forever(flow: Arc<Flow>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let today = ServiceDate::today_in_china(ms_to_utc(flow.now_ms()));
        if flow.calendar().today == today {
            continue;
        }
        match RunCalendar::load(flow.store.as_ref(), &flow.network, today, flow.config.sale_window_days).await {
            Ok(cal) => {
                flow.set_calendar(cal);
                tracing::info!(%today, "sale window rolled forward");
            }
            Err(e) => {
                tracing::error!(error = %e, "rolling the sale window failed; retrying in a minute");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

/// Every ten minutes, runs that arrived more than an hour ago leave the engine (SQL keeps what
/// they sold), and so does every run dated [`RUN_DAYS_MAX`] days back: the engine's memory
/// follows the sale window, not the days behind it.
pub async fn retire_forever(flow: Arc<Flow>) {
    loop {
        match retire_arrived(&flow).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "runs that arrived left the seat engine"),
            Err(e) => tracing::warn!(error = %e, "retiring arrived runs failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
}

/// One retire pass; how many runs left the engine.
pub async fn retire_arrived(flow: &Flow) -> crate::Result<u32> {
    let now_ms = flow.now_ms();
    let today = ServiceDate::today_in_china(ms_to_utc(now_ms));
    let floor = today.add_days(-RUN_DAYS_MAX);
    let mut arrived = Vec::new();
    for days_back in 0..RUN_DAYS_MAX {
        let date = today.add_days(-days_back);
        for train in flow.network.trains() {
            let Some(arrive_min) = train.stops.last().and_then(|s| s.arrive_min) else { continue };
            if date.at_minutes(arrive_min).timestamp_millis() + RETIRE_AFTER_ARRIVAL_MS < now_ms {
                arrived.push(RunId { train: train.code.clone(), date });
            }
        }
    }
    Ok(flow.engine.retire(floor, &arrived).await?)
}

/// Every ten seconds: outbox rows per state, the engine's size and the process's resident
/// memory, as gauges.
pub async fn gauges_forever(flow: Arc<Flow>) {
    loop {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
        metrics::gauge!("chepiao_process_resident_bytes").set(pages * 4096.0);
        if let Ok(c) = flow.store.outbox_counts().await {
            metrics::gauge!("chepiao_outbox_rows", "state" => "pending").set(c.pending as f64);
            metrics::gauge!("chepiao_outbox_rows", "state" => "sent").set(c.sent as f64);
            metrics::gauge!("chepiao_outbox_rows", "state" => "dead").set(c.dead as f64);
        }
        if let Ok(stats) = flow.engine.stats().await {
            let size = stats.iter().fold(chepiao_engine::StateSize::default(), |a, s| a + s.size);
            metrics::gauge!("chepiao_engine_runs").set(size.runs as f64);
            metrics::gauge!("chepiao_engine_live_holds").set(size.live_holds as f64);
            metrics::gauge!("chepiao_engine_sold_legs").set(size.sold_legs as f64);
            metrics::gauge!("chepiao_engine_keys").set(size.keys as f64);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
