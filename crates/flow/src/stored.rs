//! What the flow keeps in an order row besides its columns, and the facts derived from it:
//! legs and seats (`legs_json`), the engine keys and numbers it makes, and the chain of
//! payments that funded a (rebooked) ticket.

use chepiao_domain::SeatClass;
use chepiao_engine::IdemKey;
use chepiao_store::{OrderRecord, OrderStatus, PaymentRecord, PaymentStatus, Store, TicketRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{FlowError, Result};

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

pub fn legs_of(order: &OrderRecord) -> Result<Vec<StoredLeg>> {
    serde_json::from_str(&order.legs_json)
        .map_err(|e| FlowError::Internal(format!("order {}: stored legs unreadable: {e}", order.order_no)))
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

/// Rebooks one chain may follow back to the payment that paid for it.
const REBOOK_CHAIN_MAX: usize = 16;

/// The captured payments a ticket's money came from, newest first: its order's own and, for a
/// rebook's order, those of the ticket it replaced (and so on back). A rebooked ticket's fare
/// is the first fare plus any differences paid since, so a refund is split across them.
pub async fn funding_payments(store: &dyn Store, order: &OrderRecord) -> Result<Vec<PaymentRecord>> {
    let mut found = Vec::new();
    let mut order = order.clone();
    for _ in 0..REBOOK_CHAIN_MAX {
        let own = store.payments_of(&order.order_no).await?;
        found.extend(own.into_iter().filter(|p| p.status == PaymentStatus::Success));
        let replaced = legs_of(&order)?.into_iter().find_map(|l| l.replaces);
        let Some(sn) = replaced else { break };
        let ticket =
            store.ticket(&sn).await?.ok_or_else(|| FlowError::Internal(format!("rebooked ticket {sn} missing")))?;
        order =
            store.order(&ticket.order_no).await?.ok_or_else(|| FlowError::Internal("ticket without order".into()))?;
    }
    if found.is_empty() {
        return Err(FlowError::Internal(format!("order {} has no captured payment", order.order_no)));
    }
    Ok(found)
}

/// The payment a refund is recorded against: the newest of [`funding_payments`].
pub async fn funding_payment(store: &dyn Store, order: &OrderRecord) -> Result<PaymentRecord> {
    Ok(funding_payments(store, order).await?.remove(0))
}

pub(crate) fn departs_at_s(order: &OrderRecord, ticket: &TicketRecord) -> Result<i64> {
    debug_assert!(matches!(
        order.status,
        OrderStatus::Ticketed | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
    ));
    let legs = legs_of(order)?;
    let leg = legs.get(ticket.leg as usize).ok_or_else(|| FlowError::Internal("ticket leg out of range".into()))?;
    chrono::DateTime::parse_from_rfc3339(&leg.departs_at)
        .map(|t| t.timestamp())
        .map_err(|e| FlowError::Internal(format!("stored departure unreadable: {e}")))
}
