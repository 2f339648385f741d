//! 12306's purchase rules, each switched by configuration ([`PurchaseRules`]):
//! - a user has one unpaid order at a time (pay or cancel it first);
//! - a passenger never has two live holds or tickets whose journeys overlap in time;
//! - after `cancellations_per_day_max` cancelled orders in a day, the user orders again the
//!   next day (China time);
//! - a ticket is rebooked once (checked in `rebook`).
//!
//! The rules close abuse holes too: without them one account could hold most of a train.
//! They are checked before the seats are held, from one read of the store, and a user's
//! placements are serialised by a striped lock (so two concurrent orders cannot both pass the
//! one-unpaid-order check). A retry of the order the rules let through still answers: the
//! unpaid order with the same idempotency key is that order.

use std::collections::HashMap;

use chepiao_store::{OrderKind, PurchaseFacts, PurchaseQuery, Trip};

pub use crate::config::PurchaseRules;
use crate::context::Flow;
use crate::error::{FlowError, Result};
use crate::stored::StoredLeg;

/// Each passenger's journey on each leg, in time.
pub fn trips_of(legs: &[StoredLeg], passengers: &[Vec<i64>], persons: &HashMap<i64, Vec<u8>>) -> Result<Vec<Trip>> {
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| FlowError::Internal(format!("a leg's time {s:?}: {e}")))
    };
    let mut trips = Vec::new();
    for (i, (leg, ids)) in legs.iter().zip(passengers).enumerate() {
        let (departs_at_ms, arrives_at_ms) = (at(&leg.departs_at)?, at(&leg.arrives_at)?);
        trips.extend(ids.iter().map(|&passenger_id| Trip {
            passenger_id,
            // Every id here was checked to be the user's, so it has a person.
            person: persons.get(&passenger_id).cloned().unwrap_or_default(),
            leg: i as i64,
            departs_at_ms,
            arrives_at_ms,
        }));
    }
    Ok(trips)
}

/// How far before the day began the rules look for the user's unpaid and cancelled orders,
/// beyond one hold's time: an order created earlier than both cannot be unpaid or have been
/// cancelled today unless the sweeper had fallen a day behind (a cancellation is accepted while
/// the order is still PENDING_PAYMENT, even past its window) or the pay window was lengthened by
/// more than a day. The rules read that range of the user's orders (`orders_by_user`).
const RULES_LOOK_BACK_MS: i64 = 24 * 3600 * 1000;

/// Refuse an order the rules do not allow. The caller holds the user's lock until its order
/// is recorded.
pub async fn check(
    flow: &Flow,
    user_id: i64,
    idem_key: &str,
    kind: OrderKind,
    trips: &[Trip],
    ignore_order: Option<&str>,
) -> Result<()> {
    let rules = flow.config.rules;
    if !rules.any_before_placing() {
        return Ok(());
    }
    let today = chepiao_domain::ServiceDate::today_in_china(crate::time::ms_to_utc(flow.now_ms()));
    let day_start_ms = today.at_minutes(0).timestamp_millis();
    let q = PurchaseQuery {
        user_id,
        day_start_ms,
        since_ms: day_start_ms - RULES_LOOK_BACK_MS - flow.config.hold_ttl_ms() as i64,
        trips: if rules.no_overlapping_trips { trips.to_vec() } else { Vec::new() },
        ignore_order: ignore_order.map(str::to_string),
    };
    let facts = flow.store.purchase_facts(&q).await?;
    let Some(refusal) = refusal(&rules, &facts, idem_key, kind) else {
        return Ok(());
    };
    // A retry of an order already placed answers that order (the rules let it through once);
    // looked up only on the refusal path, so an allowed order costs one read.
    match flow.store.order_by_key(user_id, idem_key).await? {
        Some(_) => Ok(()),
        None => Err(refusal),
    }
}

/// The first rule `facts` break, if any.
fn refusal(rules: &PurchaseRules, facts: &PurchaseFacts, idem_key: &str, kind: OrderKind) -> Option<FlowError> {
    if rules.one_unpaid_order
        && kind != OrderKind::Wish
        && let Some(unpaid) = &facts.unpaid
        && unpaid.idem_key != idem_key
    {
        return Some(FlowError::UnpaidOrder(format!(
            "order {} is waiting for payment: pay or cancel it first",
            unpaid.order_no
        )));
    }
    let max = rules.cancellations_per_day_max;
    if max > 0 && kind != OrderKind::Wish && facts.cancelled_today >= max {
        return Some(FlowError::TooManyCancellations(format!(
            "{} orders cancelled today (at most {max}): ordering opens again tomorrow",
            facts.cancelled_today
        )));
    }
    let overlap = facts.overlaps.first()?;
    let which = match overlap.order_no.as_str() {
        "" => "booked on another account".to_string(),
        order_no => format!("order {order_no}"),
    };
    Some(FlowError::TripOverlap(format!("passenger {} already travels then ({which})", overlap.passenger_id)))
}
