//! chepiao's seat-inventory engine: who gets which seat. No HTTP, no SQL.
//!
//! How the parts fit, from the inside out:
//! - [`inventory`]: one class of one run as seat × segment occupancy (masks grouped into
//!   patterns for best-fit, per-segment free bitsets for counts);
//! - [`runs`]: the runs a shard has inventory for, and the sold legs each keeps for refunds;
//!   [`keys`]: the hold keys remembered while a retry can arrive;
//! - [`state`]: the shard's pure state machine, `apply(batch, now_ms) -> replies`, with holds,
//!   expiry timers and limits; no clock, no I/O, no randomness; [`reads`]: its queries and
//!   invariant checks;
//! - [`wal`]: the shard's checksummed write-ahead log and snapshots, and recovery;
//! - [`shard`]: the thread that batches commands, applies them, syncs the log once per batch
//!   (group commit) and only then replies; [`snapshot`]: the thread that follows the log with
//!   a replica of the state and writes snapshots from it, so buyers never wait for one;
//! - [`replica`]: the same shard as one replica of a log shared by several nodes, and
//!   [`entry`]: what goes through that log (the log itself, on NATS JetStream, is
//!   `chepiao-cluster`'s);
//! - [`engine`]: the async handle the server uses; runs are spread over shards by hash;
//!   [`error`]: what it answers when it cannot do the work at all.
//! - [`quality`]: the allocation-quality simulation behind `chepiao bench allocation`.

pub mod command;
pub mod engine;
pub mod entry;
pub mod error;
pub mod inventory;
pub mod keys;
pub mod quality;
pub mod reads;
pub mod replica;
pub mod runs;
pub mod shard;
pub mod snapshot;
pub mod state;
pub mod wal;

pub use command::{
    Answer, Command, Held, HoldId, HoldState, IdemKey, LegRequest, LiveHold, Query, Reject, Reply, RunSpec, hold_shard,
};
pub use engine::{Engine, EngineConfig, FEED_LEN_MAX, HeldLeg, HoldOutcome, ShardFeed, engine_id, random_u64};
pub use entry::{Batch, Entry, Feed, Proposal};
pub use error::EngineError;
pub use reads::StateSize;
pub use replica::ReplicaConfig;
pub use shard::{Clock, ShardStats, system_clock};
pub use state::{Advanced, Limits, StateMachine};
