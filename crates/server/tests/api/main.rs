//! HTTP tests: each test starts its own server on port 0 over its own fresh database and
//! speaks to it over the wire. One test binary for the crate (modules below) keeps link time down.

mod after_sale;
mod checkin;
mod helpers;
mod inventory;
mod nats;
mod network;
mod orders;
mod queue;
mod refund;
mod robustness;
mod users;
