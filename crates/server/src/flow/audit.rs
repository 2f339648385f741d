//! Invariant audits read from the store, for `chepiao load` and operators:
//! - I1: no seat segment belongs to two live orders (pending, paid or ticketed);
//! - every TICKETED order has one ticket per seat it holds;
//! - I2: every captured payment is ticketed or refunded ([`chepiao_store::PaymentAudit`]).

use std::collections::HashMap;

use chepiao_store::{OrderStatus, Store, StoreError};

use crate::flow::orders::StoredLeg;

/// Rows read per store call.
const PAGE_LEN: u32 = 10_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeatAudit {
    pub orders: u64,
    pub live_orders: u64,
    pub seat_segments: u64,
    pub tickets: u64,
    /// Human-readable descriptions of what is wrong (empty when all is well; at most 100).
    pub problems: Vec<String>,
}

fn live(s: OrderStatus) -> bool {
    matches!(
        s,
        OrderStatus::PendingPayment | OrderStatus::Paid | OrderStatus::Ticketed | OrderStatus::PartiallyRefunded
    )
}

/// (run, seat index)
type SeatKey = (String, u16);
/// (from stop, to stop, order_no)
type Span = (u8, u8, String);

pub async fn audit_seats(store: &dyn Store) -> Result<SeatAudit, StoreError> {
    let mut audit = SeatAudit::default();
    let problem = |audit: &mut SeatAudit, p: String| {
        if audit.problems.len() < 100 {
            audit.problems.push(p);
        }
    };
    let mut held: HashMap<SeatKey, Vec<Span>> = HashMap::new();
    let mut seats_of_ticketed: HashMap<String, u64> = HashMap::new();
    let mut after = String::new();
    loop {
        let page = store.orders_after(&after, PAGE_LEN).await?;
        let Some(last) = page.last() else { break };
        after = last.order_no.clone();
        for o in &page {
            audit.orders += 1;
            if !live(o.status) {
                continue;
            }
            audit.live_orders += 1;
            let legs: Vec<StoredLeg> = match serde_json::from_str(&o.legs_json) {
                Ok(l) => l,
                Err(e) => {
                    problem(&mut audit, format!("order {}: unreadable legs: {e}", o.order_no));
                    continue;
                }
            };
            let mut seats = 0;
            for leg in legs {
                for s in leg.seats {
                    seats += 1;
                    held.entry((leg.run_id.clone(), s.seat_index)).or_default().push((
                        leg.from_stop,
                        leg.to_stop,
                        o.order_no.clone(),
                    ));
                }
            }
            if o.status == OrderStatus::Ticketed {
                seats_of_ticketed.insert(o.order_no.clone(), seats);
            }
        }
    }
    for ((run, seat), mut spans) in held {
        audit.seat_segments += spans.len() as u64;
        spans.sort();
        for pair in spans.windows(2) {
            let ((_, a_to, a), (b_from, _, b)) = (&pair[0], &pair[1]);
            if b_from < a_to {
                problem(&mut audit, format!("I1: {run} seat {seat} is held by both {a} and {b}"));
            }
        }
    }
    let mut tickets_per_order: HashMap<String, u64> = HashMap::new();
    let mut after = String::new();
    loop {
        let page = store.tickets_after(&after, PAGE_LEN).await?;
        let Some(last) = page.last() else { break };
        after = last.ticket_sn.clone();
        audit.tickets += page.len() as u64;
        for t in page {
            *tickets_per_order.entry(t.order_no).or_default() += 1;
        }
    }
    for (order_no, seats) in seats_of_ticketed {
        let tickets = tickets_per_order.get(&order_no).copied().unwrap_or(0);
        if tickets != seats {
            problem(&mut audit, format!("order {order_no} is TICKETED with {tickets} tickets for {seats} seats"));
        }
    }
    Ok(audit)
}
