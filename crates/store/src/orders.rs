//! Orders: an order is a seat hold with a pay window, and a state machine that every backend
//! enforces the same way (one guarded `UPDATE … WHERE status = ? AND version = ?` per move).

use crate::error::Result;
use chepiao_domain::ServiceDate;

use crate::status::status_enum;

status_enum! {
    /// Where an order is in its life (API.md's names).
    OrderStatus {
        PendingPayment = "PENDING_PAYMENT",
        Paid = "PAID",
        Ticketed = "TICKETED",
        Cancelled = "CANCELLED",
        Expired = "EXPIRED",
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        Refunded = "REFUNDED",
    }
}

impl OrderStatus {
    /// The state machine: every transition an order may take. Anything else is a bug or a race
    /// lost, and is refused.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (PendingPayment, Paid | Cancelled | Expired)
                | (Paid, Ticketed | Refunded)
                | (Ticketed, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }

    /// The order holds seats it must give back (no payment will come).
    pub fn is_dead(self) -> bool {
        matches!(self, OrderStatus::Cancelled | OrderStatus::Expired)
    }
}

/// An order to record; `legs_json` is the flow's description of legs and seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_no: String,
    pub user_id: i64,
    pub idem_key: String,
    /// A hash of the request body: the same key with another body is refused.
    pub request_hash: Vec<u8>,
    pub amount_fen: i64,
    pub pay_before_ms: i64,
    pub created_at_ms: i64,
    pub legs_json: String,
    /// The engine holds the order carries (recorded beside it, so that reconciliation can
    /// tell an engine hold without an order, and a restart can fence hold ids).
    pub holds: Vec<i64>,
    pub kind: OrderKind,
    /// Where it was placed from (`web`, `app`, `api`, `console`), for the sales statistics.
    pub source: String,
    /// Each passenger's journey in time, for the rule that no passenger travels twice at once.
    pub trips: Vec<Trip>,
    /// One line per leg for the sales statistics.
    pub lines: Vec<OrderLine>,
}

status_enum! {
    /// What an order is for.
    OrderKind { Order = "order", Rebook = "rebook", Wish = "wish" }
}

/// One leg of an order as the sales statistics count it ([`crate::stats`]), written in the order's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub leg: i64,
    /// The day the order was placed (China time).
    pub day: ServiceDate,
    pub train_code: String,
    /// The API's spelling (`SECOND`, ...).
    pub class: String,
    pub seats: i64,
    /// This leg's share of the order's amount (the lines of an order add up to its amount).
    pub amount_fen: i64,
}

/// One passenger's journey on one leg of an order, in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    pub passenger_id: i64,
    /// The person: the passenger's ID-number hash (`PassengerRecord::id_no_index`), the same
    /// for them in every account.
    pub person: Vec<u8>,
    pub leg: i64,
    pub departs_at_ms: i64,
    pub arrives_at_ms: i64,
}

/// What the purchase rules need to know about a user before an order, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseQuery {
    pub user_id: i64,
    /// Cancellations are counted from here (the start of the user's day).
    pub day_start_ms: i64,
    /// Orders created before this are neither unpaid nor cancelled today, and are not read: a
    /// day and one hold's time (the longest an order waits for payment) before `day_start_ms`.
    pub since_ms: i64,
    /// The new order's trips: live trips of the same passengers that overlap them are found.
    pub trips: Vec<Trip>,
    /// An order whose trips do not count (a rebook's old ticket's order).
    pub ignore_order: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurchaseFacts {
    /// The user's unpaid order (not a wish's).
    pub unpaid: Option<UnpaidOrder>,
    /// Orders the user cancelled since `day_start_ms`.
    pub cancelled_today: u32,
    /// Live trips of the same people overlapping the new ones (the rules name the first).
    pub overlaps: Vec<Overlap>,
}

/// A user's order waiting for payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidOrder {
    pub order_no: String,
    /// Its idempotency key: a retry of that very order is not refused by it.
    pub idem_key: String,
}

/// A live trip that overlaps one of a new order's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The new order's passenger (an entry of the caller's list).
    pub passenger_id: i64,
    /// The order the overlapping trip belongs to; empty when it is another account's (not
    /// named to this user).
    pub order_no: String,
}

/// Trips one [`PurchaseQuery`] may carry.
pub const TRIPS_PER_QUERY_MAX: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_no: String,
    pub user_id: i64,
    pub idem_key: String,
    pub request_hash: Vec<u8>,
    pub status: OrderStatus,
    /// Bumped by every transition (optimistic locking).
    pub version: i64,
    pub amount_fen: i64,
    pub pay_before_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub legs_json: String,
    /// A dead order's seats were given back to the engine.
    pub seats_released: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOrder {
    Created(OrderRecord),
    /// The user already has an order with this idempotency key.
    Existing(OrderRecord),
}

/// A page of a user's orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub items: Vec<OrderRecord>,
    pub total: u64,
}

/// Largest page of orders a store returns.
pub const PAGE_SIZE_MAX: u32 = 100;
/// Rows one audit page (`orders_after`, `tickets_after`, ...) returns at most.
pub const AUDIT_PAGE_MAX: u32 = PAGE_SIZE_MAX * 100;

/// One move of an order along its state machine, guarded by what the mover read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub order_no: String,
    /// The status and version the mover read: the move happens only if they still hold.
    pub from: OrderStatus,
    pub version: i64,
    pub to: OrderStatus,
    pub now_ms: i64,
}

impl Transition {
    /// `order` to `to`. Panics on a transition the state machine forbids (a bug, not a race).
    pub fn of(order: &OrderRecord, to: OrderStatus, now_ms: i64) -> Transition {
        assert!(order.status.can_become(to), "{} -> {to} is not a transition", order.status);
        Transition { order_no: order.order_no.clone(), from: order.status, version: order.version, to, now_ms }
    }
}

/// Which of a user's orders one page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    pub user_id: i64,
    pub status: Option<OrderStatus>,
    /// From 1.
    pub page: u32,
    /// 1 to [`PAGE_SIZE_MAX`].
    pub page_size: u32,
}

impl PageQuery {
    pub fn check(&self) -> Result<()> {
        if self.page == 0 || !(1..=PAGE_SIZE_MAX).contains(&self.page_size) {
            return Err(crate::error::StoreError::Limit(format!("page from 1, page_size 1 to {PAGE_SIZE_MAX}")));
        }
        Ok(())
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.page_size)
    }
}

#[async_trait::async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Record new orders (at most [`crate::error::CREATE_BATCH_MAX`]), each unless its user already
    /// has an order with its idempotency key; answers in the order given. Keys repeated within
    /// the batch find the order the first of them made.
    async fn create_orders(&self, orders: &[NewOrder]) -> Result<Vec<CreateOrder>>;
    /// One order: [`OrderStore::create_orders`] of one.
    async fn create_order(&self, o: &NewOrder) -> Result<CreateOrder> {
        let mut out = self.create_orders(std::slice::from_ref(o)).await?;
        Ok(out.pop().expect("one answer per order"))
    }
    async fn order(&self, order_no: &str) -> Result<Option<OrderRecord>>;
    /// The orders among `order_nos` that exist.
    async fn orders_in(&self, order_nos: &[String]) -> Result<Vec<OrderRecord>>;
    /// Every order in order_no order after `after_no` (at most [`AUDIT_PAGE_MAX`]), for audits.
    async fn orders_after(&self, after_no: &str, limit: u32) -> Result<Vec<OrderRecord>>;
    /// The user's order with this idempotency key.
    async fn order_by_key(&self, user_id: i64, idem_key: &str) -> Result<Option<OrderRecord>>;
    /// A page of a user's orders, newest first.
    async fn orders_of(&self, q: PageQuery) -> Result<OrderPage>;
    /// Apply `t` if the order is still as its mover read it (optimistic locking); None when
    /// another writer moved it first.
    async fn transition_order(&self, t: &Transition) -> Result<Option<OrderRecord>>;
    /// Expire up to `limit` unpaid orders whose pay window closed; returns them.
    async fn expire_orders(&self, now_ms: i64, limit: u32) -> Result<Vec<OrderRecord>>;
    /// Cancelled or expired orders whose seats were not yet given back.
    async fn unreleased_orders(&self, limit: u32) -> Result<Vec<OrderRecord>>;
    async fn mark_seats_released(&self, order_no: &str) -> Result<()>;
    /// What the purchase rules need to know before an order (one read).
    async fn purchase_facts(&self, q: &PurchaseQuery) -> Result<PurchaseFacts>;
    /// Which of `holds` (at most [`HOLDS_LOOKUP_MAX`]) an order carries.
    async fn known_holds(&self, holds: &[i64]) -> Result<Vec<i64>>;
    /// The highest hold id any order carries (0 when none does).
    async fn hold_id_max(&self) -> Result<i64>;
}

/// Hold ids one [`OrderStore::known_holds`] call looks up.
pub const HOLDS_LOOKUP_MAX: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_refuses_what_it_must() {
        use OrderStatus::*;
        assert!(PendingPayment.can_become(Paid));
        assert!(!Expired.can_become(Paid), "a dead order is never paid");
        assert!(!Ticketed.can_become(PendingPayment));
        assert!(!Paid.can_become(Cancelled), "a paid order is refunded, not cancelled");
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(*s));
            assert!(!s.can_become(PendingPayment));
        }
    }
}
