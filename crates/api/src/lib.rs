//! chepiao's public HTTP contract (the server serves it as `/openapi.json`; notes in
//! `docs/API.md`), as Rust types, and a typed client.
//!
//! How the parts fit:
//! - one module per resource ([`users`], [`network`], [`orders`], [`payments`], [`tickets`],
//!   [`checkin`], [`waitlist`], [`queue`], [`ops`], and [`stats`] for the operator's figures):
//!   the bodies clients send and the answers
//!   they get, the same types the server serialises (so the two cannot drift apart);
//! - [`error`]: the one error body every failure carries, `{code, message, request_id}`;
//! - [`qr`]: the signed QR payload a ticket carries and the key ring that verifies it, which
//!   gates use offline;
//! - [`client`]: a small async client over those types, used by the server's tests, `chepiao
//!   load`, the rush and `chepiao gate`;
//! - [`headers`]: the optional request headers API.md names;
//! - [`gate`]: the offline gate, the client side of check-in (sync keys and revocations, scan
//!   with no network, upload).
//!
//! With the `openapi` feature every type also derives its utoipa schema.

pub mod checkin;
pub mod client;
pub mod error;
pub mod gate;
pub mod headers;
pub mod network;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod qr;
pub mod queue;
pub mod stats;
pub mod tickets;
pub mod users;
pub mod waitlist;

pub use client::{Client, ClientError};
pub use error::ErrorBody;
