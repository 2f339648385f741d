//! What travels through a log shared by several replicas (see [`crate::replica`]): batches
//! going out as proposals, entries coming back in the log's order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::command::Command;

/// A batch as it travels through the log: who proposed it, and its commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The proposing node (random per process start); 0 for a tick.
    pub origin: u64,
    /// The proposal's number on its node (for a tick, the second it names).
    pub id: u64,
    pub commands: Vec<Command>,
}

impl Batch {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a batch always encodes")
    }

    /// Decode an entry's payload. An entry that does not decode is applied by every replica
    /// as a tick (the same on all of them), so one bad entry cannot split the replicas.
    pub fn decode(bytes: &[u8]) -> Option<Batch> {
        postcard::from_bytes(bytes).ok()
    }
}

/// One entry of the log, as its consumer delivers it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's position in its shard's log: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// The log's time for the entry, ms since the Unix epoch.
    pub time_ms: u64,
    pub batch: Batch,
}

/// What the log's side tells a shard.
pub enum Feed {
    Entry(Arc<Entry>),
    /// Proposal `id` could not be put in the log: its callers get `Unavailable`.
    Failed {
        id: u64,
        error: String,
    },
}

/// A batch for the log. `msg_id` names it for the log's deduplication: a retried publish of
/// the same proposal, or the same second's tick from several nodes, is stored once.
#[derive(Debug)]
pub struct Proposal {
    pub shard: u8,
    pub id: u64,
    pub msg_id: String,
    pub payload: Vec<u8>,
    /// A tick has no callers: if it fails, nobody is told.
    pub is_tick: bool,
}
