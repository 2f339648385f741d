//! The flow's background tasks: the expiry sweeper, the waitlist matcher, the outbox relay,
//! the nonce pruner, the sale-window roll and, with NATS, the issuer's consumer.

use std::sync::Arc;
use std::time::Duration;

use chepiao_domain::ServiceDate;

use crate::calendar::RunCalendar;
use crate::context::Flow;
use crate::payments::NOTIFY_SKEW_S;
use crate::time::ms_to_utc;
use crate::{orders, waitlist};

/// Start the background tasks; the caller aborts them at shutdown.
pub fn spawn(flow: &Arc<Flow>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(orders::sweep_forever(flow.clone(), Duration::from_millis(500))),
        tokio::spawn(waitlist::match_forever(flow.clone())),
        tokio::spawn(flow.relay.clone().run_forever(Duration::from_millis(200))),
        tokio::spawn(prune_nonces_forever(flow.clone())),
        tokio::spawn(roll_forever(flow.clone())),
    ];
    if let Some(nats) = &flow.nats {
        tasks.push(tokio::spawn(nats.clone().consume_forever(flow.issuer.clone())));
    }
    tasks
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
