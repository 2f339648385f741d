//! Ticket refunds: the fee by time before departure (12306's tiers, configurable), then one
//! transaction that revokes the ticket and queues the seat and the money to go back (the
//! issuer does both when it handles the outbox event; see `Issuer::ticket_refund`).

use chepiao_store::{OrderRecord, RefundStatus, RefundTicket, TicketRecord, TicketRefundRecord};

use crate::config::FeeTier;
use crate::context::Flow;
use crate::error::{FlowError, Result};
use crate::stored::{departs_at_s, funding_payment, new_number};

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
pub async fn refund(flow: &Flow, user_id: i64, ticket_sn: &str) -> Result<TicketRefundRecord> {
    let ticket = own_ticket(flow, user_id, ticket_sn).await?;
    let order = ticket_order(flow, &ticket).await?;
    let departs_at = departs_at_s(&order, &ticket)?;
    let left_s = departs_at - flow.now_ms() / 1000;
    if left_s <= 0 {
        return Err(FlowError::Departed(format!("{ticket_sn}: the train has left; it cannot be refunded")));
    }
    let payment = funding_payment(flow.store.as_ref(), &order).await?;
    let fee_fen = refund_fee(ticket.price_fen, left_s, &flow.config.refund_fee_tiers);
    let r = TicketRefundRecord {
        refund_no: new_number('R', flow.now_ms()),
        ticket_sn: ticket.ticket_sn.clone(),
        order_no: order.order_no.clone(),
        payment_no: payment.payment_no,
        refund_fen: ticket.price_fen - fee_fen,
        fee_fen,
        status: RefundStatus::Pending,
        created_at_ms: flow.now_ms(),
    };
    match flow.store.refund_ticket(&r).await? {
        RefundTicket::Started(r) => {
            flow.relay.wake();
            Ok(r)
        }
        RefundTicket::Existing(r) => Ok(r),
        RefundTicket::NotRefundable(status) => {
            Err(FlowError::NotRefundable(format!("ticket {ticket_sn} is {status}: it cannot be refunded")))
        }
        RefundTicket::Unknown => Err(FlowError::UnknownTicket(format!("no ticket {ticket_sn}"))),
    }
}

/// The caller's ticket, or 404 (another user's ticket is not admitted to exist).
pub async fn own_ticket(flow: &Flow, user_id: i64, ticket_sn: &str) -> Result<TicketRecord> {
    match flow.store.ticket(ticket_sn).await? {
        Some(t) if t.user_id == user_id => Ok(t),
        _ => Err(FlowError::UnknownTicket(format!("no ticket {ticket_sn}"))),
    }
}

/// The order a ticket was issued with.
pub(crate) async fn ticket_order(flow: &Flow, ticket: &TicketRecord) -> Result<OrderRecord> {
    flow.store.order(&ticket.order_no).await?.ok_or_else(|| FlowError::Internal("ticket without order".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_follow_the_tiers_and_round_to_half_a_yuan() {
        let tiers = crate::config::default_fee_tiers();
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
