//! chepiao's domain: the vocabulary every other crate speaks.
//!
//! - [`types`]: parse-don't-validate values (telecode, train code, service date, run id, money,
//!   seat class, train type). Holding one means it was checked.
//! - [`network`]: stations, trains and ordered stops, and the immutable in-memory index the
//!   server searches (station look-up, "trains calling at A then B on a date").
//! - [`layout`]: the coach consist of each train type, with seat labels and capacities.
//! - [`fare`]: fares in integer fen by class and distance.
//! - [`import`]: the importer for the real network data shipped in `data/rail`.
//!
//! No I/O beyond reading bytes it is handed, no async, no clock: callers pass "now" in.

pub mod fare;
pub mod import;
pub mod layout;
pub mod network;
pub mod types;

pub use layout::Layout;
pub use network::{Journey, Network, NetworkData, Station, Stop, Train};
pub use types::{ChinaTime, Fen, ParseError, RunId, SeatClass, ServiceDate, Telecode, TrainCode, TrainType};
