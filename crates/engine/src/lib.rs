//! chepiao's seat-inventory engine: who gets which seat. No HTTP, no SQL.
//!
//! How the parts fit, from the inside out:
//! - [`inventory`]: one class of one run as seat × segment occupancy (masks grouped into
//!   patterns for best-fit, per-segment free bitsets for counts);
//! - [`state`]: the shard's pure state machine, `apply(batch, now_ms) -> replies`, with holds,
//!   expiry timers, idempotency memory and limits; no clock, no I/O, no randomness;
//! - [`wal`]: the shard's checksummed write-ahead log and snapshots, and recovery;
//! - [`shard`]: the thread that batches commands, applies them, syncs the log once per batch
//!   (group commit) and only then replies;
//! - [`engine`]: the async handle the server uses; runs are spread over shards by hash;
//!   [`error`]: what it answers when it cannot do the work at all.
//! - [`quality`]: the allocation-quality simulation behind `chepiao bench allocation`.

pub mod command;
pub mod engine;
pub mod error;
pub mod inventory;
pub mod quality;
pub mod shard;
pub mod state;
pub mod wal;

pub use command::{Answer, Command, Held, HoldId, HoldState, IdemKey, LegRequest, Query, Reject, Reply, RunSpec};
pub use engine::{Engine, EngineConfig, HeldLeg, HoldOutcome};
pub use error::EngineError;
pub use shard::{Clock, system_clock};
pub use state::{Limits, StateMachine};
