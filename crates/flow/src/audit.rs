//! Invariant audits read from the store, for `chepiao load` and operators:
//! - I1: no seat segment belongs to two live orders (pending, paid or ticketed);
//! - every TICKETED order has one ticket per seat it holds;
//! - I2: every captured payment is ticketed or refunded ([`chepiao_store::PaymentAudit`]).

use std::collections::HashMap;

use chepiao_store::{OrderStatus, Store, StoreError};

use crate::stored::StoredLeg;

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

/// Problems kept in a [`SeatAudit`]; the counts go on past it.
const PROBLEMS_MAX: usize = 100;

impl SeatAudit {
    fn problem(&mut self, p: String) {
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(p);
        }
    }
}

/// What the live orders hold: each seat's spans, and the seats of each TICKETED order.
#[derive(Default)]
struct Holdings {
    held: HashMap<SeatKey, Vec<Span>>,
    seats_of_ticketed: HashMap<String, u64>,
}

pub async fn audit_seats(store: &dyn Store) -> Result<SeatAudit, StoreError> {
    let mut audit = SeatAudit::default();
    let holdings = read_orders(store, &mut audit).await?;
    for ((run, seat), mut spans) in holdings.held {
        audit.seat_segments += spans.len() as u64;
        spans.sort();
        for pair in spans.windows(2) {
            let ((_, a_to, a), (b_from, _, b)) = (&pair[0], &pair[1]);
            if b_from < a_to {
                audit.problem(format!("I1: {run} seat {seat} is held by both {a} and {b}"));
            }
        }
    }
    let tickets_per_order = count_tickets(store, &mut audit).await?;
    for (order_no, seats) in holdings.seats_of_ticketed {
        let tickets = tickets_per_order.get(&order_no).copied().unwrap_or(0);
        if tickets != seats {
            audit.problem(format!("order {order_no} is TICKETED with {tickets} tickets for {seats} seats"));
        }
    }
    Ok(audit)
}

async fn read_orders(store: &dyn Store, audit: &mut SeatAudit) -> Result<Holdings, StoreError> {
    let mut holdings = Holdings::default();
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
                    audit.problem(format!("order {}: unreadable legs: {e}", o.order_no));
                    continue;
                }
            };
            let mut seats = 0;
            for leg in legs {
                for s in leg.seats {
                    seats += 1;
                    let span = (leg.from_stop, leg.to_stop, o.order_no.clone());
                    holdings.held.entry((leg.run_id.clone(), s.seat_index)).or_default().push(span);
                }
            }
            if o.status == OrderStatus::Ticketed {
                holdings.seats_of_ticketed.insert(o.order_no.clone(), seats);
            }
        }
    }
    Ok(holdings)
}

async fn count_tickets(store: &dyn Store, audit: &mut SeatAudit) -> Result<HashMap<String, u64>, StoreError> {
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
    Ok(tickets_per_order)
}

/// What [`verify_log`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    /// Entries found intact (before the break, if there is one).
    pub entries: u64,
    /// The last entry found intact (the `after` it started from when none was).
    pub last_seq: i64,
    /// The first break in the chain, in words.
    pub problem: Option<String>,
    /// The check reached the log's end (or a break); false when `entries_max` stopped it.
    pub complete: bool,
}

/// Recompute the audit log's hash chain from the entry after `after_seq` (from the start when
/// 0; else from that entry's recorded predecessor hash), at most `entries_max` entries.
pub async fn verify_log(store: &dyn Store, after_seq: i64, entries_max: u64) -> Result<LogCheck, StoreError> {
    let mut end: Option<(Vec<u8>, i64)> = (after_seq == 0).then(|| (chepiao_store::AUDIT_GENESIS.to_vec(), 0));
    let mut check = LogCheck { entries: 0, last_seq: after_seq, problem: None, complete: false };
    while check.entries < entries_max {
        let want = (entries_max - check.entries).min(u64::from(PAGE_LEN)) as u32;
        let page = store.audit_range(check.last_seq, want).await?;
        let Some(first) = page.first() else {
            check.complete = true;
            return Ok(check);
        };
        let from = end.take().unwrap_or_else(|| (first.prev_hash.clone(), check.last_seq));
        match chepiao_store::verify_chain(from, &page) {
            Ok(next) => {
                check.entries += page.len() as u64;
                check.last_seq = next.1;
                end = Some(next);
            }
            Err(e) => {
                // The entries before the broken one are intact.
                let (chepiao_store::ChainError::BadHash { seq } | chepiao_store::ChainError::BadLink { seq }) = e;
                check.entries += (seq - 1 - check.last_seq).max(0) as u64;
                check.last_seq = check.last_seq.max(seq - 1);
                check.problem = Some(e.to_string());
                check.complete = true;
                return Ok(check);
            }
        }
    }
    Ok(check)
}
