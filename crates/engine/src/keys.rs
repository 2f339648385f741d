//! The idempotency memory of hold requests: which hold a key made, for as long as a retry of
//! that request can arrive.
//!
//! Only holds need it. Confirm, release and return are idempotent by the hold's state (a sold
//! hold confirms again as `Confirmed`, a returned seat returns again as `Returned`), so they
//! leave nothing here. A hold's key is kept until the hold's deadline plus a grace
//! (`Limits::key_grace_ms`), then forgotten: memory follows the holds of the last half hour,
//! not the day's history.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use crate::command::IdemKey;

type FixedState = rustc_hash::FxBuildHasher;

/// What a key made: the request's fingerprint (a retry has the same one, a reuse another) and
/// the hold's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub fingerprint: u64,
    pub seq: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    what: Remembered,
    forget_at_ms: u64,
}

/// Parts the memory is split into, by the key's low bits: a hash map grows by rehashing all it
/// holds at once, and a million keys rehashed in one batch would stall the shard for tens of
/// milliseconds; a part holds 1/64 of them.
const PARTS: usize = 64;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Part {
    map: HashMap<IdemKey, Entry, FixedState>,
    /// (forget at, key), earliest first. A key re-pointed at a new hold has one entry per
    /// pointing; an entry whose time no longer matches the key's is skipped when popped.
    forget: BinaryHeap<Reverse<(u64, IdemKey)>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyMemory {
    parts: Vec<Part>,
    len: usize,
}

impl Default for KeyMemory {
    fn default() -> Self {
        KeyMemory { parts: vec![Part::default(); PARTS], len: 0 }
    }
}

impl KeyMemory {
    fn part(key: IdemKey) -> usize {
        (key as usize) % PARTS
    }

    pub fn get(&self, key: IdemKey) -> Option<Remembered> {
        self.parts[Self::part(key)].map.get(&key).map(|e| e.what)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Remember (or re-point) `key` until `forget_at_ms`.
    pub fn remember(&mut self, key: IdemKey, what: Remembered, forget_at_ms: u64) {
        let part = &mut self.parts[Self::part(key)];
        if part.map.insert(key, Entry { what, forget_at_ms }).is_none() {
            self.len += 1;
        }
        part.forget.push(Reverse((forget_at_ms, key)));
    }

    /// Forget every key whose time has come. Returns how many were forgotten.
    pub fn forget_due(&mut self, now_ms: u64) -> usize {
        let mut forgotten = 0;
        for part in &mut self.parts {
            while let Some(&Reverse((at, key))) = part.forget.peek() {
                if at > now_ms {
                    break;
                }
                part.forget.pop();
                if part.map.get(&key).is_some_and(|e| e.forget_at_ms == at) {
                    part.map.remove(&key);
                    forgotten += 1;
                }
            }
        }
        self.len -= forgotten;
        forgotten
    }

    /// Every key with what it made, sorted (digests and checks).
    pub fn sorted(&self) -> Vec<(IdemKey, Remembered, u64)> {
        let mut all: Vec<_> =
            self.parts.iter().flat_map(|p| p.map.iter().map(|(k, e)| (*k, e.what, e.forget_at_ms))).collect();
        all.sort_by_key(|(k, _, _)| *k);
        all
    }

    /// Entries waiting in the forget queues (at most one per pointing of a live key).
    pub fn queued(&self) -> usize {
        self.parts.iter().map(|p| p.forget.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_forgotten_at_their_time_and_a_repointed_key_keeps_its_new_time() {
        let mut keys = KeyMemory::default();
        keys.remember(1, Remembered { fingerprint: 7, seq: 0 }, 100);
        keys.remember(2, Remembered { fingerprint: 8, seq: 1 }, 200);
        keys.remember(1, Remembered { fingerprint: 7, seq: 2 }, 300);
        assert_eq!(keys.forget_due(150), 0, "key 1 was re-pointed until 300");
        assert_eq!(keys.get(1).unwrap().seq, 2);
        assert_eq!(keys.forget_due(250), 1);
        assert!(keys.get(2).is_none());
        assert_eq!(keys.forget_due(300), 1);
        assert!(keys.is_empty());
        assert_eq!(keys.queued(), 0);
    }
}
