//! Hot-sale protection, in one place: what keeps the server up and the sale fair when demand is
//! a hundred times capacity. From the outside in:
//!
//! ```text
//! request ─► limits: concurrency (503 at once), per-IP bucket (429), buy-path time limit
//!         ─► route: queue join / order ─► risk: lists, per-user/device/IP buckets, score
//!         ─► order: the sale's queue token (room, token) ─► the purchase flow (chepiao-flow)
//! ```
//!
//! - [`limits`]: load shedding, per-IP limits, the client IP behind a proxy;
//! - [`guard`]: the buy path's checks (risk, then the queue token of a sale's runs);
//! - [`room`]: the waiting room of each sale (a [`room::QueueBackend`]: [`memory`] or
//!   [`redis`]), admitting at a set rate; [`token`]: the signed queue tokens it hands out;
//! - [`risk`]: block and allow lists, token buckets, the risk score; [`shared_lists`]: the
//!   lists shared by a cluster's nodes through Redis;
//! - [`streams`]: the caps on the waiting room's Server-Sent Events streams.

pub mod guard;
pub mod limits;
pub mod memory;
pub mod redis;
pub mod risk;
pub mod room;
pub mod shared_lists;
pub mod streams;
pub mod token;

pub use room::{Lane, QueueBackend, Sale, SaleConfig, WaitingRoom};
pub use token::{QueueTokens, TokenError};
