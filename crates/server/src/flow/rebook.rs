//! Rebooking (改签): trade an issued ticket for a seat on another run or in another class.
//!
//! The new seat is held first, as a new order that says which ticket it replaces; if the hold
//! fails, nothing has changed. A dearer fare makes that order cost the difference, paid like
//! any order; a fare no dearer makes it cost nothing, and it is settled at once. The swap
//! itself happens when the issuer tickets the new order: one transaction moves the old ticket
//! to REBOOKED, revokes it and queues its seat (and any fare difference) to go back. If the old
//! ticket was checked in or refunded meanwhile, the new order is refunded instead, so a
//! passenger never holds two valid tickets for one trip, nor pays for none.

use chepiao_domain::SeatClass;
use chepiao_store::{OrderStatus, TicketStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::flow::orders::{IDEMPOTENCY_KEY_LEN_MAX, LegBody, Placed, Replacing, now_ms, place_legs};
use crate::flow::refunds::departs_at_s;

/// `POST /api/v1/tickets/{ticket_sn}/rebook`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebookRequest {
    /// The run to travel on instead, between the same stations.
    pub run_id: String,
    #[schema(value_type = String, example = "SECOND")]
    pub class: SeatClass,
    /// One wanted seat letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_prefs: Option<Vec<String>>,
    /// Optional: the same body retried finds the same order; a new key asks again (e.g. after
    /// the first rebook order expired unpaid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

pub async fn rebook(state: &AppState, user_id: i64, ticket_sn: &str, req: &RebookRequest) -> Result<Placed, ApiError> {
    let ticket = match state.store.ticket(ticket_sn).await? {
        Some(t) if t.user_id == user_id => t,
        _ => return Err(ApiError::unknown_ticket(format!("no ticket {ticket_sn}"))),
    };
    if ticket.status != TicketStatus::Issued {
        return Err(ApiError::not_rebookable(format!("ticket {ticket_sn} is {}", ticket.status)));
    }
    let order = state.store.order(&ticket.order_no).await?.ok_or_else(|| ApiError::internal("ticket without order"))?;
    if departs_at_s(&order, &ticket)? <= now_ms() / 1000 {
        return Err(ApiError::departed(format!("{ticket_sn}: the train has left; it cannot be rebooked")));
    }
    if let Some(k) = &req.idempotency_key
        && !(1..=IDEMPOTENCY_KEY_LEN_MAX).contains(&k.len())
    {
        return Err(ApiError::bad_parameter(format!("`idempotency_key`: 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters")));
    }
    let body = LegBody {
        run_id: req.run_id.clone(),
        from: ticket.from_station.clone(),
        to: ticket.to_station.clone(),
        class: req.class,
        passenger_ids: vec![ticket.passenger_id],
        seat_prefs: req.seat_prefs.clone(),
    };
    let mut h = Sha256::new();
    h.update(ticket_sn.as_bytes());
    h.update(serde_json::to_vec(req).expect("a request serialises"));
    let request_hash = h.finalize().to_vec();
    let hex: String = request_hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let idem_key = format!("rebook:{ticket_sn}:{hex}");
    let replacing = Replacing { ticket_sn: ticket_sn.to_string(), price_fen: ticket.price_fen };
    let mut placed = place_legs(state, user_id, &idem_key, request_hash, &[body], Some(&replacing)).await?;
    if placed.order.amount_fen == 0 && placed.order.status == OrderStatus::PendingPayment {
        // Nothing to pay: settle it now (a retry of a crashed call settles it here too).
        if state.store.settle_free_order(&placed.order.order_no, now_ms()).await? {
            state.relay.wake();
        }
        if let Some(now) = state.store.order(&placed.order.order_no).await? {
            placed.order = now;
        }
    }
    metrics::counter!("chepiao_rebooks_total").increment(u64::from(placed.created));
    Ok(placed)
}
