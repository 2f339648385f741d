//! Ticket refunds: the fee by time before departure (12306's tiers, configurable), then one
//! transaction that revokes the ticket and queues the seat and the money to go back (the
//! issuer does both when it handles the outbox event; see `Issuer::ticket_refund`).

use chepiao_store::{
    OrderRecord, OrderStatus, PaymentRecord, PaymentStatus, RefundStatus, RefundTicket, Store, TicketRecord,
    TicketRefundRecord,
};

use crate::AppState;
use crate::config::FeeTier;
use crate::error::ApiError;
use crate::flow::orders::{legs_of, new_number, now_ms};

/// The fee for refunding a fare of `price_fen` with `seconds_left` before departure, rounded as
/// 12306 rounds it: to 0.5 yuan (below 0.25 down, from 0.75 up).
pub fn refund_fee(price_fen: i64, seconds_left: i64, tiers: &[FeeTier]) -> i64 {
    let hours_left = seconds_left / 3600;
    let percent = tiers.iter().find(|t| hours_left >= i64::from(t.hours_before)).map_or(100, |t| t.percent);
    let raw = price_fen * i64::from(percent);
    // raw is in hundredths of a fen: round to a multiple of 50 fen = 5,000 hundredths.
    let units = raw / 5_000;
    let rest = raw % 5_000;
    let fee = if rest >= 2_500 { units + 1 } else { units } * 50;
    fee.min(price_fen)
}

/// Refund one of the caller's tickets. A second call answers the first refund again.
pub async fn refund(state: &AppState, user_id: i64, ticket_sn: &str) -> Result<TicketRefundRecord, ApiError> {
    let ticket = match state.store.ticket(ticket_sn).await? {
        Some(t) if t.user_id == user_id => t,
        _ => return Err(ApiError::unknown_ticket(format!("no ticket {ticket_sn}"))),
    };
    let order = state.store.order(&ticket.order_no).await?.ok_or_else(|| ApiError::internal("ticket without order"))?;
    let departs_at = departs_at_s(&order, &ticket)?;
    let left_s = departs_at - now_ms() / 1000;
    if left_s <= 0 {
        return Err(ApiError::departed(format!("{ticket_sn}: the train has left; it cannot be refunded")));
    }
    let payment = funding_payment(state.store.as_ref(), &order).await?;
    let fee_fen = refund_fee(ticket.price_fen, left_s, &state.config.refund_fee_tiers);
    let r = TicketRefundRecord {
        refund_no: new_number('R'),
        ticket_sn: ticket.ticket_sn.clone(),
        order_no: order.order_no.clone(),
        payment_no: payment.payment_no,
        refund_fen: ticket.price_fen - fee_fen,
        fee_fen,
        status: RefundStatus::Pending,
        created_at_ms: now_ms(),
    };
    match state.store.refund_ticket(&r).await? {
        RefundTicket::Started(r) => {
            state.relay.wake();
            Ok(r)
        }
        RefundTicket::Existing(r) => Ok(r),
        RefundTicket::NotRefundable(status) => {
            Err(ApiError::not_refundable(format!("ticket {ticket_sn} is {status}: it cannot be refunded")))
        }
        RefundTicket::Unknown => Err(ApiError::unknown_ticket(format!("no ticket {ticket_sn}"))),
    }
}

/// Rebooks one chain may follow back to the payment that paid for it.
const REBOOK_CHAIN_MAX: usize = 16;

/// The captured payments a ticket's money came from, newest first: its order's own and, for a
/// rebook's order, those of the ticket it replaced (and so on back). A rebooked ticket's fare
/// is the first fare plus any differences paid since, so a refund is split across them.
pub async fn funding_payments(store: &dyn Store, order: &OrderRecord) -> Result<Vec<PaymentRecord>, ApiError> {
    let mut found = Vec::new();
    let mut order = order.clone();
    for _ in 0..REBOOK_CHAIN_MAX {
        let own = store.payments_of(&order.order_no).await?;
        found.extend(own.into_iter().filter(|p| p.status == PaymentStatus::Success));
        let replaced = legs_of(&order)?.into_iter().find_map(|l| l.replaces);
        let Some(sn) = replaced else { break };
        let ticket =
            store.ticket(&sn).await?.ok_or_else(|| ApiError::internal(format!("rebooked ticket {sn} missing")))?;
        order = store.order(&ticket.order_no).await?.ok_or_else(|| ApiError::internal("ticket without order"))?;
    }
    if found.is_empty() {
        return Err(ApiError::internal(format!("order {} has no captured payment", order.order_no)));
    }
    Ok(found)
}

/// The payment a refund is recorded against: the newest of [`funding_payments`].
pub async fn funding_payment(store: &dyn Store, order: &OrderRecord) -> Result<PaymentRecord, ApiError> {
    Ok(funding_payments(store, order).await?.remove(0))
}

pub(crate) fn departs_at_s(order: &OrderRecord, ticket: &TicketRecord) -> Result<i64, ApiError> {
    debug_assert!(matches!(
        order.status,
        OrderStatus::Ticketed | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
    ));
    let legs = legs_of(order)?;
    let leg = legs.get(ticket.leg as usize).ok_or_else(|| ApiError::internal("ticket leg out of range"))?;
    chrono::DateTime::parse_from_rfc3339(&leg.departs_at)
        .map(|t| t.timestamp())
        .map_err(|e| ApiError::internal(format!("stored departure unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_follow_the_tiers_and_round_to_half_a_yuan() {
        let tiers = crate::Config::default().refund_fee_tiers;
        let h = 3600;
        assert_eq!(refund_fee(55_300, 9 * 24 * h, &tiers), 0, "8 days and more: free");
        assert_eq!(refund_fee(55_300, 72 * h, &tiers), 2_750, "5% of 553.00 = 27.65 → 27.50");
        assert_eq!(refund_fee(55_300, 30 * h, &tiers), 5_550, "10% = 55.30 → 55.50");
        assert_eq!(refund_fee(55_300, 2 * h, &tiers), 11_050, "20% = 110.60 → 110.50");
        assert_eq!(refund_fee(1_000, 2 * h, &tiers), 200, "20% of 10.00 = 2.00");
        assert_eq!(refund_fee(1_130, 2 * h, &tiers), 250, "2.26 → 2.50");
        assert_eq!(refund_fee(1_110, 2 * h, &tiers), 200, "2.22 → 2.00");
    }
}
