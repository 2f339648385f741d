//! The sale's limits and windows, as the server's configuration sets them.

use chepiao_store::RetryPolicy;
use serde::{Deserialize, Serialize};

/// A refund fee tier: `percent` of the fare when at least `hours_before` departure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeTier {
    pub hours_before: u32,
    pub percent: u8,
}

/// 12306's tiers: 8 days and more free, 48 h 5%, 24 h 10%, less 20%.
pub fn default_fee_tiers() -> Vec<FeeTier> {
    vec![
        FeeTier { hours_before: 8 * 24, percent: 0 },
        FeeTier { hours_before: 48, percent: 5 },
        FeeTier { hours_before: 24, percent: 10 },
        FeeTier { hours_before: 0, percent: 20 },
    ]
}

/// The limits and windows of the sale (from the server's configuration).
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Days after today that are on sale.
    pub sale_window_days: u32,
    /// How long an order waits for payment, seconds.
    pub pay_window_s: u64,
    /// How much longer than the pay window the engine keeps a hold, seconds.
    pub hold_grace_s: u64,
    /// The earliest waitlist deadline accepted, seconds from now.
    pub wish_deadline_min_s: u64,
    /// How long before departure a ticket's code becomes valid, seconds.
    pub ticket_valid_before_s: u64,
    pub refund_fee_tiers: Vec<FeeTier>,
    /// How failing outbox events are retried, and when they go DEAD.
    pub event_retry: RetryPolicy,
    /// How long an event handed to the bus waits for its outcome before it is handed again, ms.
    pub event_redeliver_after_ms: u64,
    /// Engine holds older than this with no order carrying them are released, seconds (longer
    /// than any order placement takes).
    pub reconcile_after_s: u64,
    pub rules: PurchaseRules,
    /// Runs sold through a sale's waiting room, and when it opens (ms): wishes on them are
    /// matched only after it, so the waitlist is no way around the queue.
    pub sale_opens_at: std::collections::HashMap<String, i64>,
}

impl FlowConfig {
    /// The engine TTL of an order's hold: the pay window and the grace after it.
    pub fn hold_ttl_ms(&self) -> u64 {
        (self.pay_window_s + self.hold_grace_s) * 1000
    }
}

/// Which purchase rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurchaseRules {
    pub one_unpaid_order: bool,
    pub no_overlapping_trips: bool,
    /// 0: no limit.
    pub cancellations_per_day_max: u32,
    pub one_rebook_per_ticket: bool,
}

impl Default for PurchaseRules {
    fn default() -> Self {
        PurchaseRules {
            one_unpaid_order: true,
            no_overlapping_trips: true,
            cancellations_per_day_max: 3,
            one_rebook_per_ticket: true,
        }
    }
}

impl PurchaseRules {
    pub(crate) fn any_before_placing(&self) -> bool {
        self.one_unpaid_order || self.no_overlapping_trips || self.cancellations_per_day_max > 0
    }
}
