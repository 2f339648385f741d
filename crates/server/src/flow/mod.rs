//! The purchase flow, from order to ticket:
//!
//! ```text
//! POST /orders ──► orders::place ── engine hold + order row (PENDING_PAYMENT, pay window)
//!                     │  cancel / expiry sweeper ──► engine release (exactly once)
//! POST /orders/{no}/payments ──► a payment row + the channel's pay_url
//! channel ──signed notify──► payments::parse_notify ──► store.apply_notify: nonce, payment,
//!                     order PAID and an outbox row, audit entry: one transaction
//! relay ──► bus (in-process or NATS JetStream) ──► issuer: engine confirm, signed tickets,
//!                     order TICKETED (or, if the seats are gone, a refund)
//! ```
//!
//! After the sale: `refunds` (fee tiers; seat and money back through the outbox), `rebook`
//! (hold the new seat first, swap when the new order is ticketed) and `waitlist` (prepaid
//! wishes fulfilled in join order when seats come back). Check-in lives in `routes::checkin`,
//! and `crate::gate` is the offline gate that syncs from it.

pub mod audit;
pub mod batch;
pub mod bus;
pub mod issuer;
pub mod orders;
pub mod payments;
pub mod rebook;
pub mod refunds;
pub mod relay;
pub mod signing;
pub mod waitlist;
