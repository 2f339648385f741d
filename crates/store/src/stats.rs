//! Sales statistics for operators: per day, train and seat class, what was ordered and what
//! became of it, by payment channel and by where orders came from.
//!
//! Why a line per order leg ([`crate::OrderLine`]) written with the order: an order's train and class
//! live in the flow's `legs_json`, which SQL cannot group on cheaply. The line carries the
//! grouping columns (the day the order was placed, China time; the train; the class) and an
//! index on them, instead of parsing a day of JSON.
//!
//! Why the line also carries its order's status, source, paying channel and refunds (kept in
//! step by triggers on `orders`, `payments` and `ticket_refunds`): a day of a national sale is
//! millions of orders, and joining each line to its order and payments made the day's figures
//! take seconds. With everything on the line, the day's figures are one pass over an index
//! range in (day, train, class) order, and one train's a seek. The cost is one more small
//! update per order transition, paid on the write path.
//!
//! What counts as paid, ticketed or refunded is decided once ([`line_sums_sql`], from the
//! order state machine) for both backends.

use chepiao_domain::ServiceDate;

use crate::error::{Result, StoreError};
use crate::orders::OrderStatus;

/// Days one statistics query may span.
pub const STATS_DAYS_MAX: i64 = 31;
/// (day, train, class) groups one query returns at most; more are cut (`truncated`).
pub const STATS_GROUPS_MAX: usize = 20_000;

/// Which orders to count: placed on `from_day ..= to_day`, optionally of one train or class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesQuery {
    pub from_day: ServiceDate,
    pub to_day: ServiceDate,
    pub train: Option<String>,
    pub class: Option<String>,
}

impl SalesQuery {
    /// Days in the range, checked against [`STATS_DAYS_MAX`].
    pub fn check(&self) -> Result<()> {
        let span = self.to_day.days_since(self.from_day);
        if !(0..STATS_DAYS_MAX).contains(&span) {
            return Err(StoreError::Limit(format!("`from` to `to`: 1 to {STATS_DAYS_MAX} days, in order")));
        }
        Ok(())
    }
}

/// What happened to the order lines of one group: counts by what became of their orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineCounts {
    pub placed: u64,
    pub paid: u64,
    pub ticketed: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub refunded: u64,
    pub seats: u64,
    /// The lines' amounts of paid orders.
    pub revenue_fen: i64,
    /// Money refunded on the lines' tickets.
    pub refunds_fen: i64,
}

/// The lines of one (day, train, class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineGroup {
    pub day: String,
    pub train_code: String,
    pub class: String,
    pub counts: LineCounts,
}

/// Orders by where they came from and the channel that paid them (`""`: none did). Without a
/// train or class filter each order counts once (its first leg); with one, each matching leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginGroup {
    pub source: String,
    pub channel: String,
    pub counts: LineCounts,
}

/// What a backend counts for one [`SalesQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesFacts {
    /// Ordered by day, train, class; at most [`STATS_GROUPS_MAX`].
    pub lines: Vec<LineGroup>,
    pub origins: Vec<OriginGroup>,
    /// More than [`STATS_GROUPS_MAX`] groups matched: the last ones were left out.
    pub truncated: bool,
}

/// The SQL that sums one group of `order_lines` rows into [`LineCounts`]' columns, in their
/// order, each sum followed by `cast` (PostgreSQL sums bigints as numeric: `::bigint`). What
/// counts as paid, ticketed or refunded is decided here once, from the order state machine
/// ([`OrderStatus::was_paid`], ...), for both backends.
pub fn line_sums_sql(cast: &str) -> String {
    let any = |pred: fn(OrderStatus) -> bool| {
        let names: Vec<String> =
            OrderStatus::ALL.iter().filter(|s| pred(**s)).map(|s| format!("'{}'", s.as_str())).collect();
        format!("status IN ({})", names.join(", "))
    };
    let one_if = |cond: &str| format!("CASE WHEN {cond} THEN 1 ELSE 0 END");
    let paid = any(OrderStatus::was_paid);
    let sums = [
        one_if(&paid),
        one_if(&any(OrderStatus::was_ticketed)),
        one_if("status = 'EXPIRED'"),
        one_if("status = 'CANCELLED'"),
        one_if(&any(OrderStatus::was_refunded)),
        "seats".to_string(),
        format!("CASE WHEN {paid} THEN amount_fen ELSE 0 END"),
        "refunds_fen".to_string(),
    ];
    let sums: Vec<String> = sums.iter().map(|e| format!("sum({e}){cast}")).collect();
    debug_assert_eq!(sums.len() + 1, LINE_SUMS_LEN);
    format!("count(*){cast}, {}", sums.join(", "))
}

/// How many columns [`line_sums_sql`] selects.
pub const LINE_SUMS_LEN: usize = 9;

impl LineCounts {
    /// The counts from [`line_sums_sql`]'s columns, in its order (a sum over no rows is NULL).
    pub fn from_sums(sums: [Option<i64>; LINE_SUMS_LEN]) -> LineCounts {
        let [placed, paid, ticketed, expired, cancelled, refunded, seats, revenue_fen, refunds_fen] =
            sums.map(|v| v.unwrap_or(0));
        let n = |v: i64| v as u64;
        LineCounts {
            placed: n(placed),
            paid: n(paid),
            ticketed: n(ticketed),
            expired: n(expired),
            cancelled: n(cancelled),
            refunded: n(refunded),
            seats: n(seats),
            revenue_fen,
            refunds_fen,
        }
    }

    /// Add another group's counts to these.
    pub fn add(&mut self, c: &LineCounts) {
        self.placed += c.placed;
        self.paid += c.paid;
        self.ticketed += c.ticketed;
        self.expired += c.expired;
        self.cancelled += c.cancelled;
        self.refunded += c.refunded;
        self.seats += c.seats;
        self.revenue_fen += c.revenue_fen;
        self.refunds_fen += c.refunds_fen;
    }
}

/// The days of a query, listed (at most [`STATS_DAYS_MAX`]): an equality per day lets the
/// backends seek the (day, train, class) index instead of scanning a range of days.
pub fn days_of(q: &SalesQuery) -> Vec<String> {
    let n = q.to_day.days_since(q.from_day).clamp(0, STATS_DAYS_MAX - 1);
    (0..=n).map(|i| q.from_day.add_days(i).to_string()).collect()
}

impl OrderStatus {
    /// A payment was captured for the order (whatever happened after).
    pub fn was_paid(self) -> bool {
        use OrderStatus::*;
        matches!(self, Paid | Ticketed | PartiallyRefunded | Refunded)
    }

    /// The order's tickets were issued. A paid order refunded before its tickets (rare: its
    /// seats could not be issued) counts as ticketed too: the status does not tell them apart.
    pub fn was_ticketed(self) -> bool {
        use OrderStatus::*;
        matches!(self, Ticketed | PartiallyRefunded | Refunded)
    }

    /// Some of the order's money went back.
    pub fn was_refunded(self) -> bool {
        matches!(self, OrderStatus::PartiallyRefunded | OrderStatus::Refunded)
    }
}

#[async_trait::async_trait]
pub trait StatsStore: Send + Sync + 'static {
    /// Count the orders `q` selects (checked with [`SalesQuery::check`]).
    async fn sales_facts(&self, q: &SalesQuery) -> Result<SalesFacts>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: &str, to: &str) -> SalesQuery {
        SalesQuery { from_day: from.parse().unwrap(), to_day: to.parse().unwrap(), train: None, class: None }
    }

    #[test]
    fn ranges_are_checked() {
        assert!(q("2026-01-01", "2026-01-01").check().is_ok());
        assert!(q("2026-01-01", "2026-01-31").check().is_ok());
        assert!(q("2026-01-01", "2026-02-01").check().is_err(), "32 days");
        assert!(q("2026-01-02", "2026-01-01").check().is_err(), "backwards");
    }

    #[test]
    fn sums_decode_in_the_order_they_are_selected() {
        assert_eq!(line_sums_sql("").matches("sum(").count() + 1, LINE_SUMS_LEN);
        let c = LineCounts::from_sums([Some(9), Some(8), Some(7), Some(6), Some(5), Some(4), Some(3), Some(2), None]);
        let want = LineCounts {
            placed: 9,
            paid: 8,
            ticketed: 7,
            expired: 6,
            cancelled: 5,
            refunded: 4,
            seats: 3,
            revenue_fen: 2,
            refunds_fen: 0,
        };
        assert_eq!(c, want);
        let mut twice = c.clone();
        twice.add(&c);
        assert_eq!((twice.placed, twice.seats, twice.revenue_fen), (18, 6, 4));
    }

    #[test]
    fn paid_ticketed_refunded_follow_the_state_machine() {
        use OrderStatus::*;
        for s in OrderStatus::ALL {
            // Everything ticketed was paid; everything refunded was ticketed or at least paid.
            assert!(!s.was_ticketed() || s.was_paid(), "{s}");
            assert!(!s.was_refunded() || s.was_paid(), "{s}");
        }
        assert!(!PendingPayment.was_paid() && !Expired.was_paid() && !Cancelled.was_paid());
    }
}
