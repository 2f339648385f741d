//! The waitlist (候补): a prepaid wish for seats on a sold-out run, fulfilled when seats come
//! back (a refund, an expired or cancelled order, a rebook).
//!
//! A wish is recorded with an order that carries its money: PENDING_PAYMENT with no seats, paid
//! through the ordinary payment flow (`/waitlist/{id}/payments` pays that order). Paid, the
//! wish WAITS. The matcher wakes whenever seats go back on sale (the issuer and the expiry
//! sweeper signal it) and at least every `WISH_POLL`. It walks the waiting wishes in the order
//! they joined; for each whose run still has enough places for the segment, it holds the seats
//! in the engine for all its passengers or none, then one transaction marks the wish
//! FULFILLED, gives its order the seats, queues the ticketing event and a notification. The
//! order is then ticketed like any other.
//!
//! Order of joining decides who is tried first; a wish whose segment does not fit is passed
//! over, so a later wish for a shorter segment (or fewer passengers) can be served first.
//! A wish still waiting at its deadline is ended and its payment refunded in full; the buyer
//! can cancel it (refunded too) until it is fulfilled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chepiao_api::orders::LegBody;
use chepiao_api::waitlist::WishRequest;
use chepiao_domain::SeatClass;
use chepiao_engine::{Answer, Query};
use chepiao_store::{
    CreateWish, EndWish, Fulfil, NewOrder, NewWish, OrderKind, OrderRecord, OrderStatus, WishRecord, WishStatus,
};
use sha2::{Digest, Sha256};

use crate::context::Flow;
use crate::error::{FlowError, Result};
use crate::orders::{
    IDEMPOTENCY_KEY_LEN_MAX, PASSENGERS_PER_LEG_MAX, ResolvedLeg, release_holds, resolve_leg, seated_legs,
};
use crate::rules;
use crate::stored::{engine_key, holds_of, new_number, order_lines};

/// How often the matcher looks even when nothing signalled it (deadlines, missed signals).
pub const WISH_POLL: Duration = Duration::from_secs(1);

/// A wish as the API shows it.
pub struct WishView {
    pub wish: WishRecord,
    pub order: OrderRecord,
}

impl WishView {
    /// API.md's status: an active wish is PENDING_PAYMENT or WAITING by its order.
    pub fn status(&self) -> &'static str {
        match (self.wish.status, self.order.status) {
            (WishStatus::Active, OrderStatus::PendingPayment) => "PENDING_PAYMENT",
            (WishStatus::Active, OrderStatus::Expired) => "EXPIRED",
            (WishStatus::Active, OrderStatus::Cancelled) => "CANCELLED",
            (WishStatus::Active, _) => "WAITING",
            (s, _) => s.as_str(),
        }
    }
}

fn leg_body(w: &WishRecord) -> Result<LegBody> {
    Ok(LegBody {
        run_id: w.run_id.clone(),
        from: w.from_station.clone(),
        to: w.to_station.clone(),
        class: w.class.parse::<SeatClass>().map_err(|_| FlowError::Internal(format!("wish class {:?}", w.class)))?,
        passenger_ids: w.passenger_ids.clone(),
        seat_prefs: None,
    })
}

/// The wish's deadline, ms: at least `wish_deadline_min_s` away, and not after the departure.
fn wish_deadline(flow: &Flow, deadline: &str, resolved: &ResolvedLeg) -> Result<i64> {
    let deadline = chrono::DateTime::parse_from_rfc3339(deadline)
        .map_err(|e| FlowError::BadParameter(format!("`deadline`: not an RFC 3339 time: {e}")))?
        .timestamp_millis();
    let departs_ms = chrono::DateTime::parse_from_rfc3339(&resolved.stored.departs_at)
        .map_err(|e| FlowError::Internal(format!("departure unreadable: {e}")))?
        .timestamp_millis();
    let min_s = flow.config.wish_deadline_min_s;
    if deadline < flow.now_ms() + min_s as i64 * 1000 || deadline > departs_ms {
        return Err(FlowError::BadParameter(format!(
            "`deadline`: from {min_s} s from now to the departure at {}",
            resolved.stored.departs_at
        )));
    }
    Ok(deadline)
}

fn check_wish(req: &WishRequest) -> Result<()> {
    if let Some(k) = &req.idempotency_key
        && !(1..=IDEMPOTENCY_KEY_LEN_MAX).contains(&k.len())
    {
        return Err(FlowError::BadParameter(format!("`idempotency_key`: 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters")));
    }
    if req.passenger_ids.len() > PASSENGERS_PER_LEG_MAX {
        return Err(FlowError::BadParameter(format!("`passenger_ids`: 1 to {PASSENGERS_PER_LEG_MAX} passengers")));
    }
    Ok(())
}

/// Join the waitlist: the wish and its unpaid order.
pub async fn join(flow: &Flow, user_id: i64, req: &WishRequest, source: &str) -> Result<(WishView, bool)> {
    check_wish(req)?;
    let body = LegBody {
        run_id: req.run_id.clone(),
        from: req.from.clone(),
        to: req.to.clone(),
        class: req.class,
        passenger_ids: req.passenger_ids.clone(),
        seat_prefs: None,
    };
    let own = flow.passengers.of(flow.store.as_ref(), user_id, &req.passenger_ids).await?;
    let resolved = resolve_leg(flow, None, &body, &own.ids)?;
    let deadline = wish_deadline(flow, &req.deadline, &resolved)?;
    let now = flow.now_ms();
    let request_hash = Sha256::digest(serde_json::to_vec(req).expect("a request serialises")).to_vec();
    let key_part = req.idempotency_key.clone().unwrap_or_else(|| new_number('W', now));
    let trips = rules::trips_of(
        std::slice::from_ref(&resolved.stored),
        std::slice::from_ref(&req.passenger_ids),
        &own.persons,
    )?;
    let _user = flow.user_locks.lock(user_id).await;
    rules::check(flow, user_id, &format!("wish:{key_part}"), OrderKind::Wish, &trips, None).await?;
    let amount_fen = resolved.price_fen * req.passenger_ids.len() as i64;
    let order = NewOrder {
        order_no: new_number('E', now),
        user_id,
        idem_key: format!("wish:{key_part}"),
        request_hash: request_hash.clone(),
        amount_fen,
        pay_before_ms: now + flow.config.pay_window_s as i64 * 1000,
        created_at_ms: now,
        legs_json: serde_json::to_string(&[&resolved.stored]).expect("legs serialise"),
        holds: Vec::new(),
        kind: OrderKind::Wish,
        source: source.to_string(),
        trips,
        lines: order_lines(std::slice::from_ref(&resolved.stored), &[req.passenger_ids.len()], amount_fen, now),
    };
    let wish = NewWish {
        wish_id: new_number('W', now),
        user_id,
        run_id: resolved.stored.run_id.clone(),
        class: req.class.as_str().to_string(),
        from_station: req.from.clone(),
        to_station: req.to.clone(),
        passenger_ids: req.passenger_ids.clone(),
        deadline_ms: deadline,
        created_at_ms: now,
    };
    let (wish, created) = match flow.store.create_wish(&wish, &order).await? {
        CreateWish::Created(w) => (w, true),
        CreateWish::Existing(w) => (w, false),
        CreateWish::KeyTaken(o) => {
            return Err(FlowError::KeyReused(format!("key belongs to order {}", o.order_no)));
        }
    };
    let view = view_of(flow, wish).await?;
    if view.order.request_hash != request_hash {
        return Err(FlowError::KeyReused("that idempotency key made another wish".into()));
    }
    metrics::counter!("chepiao_wishes_total", "result" => if created { "created" } else { "replayed" }).increment(1);
    Ok((view, created))
}

async fn view_of(flow: &Flow, wish: WishRecord) -> Result<WishView> {
    let order =
        flow.store.order(&wish.order_no).await?.ok_or_else(|| FlowError::Internal("wish without order".into()))?;
    Ok(WishView { wish, order })
}

/// The caller's wish, or 404.
pub async fn own_wish(flow: &Flow, user_id: i64, wish_id: &str) -> Result<WishView> {
    match flow.store.wish(wish_id).await? {
        Some(w) if w.user_id == user_id => view_of(flow, w).await,
        _ => Err(FlowError::UnknownWish(format!("no wish {wish_id}"))),
    }
}

/// Cancel a wish that is not fulfilled; a paid one is refunded in full. Twice answers the same.
pub async fn cancel(flow: &Flow, user_id: i64, wish_id: &str) -> Result<WishView> {
    let view = own_wish(flow, user_id, wish_id).await?;
    match flow.store.end_wish(wish_id, WishStatus::Cancelled, flow.now_ms()).await? {
        EndWish::Ended(w) => {
            flow.relay.wake();
            view_of(flow, w).await.map(|mut v| {
                v.wish.status = WishStatus::Cancelled;
                v
            })
        }
        EndWish::NotActive(w) if w.status == WishStatus::Cancelled => view_of(flow, w).await,
        EndWish::NotActive(w) => Err(FlowError::WishNotCancellable(format!(
            "wish {wish_id} is {}",
            WishView { wish: w, order: view.order }.status()
        ))),
        EndWish::Unknown => Err(FlowError::UnknownWish(format!("no wish {wish_id}"))),
    }
}

/// End wishes past their deadline, then try to fulfil the waiting ones; forever.
pub async fn match_forever(flow: Arc<Flow>) {
    loop {
        tokio::select! {
            _ = flow.issuer.seats_back.notified() => {}
            _ = tokio::time::sleep(WISH_POLL) => {}
        }
        match flow.store.expire_wishes(flow.now_ms(), chepiao_store::WISH_BATCH_MAX).await {
            Ok(ended) if !ended.is_empty() => {
                metrics::counter!("chepiao_wishes_expired_total").increment(ended.len() as u64);
                flow.relay.wake();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "waitlist: expiring wishes failed"),
        }
        if let Err(e) = match_round(&flow).await {
            tracing::warn!(error = %e, "waitlist: a matching round failed");
        }
    }
}

/// One pass over the waiting wishes in join order; returns how many were fulfilled.
pub async fn match_round(flow: &Flow) -> Result<usize> {
    let wishes = flow.store.waiting_wishes(chepiao_store::WISH_BATCH_MAX).await?;
    // Places left per (run, from, to, class), asked of the engine once per round and counted
    // down as wishes take them: a hold is tried only where one can succeed.
    let mut left: HashMap<(String, String, String, String), u32> = HashMap::new();
    let mut fulfilled = 0;
    for w in wishes {
        if w.deadline_ms <= flow.now_ms() {
            continue; // the expiry pass ends it
        }
        if flow.config.sale_opens_at.get(&w.run_id).is_some_and(|at| *at > flow.now_ms()) {
            continue; // a sale's run: not before the sale opens
        }
        let body = leg_body(&w)?;
        let own: HashSet<i64> = w.passenger_ids.iter().copied().collect();
        let Ok(resolved) = resolve_leg(flow, None, &body, &own) else { continue };
        let slot = (w.run_id.clone(), w.from_station.clone(), w.to_station.clone(), w.class.clone());
        let places = match left.get(&slot) {
            Some(n) => *n,
            None => {
                let q = Query::Remaining {
                    run: resolved.engine.run.clone(),
                    spec: resolved.engine.spec,
                    from: resolved.engine.from,
                    to: resolved.engine.to,
                };
                let n = match flow.engine.query(vec![q]).await?.pop() {
                    Some(Answer::Remaining(by_class)) => {
                        by_class.iter().find(|(c, _)| *c == body.class).map_or(0, |(_, n)| *n)
                    }
                    _ => 0,
                };
                *left.entry(slot.clone()).or_insert(n)
            }
        };
        if (places as usize) < w.passenger_ids.len() {
            continue;
        }
        if try_fulfil(flow, &w, resolved, &body).await? {
            fulfilled += 1;
            *left.get_mut(&slot).expect("counted above") -= w.passenger_ids.len() as u32;
        }
    }
    Ok(fulfilled)
}

async fn try_fulfil(flow: &Flow, w: &WishRecord, resolved: ResolvedLeg, body: &LegBody) -> Result<bool> {
    // A new key per attempt: the engine remembers refusals under a key, and a wish is retried.
    let key = engine_key(&[b"wish", w.wish_id.as_bytes(), &flow.now_ms().to_le_bytes()]);
    let Ok(outcome) = flow.engine.hold(key, vec![resolved.engine.clone()], flow.config.hold_ttl_ms()).await? else {
        return Ok(false); // all passengers or none: not yet
    };
    let (legs, _) = seated_legs(vec![resolved], &outcome, std::slice::from_ref(body));
    let holds = holds_of(&legs)?;
    let legs_json = serde_json::to_string(&legs).expect("legs serialise");
    let hold_ids = holds.iter().map(|(h, _)| *h as i64).collect();
    let fulfil = Fulfil { wish_id: w.wish_id.clone(), legs_json, holds: hold_ids, now_ms: flow.now_ms() };
    match flow.store.fulfil_wish(&fulfil).await {
        Ok(true) => {
            metrics::counter!("chepiao_wishes_fulfilled_total").increment(1);
            flow.relay.wake();
            Ok(true)
        }
        Ok(false) => {
            // Cancelled or expired meanwhile: the seats go back.
            release_holds(flow, &holds).await;
            Ok(false)
        }
        // Committed or not, the error cannot say: reconciliation releases the holds if no
        // order carries them (see `orders::place_legs`).
        Err(e) => Err(e.into()),
    }
}
