//! What happens after the sale: rebooking (改签), the waitlist (候补) and the notifications it
//! sends.

use async_trait::async_trait;

use crate::error::Result;
use crate::orders::{NewOrder, OrderRecord};
use crate::status::status_enum;
use crate::tickets::{TicketRefundRecord, TicketStatus};

status_enum! {
    /// A wish as stored. While ACTIVE, its order says whether it is paid (API's
    /// `PENDING_PAYMENT` or `WAITING`).
    WishStatus {
        Active = "ACTIVE",
        Fulfilled = "FULFILLED",
        Expired = "EXPIRED",
        Cancelled = "CANCELLED",
    }
}

/// A wish to record, with the order that carries its money (see [`AfterSaleStore::create_wish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWish {
    pub wish_id: String,
    pub user_id: i64,
    pub run_id: String,
    pub class: String,
    pub from_station: String,
    pub to_station: String,
    pub passenger_ids: Vec<i64>,
    pub deadline_ms: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WishRecord {
    /// Join order: wishes are fulfilled in it.
    pub seq: i64,
    pub wish_id: String,
    pub user_id: i64,
    pub order_no: String,
    pub run_id: String,
    pub class: String,
    pub from_station: String,
    pub to_station: String,
    pub passenger_ids: Vec<i64>,
    pub deadline_ms: i64,
    pub status: WishStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateWish {
    Created(WishRecord),
    /// The user's idempotency key already made this wish.
    Existing(WishRecord),
    /// The key belongs to an order that is not a wish.
    KeyTaken(OrderRecord),
}

/// What ending a wish (deadline or cancel) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndWish {
    /// ACTIVE → EXPIRED or CANCELLED now; a paid wish's payment went to the refund outbox.
    Ended(WishRecord),
    /// Fulfilled, expired or cancelled before.
    NotActive(WishRecord),
    Unknown,
}

/// What swapping a ticket for its rebooked replacement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebookSwap {
    /// ISSUED → REBOOKED now, with its revocation, the refund row that gives its seat (and any
    /// fare difference) back, an outbox event and an audit entry.
    Swapped,
    /// This order swapped it before (a redelivered event).
    AlreadyOurs,
    /// The ticket was checked in, refunded or rebooked by another order meanwhile.
    Lost(TicketStatus),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub user_id: i64,
    /// `wish.fulfilled`, `wish.expired`, `wish.cancelled`.
    pub kind: String,
    /// What it is about (a wish id).
    pub subject: String,
    pub body: String,
    pub created_at_ms: i64,
}

/// A waiting wish fulfilled with the seats in `legs_json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulfil {
    pub wish_id: String,
    pub legs_json: String,
    /// The engine holds the seats are on (recorded beside the order, as for new orders).
    pub holds: Vec<i64>,
    pub now_ms: i64,
}

/// Wishes one matcher round or one expiry call handles.
pub const WISH_BATCH_MAX: u32 = 512;
/// Notifications one call returns.
pub const NOTIFICATIONS_PAGE_MAX: u32 = 100;

#[async_trait]
pub trait AfterSaleStore: Send + Sync + 'static {
    /// Record a wish and its order (PENDING_PAYMENT, no seats) in one transaction; the order's
    /// (user, idempotency key) makes a retry find the same wish.
    async fn create_wish(&self, w: &NewWish, order: &NewOrder) -> Result<CreateWish>;
    async fn wish(&self, wish_id: &str) -> Result<Option<WishRecord>>;
    /// Active wishes whose order is paid, in join order.
    async fn waiting_wishes(&self, limit: u32) -> Result<Vec<WishRecord>>;
    /// Fulfil a waiting wish with the seats in `legs_json`: the wish FULFILLED, the order's legs
    /// set, an outbox event to ticket it, a notification and an audit entry, in one
    /// transaction. False when the wish was no longer waiting (then the caller gives the seats back).
    async fn fulfil_wish(&self, f: &Fulfil) -> Result<bool>;
    /// End an active wish (`to` is EXPIRED or CANCELLED): its order is refunded if paid, made
    /// dead if not.
    async fn end_wish(&self, wish_id: &str, to: WishStatus, now_ms: i64) -> Result<EndWish>;
    /// End every active wish whose deadline passed (at most `limit`); returns them.
    async fn expire_wishes(&self, now_ms: i64, limit: u32) -> Result<Vec<WishRecord>>;
    /// The user's notifications, newest first.
    async fn notifications(&self, user_id: i64, limit: u32) -> Result<Vec<Notification>>;

    /// PENDING_PAYMENT → PAID for an order that costs nothing (a rebook to a fare no dearer),
    /// with the outbox event that tickets it. False when it was not pending or not free.
    async fn settle_free_order(&self, order_no: &str, now_ms: i64) -> Result<bool>;
    /// Swap `old_ticket_sn` for the order `new_order_no` that rebooks it (see [`RebookSwap`]).
    /// `refund` gives the old seat and any fare difference back (its `ticket_sn` is the old one).
    async fn rebook_swap(&self, new_order_no: &str, refund: &TicketRefundRecord) -> Result<RebookSwap>;
    /// The order that replaced a rebooked ticket.
    async fn rebooked_to(&self, old_ticket_sn: &str) -> Result<Option<String>>;
}
