//! Orders: an order *is* a seat hold with a pay window (as on 12306).
//!
//! Creating one holds every leg's seats in the engine (all or none), then records the order
//! with the holds it carries. Retries are safe twice over: the engine's hold is idempotent on a
//! key derived from (user, idempotency key), and the store keeps one order per (user, key). A
//! crash between the two steps leaves a hold with no order: reconciliation
//! ([`reconcile_forever`]) releases it at the next start or within `reconcile_after_s`; a retry
//! before then finds the same hold and records the order. The pay window ends `hold_grace_s`
//! before the hold does, whether the hold is new or found again.
//!
//! Seats go back exactly once: only the transition to CANCELLED or EXPIRED (one SQL update that
//! checks status and version) may release them; the order then carries `seats_released = 0`
//! until the engine has released every hold, and a sweeper retries any it finds after a crash.
//! The engine keeps a hold `hold_grace_s` longer than the pay window, so a payment captured at
//! the last moment still finds its seats to confirm.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chepiao_api::orders::{LegBody, OrderRequest};
use chepiao_domain::{RunId, Telecode};
use chepiao_engine::{LegRequest, Reject, Reply};
use chepiao_store::{
    CreateOrder, NewOrder, NewPayment, OrderKind, OrderRecord, OrderStatus, PaymentRecord, Transition,
};
use sha2::{Digest, Sha256};

use crate::calendar::run_spec;
use crate::context::Flow;
use crate::error::{FlowError, Result};
use crate::rules;
use crate::stored::{StoredLeg, StoredSeat, engine_key, holds_of, legs_of, new_number, order_lines};

pub const LEGS_PER_ORDER_MAX: usize = 4;
pub const PASSENGERS_PER_LEG_MAX: usize = 5;
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 64;
/// Orders the expiry sweeper handles per round.
const SWEEP_BATCH_MAX: u32 = 512;

fn check_key(key: &str) -> Result<()> {
    let ok = (1..=IDEMPOTENCY_KEY_LEN_MAX).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(FlowError::BadParameter(format!(
            "`idempotency_key` must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters"
        )))
    }
}

/// One leg checked against the network, the calendar and the caller's passengers.
pub(crate) struct ResolvedLeg {
    pub engine: LegRequest,
    pub stored: StoredLeg,
    /// Per passenger.
    pub price_fen: i64,
}

/// `i` is the leg's place in an order's `legs` (errors name `legs[i].field`); `None` for a
/// body that is one leg itself (a wish: errors name the field alone).
pub(crate) fn resolve_leg(flow: &Flow, i: Option<usize>, leg: &LegBody, own: &HashSet<i64>) -> Result<ResolvedLeg> {
    let field = |name: &str| i.map_or_else(|| name.to_string(), |i| format!("legs[{i}].{name}"));
    let bad = |name: &str, msg: String| FlowError::BadParameter(format!("`{}`: {msg}", field(name)));
    let run: RunId = leg.run_id.parse().map_err(|e| bad("run_id", format!("{e}")))?;
    let calendar = flow.calendar();
    let train_idx = flow
        .network
        .train_idx(&run.train)
        .filter(|t| calendar.runs(*t, run.date))
        .ok_or_else(|| FlowError::UnknownRun(format!("`{}`: no run {run}", field("run_id"))))?;
    let train = flow.network.train(train_idx);
    let stop = |name: &str, code: &str| -> Result<usize> {
        let code: Telecode = code.parse().map_err(|e| bad(name, format!("{e}")))?;
        train
            .stops
            .iter()
            .position(|s| s.telecode == code)
            .ok_or_else(|| bad(name, format!("{code} is not a stop of {}", train.code)))
    };
    let (from, to) = (stop("from", &leg.from)?, stop("to", &leg.to)?);
    if from >= to {
        return Err(bad("to", "must be a stop after `from`".into()));
    }
    let layout = train.layout();
    if layout.capacity(leg.class) == 0 {
        return Err(bad("class", format!("{} has no {} places", train.code, leg.class.as_str())));
    }
    let n = check_passengers(leg, own, &field("passenger_ids"))?;
    let prefs = prefs(leg, n).map_err(|m| bad("seat_prefs", m))?;
    let depart_min =
        train.stops[from].depart_min.ok_or_else(|| bad("from", "the train does not depart there".into()))?;
    let arrive_min = train.stops[to].arrive_min.ok_or_else(|| bad("to", "the train does not arrive there".into()))?;
    let departs_at = run.date.at_minutes(depart_min);
    if departs_at.timestamp_millis() <= flow.now_ms() {
        return Err(FlowError::Departed(format!("{} left {} at {departs_at}", train.code, leg.from)));
    }
    if !calendar.on_sale(run.date.add_days(i64::from(depart_min / 1440))) {
        return Err(FlowError::OutsideSaleWindow(format!("{run} boarding at {departs_at} is not on sale")));
    }
    let km = train.stops[to].km.saturating_sub(train.stops[from].km);
    let price = chepiao_domain::fare::fare(train.train_type(), leg.class, km)
        .ok_or_else(|| bad("class", format!("no fare for {} on {}", leg.class.as_str(), train.code)))?;
    let engine = LegRequest {
        run: run.clone(),
        spec: run_spec(train),
        from: from as u8,
        to: to as u8,
        class: leg.class,
        passengers: n as u8,
        prefs,
    };
    let stored = StoredLeg {
        run_id: run.to_string(),
        train_code: train.code.to_string(),
        from: leg.from.clone(),
        to: leg.to.clone(),
        from_stop: from as u8,
        to_stop: to as u8,
        class: leg.class,
        departs_at: departs_at.to_rfc3339(),
        arrives_at: run.date.at_minutes(arrive_min).to_rfc3339(),
        hold: 0,
        hold_leg: 0,
        seats: Vec::new(),
        replaces: None,
        funding: Vec::new(),
    };
    Ok(ResolvedLeg { engine, stored, price_fen: price.0 })
}

/// A leg's passengers: 1 to [`PASSENGERS_PER_LEG_MAX`], distinct, all on the caller's list.
fn check_passengers(leg: &LegBody, own: &HashSet<i64>, field: &str) -> Result<usize> {
    let n = leg.passenger_ids.len();
    if !(1..=PASSENGERS_PER_LEG_MAX).contains(&n) {
        return Err(FlowError::BadParameter(format!("`{field}`: 1 to {PASSENGERS_PER_LEG_MAX} passengers")));
    }
    let distinct: HashSet<i64> = leg.passenger_ids.iter().copied().collect();
    if distinct.len() != n {
        return Err(FlowError::BadParameter(format!("`{field}`: a passenger is listed twice")));
    }
    if let Some(p) = leg.passenger_ids.iter().find(|p| !own.contains(p)) {
        return Err(FlowError::UnknownPassenger(format!("`{field}`: no passenger {p} on the caller's list")));
    }
    Ok(n)
}

fn prefs(leg: &LegBody, passengers: usize) -> Result<Vec<u8>, String> {
    let Some(prefs) = &leg.seat_prefs else { return Ok(Vec::new()) };
    if prefs.len() > passengers {
        return Err("at most one letter per passenger".into());
    }
    prefs
        .iter()
        .map(|p| match p.as_bytes() {
            [c] if c.is_ascii_uppercase() => Ok(*c),
            _ => Err(format!("{p:?} is not a seat letter (A-Z)")),
        })
        .collect()
}

/// The outcome of `POST /api/v1/orders`: the order, and whether this call created it.
pub struct Placed {
    pub order: OrderRecord,
    pub created: bool,
}

/// Run a step that holds seats on a task of its own and wait for it. If the caller stops
/// waiting (the client went away, or the buy path's time limit fired), the step still finishes
/// (it records its order, or gives its seats back) instead of being dropped between the hold
/// and the order row.
pub async fn detached<T, F>(step: F) -> Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T>> + Send + 'static,
{
    tokio::spawn(step).await.map_err(|e| FlowError::Internal(format!("a buy step failed: {e}")))?
}

/// Hold the seats and record the order (see the module doc); `source` is where it came from
/// (`web`, `app`, `api`, `console`), for the statistics.
pub async fn place(flow: &Flow, user_id: i64, req: &OrderRequest, source: &str) -> Result<Placed> {
    check_key(&req.idempotency_key)?;
    if !(1..=LEGS_PER_ORDER_MAX).contains(&req.legs.len()) {
        return Err(FlowError::BadParameter(format!("`legs`: 1 to {LEGS_PER_ORDER_MAX} legs")));
    }
    let request_hash = Sha256::digest(serde_json::to_vec(&req.legs).expect("legs serialise")).to_vec();
    let how = Placement { kind: OrderKind::Order, source, replacing: None };
    place_legs(flow, user_id, &req.idempotency_key, request_hash, &req.legs, &how).await
}

/// What an order is placed as.
pub(crate) struct Placement<'a> {
    pub kind: OrderKind,
    pub source: &'a str,
    /// A rebook's order: the ticket it replaces.
    pub replacing: Option<&'a Replacing>,
}

/// The ticket a rebook's order replaces, what was paid for it, with which payments, and the
/// order that bought it (whose trip the new one replaces).
pub struct Replacing {
    pub ticket_sn: String,
    pub order_no: String,
    pub price_fen: i64,
    pub funding: Vec<String>,
}

/// Hold `bodies`' seats and record them as the user's order under `idem_key`. A rebook's order
/// (`replacing`) charges only what its fare exceeds the old ticket's.
pub(crate) async fn place_legs(
    flow: &Flow,
    user_id: i64,
    idem_key: &str,
    request_hash: Vec<u8>,
    bodies: &[LegBody],
    how: &Placement<'_>,
) -> Result<Placed> {
    let wanted: Vec<i64> = bodies.iter().flat_map(|l| l.passenger_ids.iter().copied()).collect();
    let own = flow.passengers.of(flow.store.as_ref(), user_id, &wanted).await?;
    let resolved =
        bodies.iter().enumerate().map(|(i, l)| resolve_leg(flow, Some(i), l, &own.ids)).collect::<Result<Vec<_>>>()?;
    let stored: Vec<StoredLeg> = resolved.iter().map(|r| r.stored.clone()).collect();
    let ids: Vec<Vec<i64>> = bodies.iter().map(|b| b.passenger_ids.clone()).collect();
    let trips = rules::trips_of(&stored, &ids, &own.persons)?;
    // The rules read the user's orders once; the lock keeps a second placement of the same user
    // from passing them before this one is recorded.
    let _user = flow.user_locks.lock(user_id).await;
    let ignore = how.replacing.map(|r| r.order_no.as_str());
    rules::check(flow, user_id, idem_key, how.kind, &trips, ignore).await?;
    let key = engine_key(&[b"order", &user_id.to_le_bytes(), idem_key.as_bytes()]);
    let engine_legs = resolved.iter().map(|r| r.engine.clone()).collect();
    let outcome = match flow.engine.hold(key, engine_legs, flow.config.hold_ttl_ms()).await? {
        Ok(outcome) => outcome,
        // A retry after the order was paid: the order is the answer.
        Err(Reject::AlreadySold) => return recorded(flow, user_id, idem_key, &request_hash).await,
        Err(reject) => return Err(refusal(reject)),
    };
    let (mut legs, mut amount_fen) = seated_legs(resolved, &outcome, bodies);
    if let Some(r) = how.replacing {
        legs[0].replaces = Some(r.ticket_sn.clone());
        legs[0].funding = r.funding.clone();
        amount_fen = (amount_fen - r.price_fen).max(0);
    }
    let holds = holds_of(&legs)?;
    let now_ms = flow.now_ms();
    let passengers: Vec<usize> = bodies.iter().map(|b| b.passenger_ids.len()).collect();
    let order = NewOrder {
        order_no: new_number('E', now_ms),
        user_id,
        idem_key: idem_key.to_string(),
        request_hash: request_hash.clone(),
        amount_fen,
        pay_before_ms: outcome.expires_at_ms as i64 - flow.config.hold_grace_s as i64 * 1000,
        created_at_ms: now_ms,
        legs_json: serde_json::to_string(&legs).expect("legs serialise"),
        holds: holds.iter().map(|(h, _)| *h as i64).collect(),
        kind: how.kind,
        source: how.source.to_string(),
        trips,
        lines: order_lines(&legs, &passengers, amount_fen, now_ms),
    };
    match flow.batchers.orders.submit(order).await {
        Ok(CreateOrder::Created(order)) => Ok(Placed { order, created: true }),
        Ok(CreateOrder::Existing(existing)) => {
            // A concurrent retry recorded first. The engine gave it the same hold unless its
            // idempotency memory had moved on; then this call's hold is surplus.
            let theirs = holds_of(&legs_of(&existing)?)?;
            if theirs != holds {
                release_holds(flow, &holds).await;
            }
            replay(existing, &request_hash)
        }
        // The store may have committed the order before the error reached us (a connection cut
        // after COMMIT): releasing now could free seats a recorded order shows. Reconciliation
        // releases the holds within `reconcile_after_s` if, and only if, no order carries them.
        Err(e) => Err(e),
    }
}

/// The order already recorded under the user's key (its hold is sold: it was paid).
async fn recorded(flow: &Flow, user_id: i64, idem_key: &str, request_hash: &[u8]) -> Result<Placed> {
    match flow.store.order_by_key(user_id, idem_key).await? {
        Some(existing) => replay(existing, request_hash),
        None => Err(FlowError::Internal(format!("the hold of key {idem_key:?} is sold but no order records it"))),
    }
}

/// The legs as an order keeps them, with the seats the engine held, and their total fare.
pub(crate) fn seated_legs(
    resolved: Vec<ResolvedLeg>,
    outcome: &chepiao_engine::HoldOutcome,
    bodies: &[LegBody],
) -> (Vec<StoredLeg>, i64) {
    let mut legs = Vec::with_capacity(resolved.len());
    let mut amount_fen = 0;
    for (i, (r, held)) in resolved.into_iter().zip(&outcome.legs).enumerate() {
        let layout = r.engine.spec.layout();
        let mut leg = r.stored;
        leg.hold = held.hold;
        leg.hold_leg = outcome.legs[..i].iter().filter(|l| l.hold == held.hold).count() as u8;
        for (&passenger_id, &seat_index) in bodies[i].passenger_ids.iter().zip(&held.seats) {
            let place = layout.seat_at(seat_index).expect("the engine's seats are the layout's");
            leg.seats.push(StoredSeat {
                passenger_id,
                seat_index,
                coach: place.coach,
                seat: place.label.to_string(),
                price_fen: r.price_fen,
            });
            amount_fen += r.price_fen;
        }
        legs.push(leg);
    }
    (legs, amount_fen)
}

fn replay(existing: OrderRecord, request_hash: &[u8]) -> Result<Placed> {
    if existing.request_hash != request_hash {
        return Err(FlowError::KeyReused(format!(
            "idempotency key {:?} belongs to order {} with other legs",
            existing.idem_key, existing.order_no
        )));
    }
    Ok(Placed { order: existing, created: false })
}

pub(crate) fn refusal(reject: Reject) -> FlowError {
    match reject {
        Reject::NotEnoughSeats { leg } => FlowError::SoldOut(format!("legs[{leg}]: not enough seats")),
        Reject::StandingNotOnSale { leg } => FlowError::SoldOut(format!("legs[{leg}]: {reject}")),
        Reject::KeyReused => FlowError::KeyReused(reject.to_string()),
        Reject::Limit(m) => FlowError::Busy(m),
        Reject::Invalid(m) => FlowError::BadParameter(m),
        Reject::RunRetired => FlowError::Departed(reject.to_string()),
        other => FlowError::Internal(format!("engine refused a hold with {other:?}")),
    }
}

/// Give holds back to the engine. Errors are logged: the engine expires them at their TTL.
pub(crate) async fn release_holds(flow: &Flow, holds: &[(u64, RunId)]) {
    for (hold, run) in holds {
        match flow.engine.release(*hold, run.clone()).await {
            Ok(Reply::Released) | Ok(Reply::Rejected(Reject::UnknownHold | Reject::RunRetired)) => {}
            Ok(other) => tracing::error!(hold, ?other, "releasing a dead order's hold"),
            Err(e) => tracing::warn!(hold, error = %e, "releasing a hold failed; it expires at its TTL"),
        }
    }
}

/// Release a dead order's seats and remember that it was done.
pub async fn release_seats(flow: &Flow, order: &OrderRecord) -> Result<()> {
    assert!(order.status.is_dead(), "only a cancelled or expired order gives its seats back");
    // A wish's order has no seats (and no hold) until it is fulfilled.
    release_holds(flow, &holds_of(&legs_of(order)?)?).await;
    flow.store.mark_seats_released(&order.order_no).await?;
    flow.issuer.seats_back.notify_one();
    metrics::counter!("chepiao_orders_released_total").increment(1);
    Ok(())
}

/// The caller's order, or 404 (another user's order is not admitted to exist).
pub async fn own_order(flow: &Flow, user_id: i64, order_no: &str) -> Result<OrderRecord> {
    match flow.store.order(order_no).await? {
        Some(o) if o.user_id == user_id => Ok(o),
        _ => Err(FlowError::UnknownOrder(format!("no order {order_no}"))),
    }
}

pub async fn cancel(flow: &Flow, user_id: i64, order_no: &str) -> Result<OrderRecord> {
    let order = own_order(flow, user_id, order_no).await?;
    match order.status {
        OrderStatus::Cancelled => return Ok(order),
        OrderStatus::PendingPayment => {}
        s => return Err(FlowError::NotCancellable(format!("order {order_no} is {s}"))),
    }
    let t = Transition::of(&order, OrderStatus::Cancelled, flow.now_ms());
    let Some(cancelled) = flow.store.transition_order(&t).await? else {
        // Paid, expired or cancelled meanwhile: report what it is now.
        let now = own_order(flow, user_id, order_no).await?;
        return match now.status {
            OrderStatus::Cancelled => Ok(now),
            s => Err(FlowError::NotCancellable(format!("order {order_no} is {s}"))),
        };
    };
    if let Err(e) = release_seats(flow, &cancelled).await {
        tracing::warn!(order_no, error = %e, "cancel: seats not yet released; the sweeper retries");
    }
    Ok(cancelled)
}

/// Start paying an order through `channel`.
pub async fn start_payment(
    flow: &Flow,
    user_id: i64,
    order_no: &str,
    channel: &str,
    base_url: &str,
) -> Result<(PaymentRecord, String)> {
    let ch = flow.channels.get(channel).ok_or_else(|| FlowError::UnknownChannel(format!("no channel {channel:?}")))?;
    let order = own_order(flow, user_id, order_no).await?;
    let now = flow.now_ms();
    if order.status != OrderStatus::PendingPayment || order.pay_before_ms <= now {
        return Err(FlowError::NotPayable(format!("order {order_no} is {}", order.status)));
    }
    let p = NewPayment {
        payment_no: new_number('P', flow.now_ms()),
        order_no: order.order_no.clone(),
        channel: ch.name().to_string(),
        amount_fen: order.amount_fen,
        created_at_ms: now,
    };
    flow.batchers.payments.submit(p.clone()).await?;
    let record = PaymentRecord {
        payment_no: p.payment_no,
        order_no: p.order_no,
        channel: p.channel,
        amount_fen: p.amount_fen,
        status: chepiao_store::PaymentStatus::Created,
        txn_id: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let url = ch.pay_url(base_url, &record);
    Ok((record, url))
}

/// Expire unpaid orders and give their seats back; also finish releases a crash interrupted.
pub async fn sweep_forever(flow: Arc<Flow>, interval: Duration) {
    let mut round: u64 = 0;
    loop {
        if round.is_multiple_of(20) {
            match flow.store.unreleased_orders(SWEEP_BATCH_MAX).await {
                Ok(orders) => {
                    for o in orders {
                        let _ = release_seats(&flow, &o).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "sweeper: reading unreleased orders failed"),
            }
        }
        match flow.store.expire_orders(flow.now_ms(), SWEEP_BATCH_MAX).await {
            Ok(expired) => {
                metrics::counter!("chepiao_orders_expired_total").increment(expired.len() as u64);
                for o in &expired {
                    let _ = release_seats(&flow, o).await;
                }
                if expired.len() as u32 == SWEEP_BATCH_MAX {
                    continue; // more are due: no sleep
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeper: expiring orders failed"),
        }
        round += 1;
        tokio::time::sleep(interval).await;
    }
}
