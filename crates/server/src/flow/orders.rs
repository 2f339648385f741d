//! Orders: an order *is* a seat hold with a pay window (as on 12306).
//!
//! Creating one holds every leg's seats in the engine (all or none), then records the order.
//! Retries are safe twice over: the engine's hold is idempotent on a key derived from (user,
//! idempotency key), and the store keeps one order per (user, key). A crash between the two
//! steps leaves a hold with no order, which the engine expires at its TTL; a retry before then
//! finds the same hold and records the order.
//!
//! Seats go back exactly once: only the transition to CANCELLED or EXPIRED (one SQL update that
//! checks status and version) may release them; the order then carries `seats_released = 0`
//! until the engine has released every hold, and a sweeper retries any it finds after a crash.
//! The engine keeps a hold `hold_grace_s` longer than the pay window, so a payment captured at
//! the last moment still finds its seats to confirm.

use std::collections::HashSet;
use std::time::Duration;

use chepiao_domain::{RunId, SeatClass, Telecode};
use chepiao_engine::{IdemKey, LegRequest, Reject, Reply};
use chepiao_store::{CreateOrder, NewOrder, NewPayment, OrderRecord, OrderStatus, PaymentRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::inventory::run_spec;

pub const LEGS_PER_ORDER_MAX: usize = 4;
pub const PASSENGERS_PER_LEG_MAX: usize = 5;
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 64;
/// Orders the expiry sweeper handles per round.
const SWEEP_BATCH_MAX: u32 = 512;

/// `POST /api/v1/orders`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The client's key for this purchase (1-64 printable ASCII); a retry sends it again.
    pub idempotency_key: String,
    pub legs: Vec<LegBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegBody {
    /// e.g. `G1-20261122`
    pub run_id: String,
    /// Boarding station telecode.
    pub from: String,
    /// Alighting station telecode.
    pub to: String,
    #[schema(value_type = String, example = "SECOND")]
    pub class: SeatClass,
    pub passenger_ids: Vec<i64>,
    /// Wanted seat letters (`A`, `F`, ...), at most one per passenger; honoured when possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_prefs: Option<Vec<String>>,
}

/// A leg as the order keeps it (`legs_json`): enough to render it, release it and ticket it
/// without looking anything up again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLeg {
    pub run_id: String,
    pub train_code: String,
    pub from: String,
    pub to: String,
    pub from_stop: u8,
    pub to_stop: u8,
    pub class: SeatClass,
    pub departs_at: String,
    pub arrives_at: String,
    /// The engine hold that carries this leg (several legs may share one).
    pub hold: u64,
    /// This leg's index within its hold.
    pub hold_leg: u8,
    /// Empty while the order is a wish waiting for seats.
    pub seats: Vec<StoredSeat>,
    /// The ticket this leg replaces (a rebook's order): swapped when the order is ticketed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeat {
    pub passenger_id: i64,
    pub seat_index: u16,
    pub coach: u8,
    pub seat: String,
    pub price_fen: i64,
}

pub fn legs_of(order: &OrderRecord) -> Result<Vec<StoredLeg>, ApiError> {
    serde_json::from_str(&order.legs_json)
        .map_err(|e| ApiError::internal(format!("order {}: stored legs unreadable: {e}", order.order_no)))
}

/// An engine idempotency key from its parts.
pub fn engine_key(parts: &[&[u8]]) -> IdemKey {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    u128::from_le_bytes(h.finalize()[..16].try_into().expect("16 bytes"))
}

/// A fresh order or payment number: a letter and 64 random bits in hex.
pub fn new_number(prefix: char) -> String {
    let id = uuid::Uuid::new_v4().as_u64_pair().0;
    format!("{prefix}{id:016X}")
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn check_key(key: &str) -> Result<(), ApiError> {
    let ok = (1..=IDEMPOTENCY_KEY_LEN_MAX).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(format!(
            "`idempotency_key` must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters"
        )))
    }
}

/// Which passenger ids each user has, kept in memory so that placing an order reads nothing
/// from the database. Passengers are only ever added, so a cached set is a subset of the truth:
/// ids all found in it are the user's for sure; any id missing sends us to the store (which
/// also picks up passengers added since, on this node or another).
pub struct PassengerCache {
    users: std::sync::Mutex<std::collections::HashMap<i64, std::sync::Arc<HashSet<i64>>>>,
}

/// Users whose passenger ids are cached; the cache starts over when it is full.
pub const PASSENGER_CACHE_USERS_MAX: usize = 1_000_000;

impl Default for PassengerCache {
    fn default() -> Self {
        PassengerCache { users: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

impl PassengerCache {
    /// The user's passenger ids, complete enough to contain `wanted` if they are the user's.
    pub async fn of(
        &self,
        state: &AppState,
        user_id: i64,
        wanted: &[i64],
    ) -> Result<std::sync::Arc<HashSet<i64>>, ApiError> {
        let cached = self.users.lock().expect("never poisoned").get(&user_id).cloned();
        if let Some(ids) = cached.filter(|ids| wanted.iter().all(|p| ids.contains(p))) {
            return Ok(ids);
        }
        let ids: std::sync::Arc<HashSet<i64>> =
            std::sync::Arc::new(state.store.passengers(user_id).await?.iter().map(|p| p.id).collect());
        let mut users = self.users.lock().expect("never poisoned");
        if users.len() >= PASSENGER_CACHE_USERS_MAX {
            users.clear();
        }
        users.insert(user_id, ids.clone());
        Ok(ids)
    }
}

/// One leg checked against the network, the calendar and the caller's passengers.
pub(crate) struct ResolvedLeg {
    pub engine: LegRequest,
    pub stored: StoredLeg,
    /// Per passenger.
    pub price_fen: i64,
}

pub(crate) fn resolve_leg(
    state: &AppState,
    i: usize,
    leg: &LegBody,
    own: &HashSet<i64>,
) -> Result<ResolvedLeg, ApiError> {
    let field = |name: &str| format!("legs[{i}].{name}");
    let bad = |name: &str, msg: String| ApiError::bad_parameter(format!("`{}`: {msg}", field(name)));
    let run: RunId = leg.run_id.parse().map_err(|e| bad("run_id", format!("{e}")))?;
    let train_idx = state
        .network
        .train_idx(&run.train)
        .filter(|t| state.calendar().runs(*t, run.date))
        .ok_or_else(|| ApiError::unknown_run(format!("`{}`: no run {run}", field("run_id"))))?;
    let train = state.network.train(train_idx);
    let stop = |name: &str, code: &str| -> Result<usize, ApiError> {
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
    let n = leg.passenger_ids.len();
    if !(1..=PASSENGERS_PER_LEG_MAX).contains(&n) {
        return Err(bad("passenger_ids", format!("1 to {PASSENGERS_PER_LEG_MAX} passengers")));
    }
    let distinct: HashSet<i64> = leg.passenger_ids.iter().copied().collect();
    if distinct.len() != n {
        return Err(bad("passenger_ids", "a passenger is listed twice".into()));
    }
    if let Some(p) = leg.passenger_ids.iter().find(|p| !own.contains(p)) {
        return Err(ApiError::not_found(format!(
            "`{}`: no passenger {p} on the caller's list",
            field("passenger_ids")
        )));
    }
    let prefs = prefs(leg, n).map_err(|m| bad("seat_prefs", m))?;
    let depart_min =
        train.stops[from].depart_min.ok_or_else(|| bad("from", "the train does not depart there".into()))?;
    let arrive_min = train.stops[to].arrive_min.ok_or_else(|| bad("to", "the train does not arrive there".into()))?;
    let departs_at = run.date.at_minutes(depart_min);
    if departs_at.timestamp_millis() <= now_ms() {
        return Err(ApiError::departed(format!("{} left {} at {departs_at}", train.code, leg.from)));
    }
    if !state.calendar().on_sale(run.date.add_days(i64::from(depart_min / 1440))) {
        return Err(ApiError::outside_sale_window(format!("{run} boarding at {departs_at} is not on sale")));
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
    };
    Ok(ResolvedLeg { engine, stored, price_fen: price.0 })
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

/// Hold the seats and record the order (see the module doc).
pub async fn place(state: &AppState, user_id: i64, req: &OrderRequest) -> Result<Placed, ApiError> {
    check_key(&req.idempotency_key)?;
    if !(1..=LEGS_PER_ORDER_MAX).contains(&req.legs.len()) {
        return Err(ApiError::bad_parameter(format!("`legs`: 1 to {LEGS_PER_ORDER_MAX} legs")));
    }
    let request_hash = Sha256::digest(serde_json::to_vec(&req.legs).expect("legs serialise")).to_vec();
    place_legs(state, user_id, &req.idempotency_key, request_hash, &req.legs, None).await
}

/// The ticket a rebook's order replaces, and what was paid for it.
pub struct Replacing {
    pub ticket_sn: String,
    pub price_fen: i64,
}

/// Hold `bodies`' seats and record them as the user's order under `idem_key`. A rebook's order
/// (`replacing`) charges only what its fare exceeds the old ticket's.
pub(crate) async fn place_legs(
    state: &AppState,
    user_id: i64,
    idem_key: &str,
    request_hash: Vec<u8>,
    bodies: &[LegBody],
    replacing: Option<&Replacing>,
) -> Result<Placed, ApiError> {
    // No read of the order table first: a replay gets the same hold from the engine (its
    // holds are idempotent) and then finds the existing order when it tries to record it.
    let wanted: Vec<i64> = bodies.iter().flat_map(|l| l.passenger_ids.iter().copied()).collect();
    let own = state.passengers.of(state, user_id, &wanted).await?;
    let resolved =
        bodies.iter().enumerate().map(|(i, l)| resolve_leg(state, i, l, &own)).collect::<Result<Vec<_>, _>>()?;
    let key = engine_key(&[b"order", &user_id.to_le_bytes(), idem_key.as_bytes()]);
    let ttl_ms = (state.config.pay_window_s + state.config.hold_grace_s) * 1000;
    let engine_legs = resolved.iter().map(|r| r.engine.clone()).collect();
    let outcome = match state.engine.hold(key, engine_legs, ttl_ms).await? {
        Ok(outcome) => outcome,
        Err(reject) => return Err(refusal(reject)),
    };
    let (mut legs, mut amount_fen) = seated_legs(resolved, &outcome, bodies);
    if let Some(r) = replacing {
        legs[0].replaces = Some(r.ticket_sn.clone());
        amount_fen = (amount_fen - r.price_fen).max(0);
    }
    let now = now_ms();
    let order = NewOrder {
        order_no: new_number('E'),
        user_id,
        idem_key: idem_key.to_string(),
        request_hash: request_hash.clone(),
        amount_fen,
        pay_before_ms: now + state.config.pay_window_s as i64 * 1000,
        created_at_ms: now,
        legs_json: serde_json::to_string(&legs).expect("legs serialise"),
    };
    let holds: Vec<u64> = legs.iter().map(|l| l.hold).collect();
    match state.order_batcher.submit(order).await {
        Ok(CreateOrder::Created(order)) => Ok(Placed { order, created: true }),
        Ok(CreateOrder::Existing(existing)) => {
            // A concurrent retry recorded first. The engine gave it the same hold unless its
            // idempotency memory had moved on; then this call's hold is surplus.
            let theirs: Vec<u64> = legs_of(&existing)?.iter().map(|l| l.hold).collect();
            if theirs != holds {
                release_holds(state, &holds).await;
            }
            replay(existing, &request_hash)
        }
        Err(e) => {
            release_holds(state, &holds).await;
            Err(e)
        }
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

fn replay(existing: OrderRecord, request_hash: &[u8]) -> Result<Placed, ApiError> {
    if existing.request_hash != request_hash {
        return Err(ApiError::idempotency_key_reused(format!(
            "idempotency key {:?} belongs to order {} with other legs",
            existing.idem_key, existing.order_no
        )));
    }
    Ok(Placed { order: existing, created: false })
}

pub(crate) fn refusal(reject: Reject) -> ApiError {
    match reject {
        Reject::NotEnoughSeats { leg } => ApiError::sold_out(format!("legs[{leg}]: not enough seats")),
        Reject::StandingNotOnSale { leg } => ApiError::sold_out(format!("legs[{leg}]: {reject}")),
        Reject::KeyReused => ApiError::idempotency_key_reused(reject.to_string()),
        Reject::Limit(m) => ApiError::busy(m),
        Reject::Invalid(m) => ApiError::bad_parameter(m),
        other => ApiError::internal(format!("engine refused a hold with {other:?}")),
    }
}

/// Give holds back to the engine. Errors are logged: the engine expires them at their TTL.
pub(crate) async fn release_holds(state: &AppState, holds: &[u64]) {
    let mut holds = holds.to_vec();
    holds.sort_unstable();
    holds.dedup();
    for hold in holds {
        let key = engine_key(&[b"release", &hold.to_le_bytes()]);
        match state.engine.release(key, hold).await {
            Ok(Reply::Released)
            | Ok(Reply::Rejected(Reject::HoldExpired | Reject::HoldReleased | Reject::UnknownHold)) => {}
            Ok(other) => tracing::error!(hold, ?other, "releasing a dead order's hold"),
            Err(e) => tracing::warn!(hold, error = %e, "releasing a hold failed; it expires at its TTL"),
        }
    }
}

/// Release a dead order's seats and remember that it was done.
pub async fn release_seats(state: &AppState, order: &OrderRecord) -> Result<(), ApiError> {
    assert!(order.status.is_dead(), "only a cancelled or expired order gives its seats back");
    // A wish's order has no seats (and no hold) until it is fulfilled.
    let holds: Vec<u64> = legs_of(order)?.iter().filter(|l| !l.seats.is_empty()).map(|l| l.hold).collect();
    release_holds(state, &holds).await;
    state.store.mark_seats_released(&order.order_no).await?;
    state.issuer.seats_back.notify_one();
    metrics::counter!("chepiao_orders_released_total").increment(1);
    Ok(())
}

/// The caller's order, or 404 (another user's order is not admitted to exist).
pub async fn own_order(state: &AppState, user_id: i64, order_no: &str) -> Result<OrderRecord, ApiError> {
    match state.store.order(order_no).await? {
        Some(o) if o.user_id == user_id => Ok(o),
        _ => Err(ApiError::unknown_order(format!("no order {order_no}"))),
    }
}

pub async fn cancel(state: &AppState, user_id: i64, order_no: &str) -> Result<OrderRecord, ApiError> {
    let order = own_order(state, user_id, order_no).await?;
    match order.status {
        OrderStatus::Cancelled => return Ok(order),
        OrderStatus::PendingPayment => {}
        s => return Err(ApiError::order_not_cancellable(format!("order {order_no} is {s}"))),
    }
    let Some(cancelled) = state.store.transition_order(&order, OrderStatus::Cancelled, now_ms()).await? else {
        // Paid, expired or cancelled meanwhile: report what it is now.
        let now = own_order(state, user_id, order_no).await?;
        return match now.status {
            OrderStatus::Cancelled => Ok(now),
            s => Err(ApiError::order_not_cancellable(format!("order {order_no} is {s}"))),
        };
    };
    if let Err(e) = release_seats(state, &cancelled).await {
        tracing::warn!(order_no, error = %e.message, "cancel: seats not yet released; the sweeper retries");
    }
    Ok(cancelled)
}

/// Start paying an order through `channel`.
pub async fn start_payment(
    state: &AppState,
    user_id: i64,
    order_no: &str,
    channel: &str,
    base_url: &str,
) -> Result<(PaymentRecord, String), ApiError> {
    let ch = state.channels.get(channel).ok_or_else(|| ApiError::unknown_channel(format!("no channel {channel:?}")))?;
    let order = own_order(state, user_id, order_no).await?;
    let now = now_ms();
    if order.status != OrderStatus::PendingPayment || order.pay_before_ms <= now {
        return Err(ApiError::order_not_payable(format!("order {order_no} is {}", order.status)));
    }
    let p = NewPayment {
        payment_no: new_number('P'),
        order_no: order.order_no.clone(),
        channel: ch.name().to_string(),
        amount_fen: order.amount_fen,
        created_at_ms: now,
    };
    state.payment_batcher.submit(p.clone()).await?;
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
pub async fn sweep_forever(state: AppState, interval: Duration) {
    let mut round: u64 = 0;
    loop {
        if round.is_multiple_of(20) {
            match state.store.unreleased_orders(SWEEP_BATCH_MAX).await {
                Ok(orders) => {
                    for o in orders {
                        let _ = release_seats(&state, &o).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "sweeper: reading unreleased orders failed"),
            }
        }
        match state.store.expire_orders(now_ms(), SWEEP_BATCH_MAX).await {
            Ok(expired) => {
                metrics::counter!("chepiao_orders_expired_total").increment(expired.len() as u64);
                for o in &expired {
                    let _ = release_seats(&state, o).await;
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
