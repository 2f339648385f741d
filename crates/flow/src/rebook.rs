//! Rebooking (改签): trade an issued ticket for a seat on another run or in another class.
//!
//! The new seat is held first, as a new order that says which ticket it replaces; if the hold
//! fails, nothing has changed. A dearer fare makes that order cost the difference, paid like
//! any order; a fare no dearer makes it cost nothing, and it is settled at once. The swap
//! itself happens when the issuer tickets the new order: one transaction moves the old ticket
//! to REBOOKED, revokes it and queues its seat (and any fare difference) to go back. If the old
//! ticket was checked in or refunded meanwhile, the new order is refunded instead, so a
//! passenger never holds two valid tickets for one trip, nor pays for none.
//!
//! A ticket is rebooked at most once (as on 12306; `rules.one_rebook_per_ticket`): a ticket a
//! rebook issued is refused. The payments behind the replaced ticket (all of them, however it
//! was bought) are recorded on the new order when it is placed, so a later refund finds them
//! without following a chain.

use chepiao_api::orders::LegBody;
use chepiao_api::tickets::RebookRequest;
use chepiao_store::{OrderKind, OrderStatus, TicketStatus};
use sha2::{Digest, Sha256};

use crate::context::Flow;
use crate::error::{FlowError, Result};
use crate::orders::{IDEMPOTENCY_KEY_LEN_MAX, Placed, Placement, Replacing, place_legs};
use crate::refunds::{own_ticket, ticket_order};
use crate::stored::{departs_at_s, funding_payments, legs_of};

pub async fn rebook(flow: &Flow, user_id: i64, ticket_sn: &str, req: &RebookRequest, source: &str) -> Result<Placed> {
    let ticket = own_ticket(flow, user_id, ticket_sn).await?;
    if ticket.status != TicketStatus::Issued {
        return Err(FlowError::NotRebookable(format!("ticket {ticket_sn} is {}", ticket.status)));
    }
    let order = ticket_order(flow, &ticket).await?;
    if flow.config.rules.one_rebook_per_ticket
        && legs_of(&order)?.get(ticket.leg as usize).is_some_and(|l| l.replaces.is_some())
    {
        return Err(FlowError::RebookedOnce(format!(
            "ticket {ticket_sn} was issued by a rebook; a ticket is rebooked once"
        )));
    }
    if departs_at_s(&order, &ticket)? <= flow.now_ms() / 1000 {
        return Err(FlowError::Departed(format!("{ticket_sn}: the train has left; it cannot be rebooked")));
    }
    if let Some(k) = &req.idempotency_key
        && !(1..=IDEMPOTENCY_KEY_LEN_MAX).contains(&k.len())
    {
        return Err(FlowError::BadParameter(format!("`idempotency_key`: 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters")));
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
    // Every payment behind the old ticket (its own order's, and those it recorded if it came from
    // a rebook itself): a refund of the new ticket finds them all here, with no chain to follow.
    let funding = funding_payments(flow.store.as_ref(), &order).await?.into_iter().map(|p| p.payment_no).collect();
    let replacing = Replacing {
        ticket_sn: ticket_sn.to_string(),
        order_no: order.order_no.clone(),
        price_fen: ticket.price_fen,
        funding,
    };
    let how = Placement { kind: OrderKind::Rebook, source, replacing: Some(&replacing) };
    let mut placed = place_legs(flow, user_id, &idem_key, request_hash, &[body], &how).await?;
    if placed.order.amount_fen == 0 && placed.order.status == OrderStatus::PendingPayment {
        // Nothing to pay: settle it now (a retry of a crashed call settles it here too).
        if flow.store.settle_free_order(&placed.order.order_no, flow.now_ms()).await? {
            flow.relay.wake();
        }
        if let Some(now) = flow.store.order(&placed.order.order_no).await? {
            placed.order = now;
        }
    }
    metrics::counter!("chepiao_rebooks_total").increment(u64::from(placed.created));
    Ok(placed)
}
