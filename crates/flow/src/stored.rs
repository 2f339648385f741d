//! What the flow keeps in an order row besides its columns, and the facts derived from it:
//! legs and seats (`legs_json`), the engine keys and numbers it makes, and the chain of
//! payments that funded a (rebooked) ticket.

use chepiao_domain::{RunId, SeatClass};
use chepiao_engine::IdemKey;
use chepiao_store::{OrderLine, OrderRecord, OrderStatus, PaymentRecord, PaymentStatus, Store, TicketRecord};
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
    /// With `replaces`: the payments that paid for the replaced ticket, newest first, recorded
    /// when the rebook was placed (a refund of the new ticket is split across them and this
    /// order's own payment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub funding: Vec<String>,
}

impl StoredLeg {
    /// The leg's run, as the engine names it.
    pub fn run(&self) -> Result<RunId> {
        self.run_id.parse().map_err(|e| FlowError::Internal(format!("stored run {:?}: {e}", self.run_id)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeat {
    pub passenger_id: i64,
    pub seat_index: u16,
    pub coach: u8,
    pub seat: String,
    pub price_fen: i64,
}

/// The order's lines for the sales statistics: one per leg, on the day it is placed (China
/// time), with its passengers (`passengers[i]` on leg `i`) and its fares. What the order's
/// amount differs from the fares (a rebook charges the difference, a wish has no seats yet)
/// lands on the first leg, so that the lines add up to the amount.
pub fn order_lines(legs: &[StoredLeg], passengers: &[usize], amount_fen: i64, created_at_ms: i64) -> Vec<OrderLine> {
    assert_eq!(legs.len(), passengers.len(), "a passenger count per leg");
    let at = chrono::DateTime::from_timestamp_millis(created_at_ms).expect("a time within chrono's range");
    let day = chepiao_domain::ServiceDate::today_in_china(at);
    let mut lines: Vec<OrderLine> = legs
        .iter()
        .zip(passengers)
        .enumerate()
        .map(|(i, (leg, &n))| OrderLine {
            leg: i as i64,
            day,
            train_code: leg.train_code.clone(),
            class: leg.class.as_str().to_string(),
            seats: n as i64,
            amount_fen: leg.seats.iter().map(|s| s.price_fen).sum(),
        })
        .collect();
    let fares: i64 = lines.iter().map(|l| l.amount_fen).sum();
    if let Some(first) = lines.first_mut() {
        first.amount_fen += amount_fen - fares;
    }
    lines
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

/// A fresh order, payment, refund or wish number: a letter, 16 hex digits that grow with time,
/// then 64 random bits in hex.
///
/// The growing part is `now_ms` (the flow's clock) times 2^16 plus a counter, never repeated
/// in this process, also when the clock steps back. It is there for the tables: a key that
/// grows lands at the end of its B-tree, so recording an order touches the last leaf page of
/// the orders, trips and statistics indexes instead of a random page of each, and the SQLite
/// writer writes a few pages per batch instead of several per order (docs/BENCHMARKS.md, issue
/// 17). The time only orders the numbers; no decision is made from it. The random tail keeps
/// numbers unguessable (mockpay's pay page is reached by its payment's number) and distinct
/// across nodes.
pub fn new_number(prefix: char, now_ms: i64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let floor = (now_ms.max(0) as u64) << 16;
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(floor.max(last + 1)))
        .expect("the update always answers");
    let grows = floor.max(previous + 1);
    let random = uuid::Uuid::new_v4().as_u64_pair().0;
    format!("{prefix}{grows:016X}{random:016X}")
}

/// The engine holds of `legs` with the run of each hold's first leg (where the engine keeps
/// the hold's sale), once each. A wish's legs before it is fulfilled have none.
pub fn holds_of(legs: &[StoredLeg]) -> Result<Vec<(u64, RunId)>> {
    let mut out: Vec<(u64, RunId)> = Vec::new();
    for l in legs.iter().filter(|l| !l.seats.is_empty() && l.hold_leg == 0) {
        if !out.iter().any(|(h, _)| *h == l.hold) {
            out.push((l.hold, l.run()?));
        }
    }
    Ok(out)
}

/// The captured payments a ticket's money came from, newest order first: its order's own and,
/// for a rebook's order, those recorded for the ticket it replaced. (A ticket is rebooked at most
/// once, so there is no chain to follow; an order placed before funding was recorded looks
/// one step back.)
pub async fn funding_payments(store: &dyn Store, order: &OrderRecord) -> Result<Vec<PaymentRecord>> {
    let mut found: Vec<PaymentRecord> = store.payments_of(&order.order_no).await?;
    found.retain(|p| p.status == PaymentStatus::Success);
    let legs = legs_of(order)?;
    if let Some(leg) = legs.iter().find(|l| l.replaces.is_some()) {
        let earlier = match leg.funding.is_empty() {
            false => recorded_payments(store, &leg.funding).await?,
            true => replaced_order_payments(store, leg.replaces.as_deref().expect("found above")).await?,
        };
        found.extend(earlier);
    }
    if found.is_empty() {
        return Err(FlowError::Internal(format!("order {} has no captured payment", order.order_no)));
    }
    Ok(found)
}

async fn recorded_payments(store: &dyn Store, payment_nos: &[String]) -> Result<Vec<PaymentRecord>> {
    let mut out = Vec::with_capacity(payment_nos.len());
    for no in payment_nos {
        let p = store.payment(no).await?.ok_or_else(|| FlowError::Internal(format!("funding payment {no} missing")))?;
        out.push(p);
    }
    Ok(out)
}

/// The captured payments of the order that bought ticket `sn`.
pub async fn replaced_order_payments(store: &dyn Store, sn: &str) -> Result<Vec<PaymentRecord>> {
    let ticket = store.ticket(sn).await?.ok_or_else(|| FlowError::Internal(format!("rebooked ticket {sn} missing")))?;
    let mut own = store.payments_of(&ticket.order_no).await?;
    own.retain(|p| p.status == PaymentStatus::Success);
    Ok(own)
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

#[cfg(test)]
mod tests {
    use super::new_number;

    #[test]
    fn numbers_grow_never_repeat_and_end_unguessably() {
        // Four threads at once: every number distinct, each thread's in increasing order.
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..20_000).map(|_| new_number('E', 1_700_000_000_000)).collect::<Vec<_>>()))
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            let numbers = t.join().unwrap();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "a thread's numbers grow");
            for n in numbers {
                assert_eq!(n.len(), 33);
                assert!(n.starts_with('E') && n[1..].bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(all.insert(n), "a number was handed out twice");
            }
        }
        // Two numbers in a row share their growing part's high digits, never their random tail;
        // a clock that stepped back a second still gives a later number.
        let (a, b) = (new_number('P', 1_700_000_000_000), new_number('P', 1_699_999_999_000));
        assert_eq!(a[..9], b[..9]);
        assert!(a[1..17] < b[1..17], "{a} {b}");
        assert_ne!(a[17..], b[17..]);
    }
}
