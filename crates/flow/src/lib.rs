//! chepiao's sale, from a held seat to a checked-in ticket and back: no HTTP here (the server
//! maps [`FlowError`] to the API's error model in one place), no SQL (the store traits), no
//! seat choice (the engine).
//!
//! The data path, and the modules in its order:
//!
//! ```text
//! request ─► orders::place ─► engine hold (all legs or none) ─► order row PENDING_PAYMENT
//!               │  (calendar: is the run on sale; passengers: whose; batch: rows many per
//!               │   statement; stored: what the row keeps, with the holds it carries)
//!               │  cancel / expiry sweeper ─► engine release, exactly once
//!               │  reconcile: engine holds no order carries (a crash between) ─► released
//! payments ─► a payment row + the channel's pay_url (channels: mockpay and the trait)
//! channel ──signed notify──► payments::receive_notify ─► store: nonce, payment, order PAID,
//!                                     outbox row, audit entry (one transaction)
//! relay ─► bus (in-process or NATS JetStream) ─► issuer: engine confirm, signing (Ed25519 QR),
//!                                     order TICKETED with its tickets (or a refund);
//!                                     each event fails alone: backoff, then DEAD
//! after the sale: refunds (fee tiers; seat and money back through the outbox), rebook (hold
//! the new seat first, swap when ticketed), waitlist (prepaid wishes fulfilled in join order),
//! checkin (online, exactly once; offline uploads reconciled), audit (the invariant checks)
//! ```
//!
//! [`Flow`] ([`context`]) is the narrow context every step takes: the store, the engine, the
//! clock, the network and its run calendar, the limits ([`config`]), the batchers and the keys.
//! Time comes from the clock passed in (the engine's), so tests move time instead of sleeping.
//! [`background`] starts the tasks that keep the sale moving (and retires runs that arrived).
//! [`rules`] holds 12306's purchase rules, checked before seats are held.
//!
//! The modules fall in two kinds, so that nothing imports in a circle: the parts the context
//! holds (calendar, passengers, batch, stored, channels, signing, issuer, bus, relay) never
//! take the context; the steps (orders, payments, refunds, rebook, waitlist, checkin) do.

pub mod audit;
pub mod background;
pub mod batch;
pub mod bus;
pub mod calendar;
pub mod channels;
pub mod checkin;
pub mod config;
pub mod context;
pub mod error;
pub mod issuer;
pub mod orders;
pub mod passengers;
pub mod payments;
pub mod rebook;
pub mod reconcile;
pub mod refunds;
pub mod relay;
pub mod rules;
pub mod signing;
pub mod stored;
pub mod time;
pub mod waitlist;

pub use calendar::RunCalendar;
pub use config::{FeeTier, FlowConfig, default_fee_tiers};
pub use context::{Flow, FlowParts};
pub use error::{FlowError, Result};
pub use time::rfc3339;
