//! What the state machine answers without changing: queries (remaining places, seat maps,
//! held holds for reconciliation), its size, a digest for replay tests, and the invariant
//! check tests run after every step.

use std::cmp::Reverse;
use std::collections::HashSet;

use chepiao_domain::{RunId, SeatClass};

use crate::command::*;
use crate::inventory::{SEGMENTS_MAX, span_mask};
use crate::runs::{RunInventory, sold_key};
use crate::state::{Fnv, StateMachine};

/// How big a shard's state is (metrics, benchmarks, tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Runs with materialised inventory.
    pub runs: usize,
    /// Holds waiting for payment.
    pub live_holds: usize,
    /// Legs of sold holds kept for refunds.
    pub sold_legs: usize,
    /// Hold keys remembered.
    pub keys: usize,
    /// Hold sequence numbers handed out so far (the next one).
    pub next_seq: u64,
}

impl std::ops::Add for StateSize {
    type Output = StateSize;
    fn add(self, o: StateSize) -> StateSize {
        StateSize {
            runs: self.runs + o.runs,
            live_holds: self.live_holds + o.live_holds,
            sold_legs: self.sold_legs + o.sold_legs,
            keys: self.keys + o.keys,
            next_seq: self.next_seq.max(o.next_seq),
        }
    }
}

impl StateMachine {
    pub fn size(&self) -> StateSize {
        StateSize {
            runs: self.runs.len(),
            live_holds: self.live.len(),
            sold_legs: self.runs.sold_legs(),
            keys: self.keys.len(),
            next_seq: self.next_seq,
        }
    }

    /// Answer a read-only question.
    pub fn query(&self, q: &Query) -> Answer {
        match q {
            Query::Remaining { run, spec, from, to } => self.remaining(run, *spec, *from, *to),
            Query::SeatMap { run, spec, from, to, class } => self.seat_map(run, *spec, *from, *to, *class),
            Query::Hold { hold, run } => Answer::Hold(self.hold_state(*hold, run)),
            // The shard thread fills in the position (the state machine does not know it).
            Query::Digest { .. } => Answer::Digest { lsn: 0, digest: self.digest() },
            Query::LiveHolds { made_before_ms, after, limit } => {
                let limit = (*limit).min(LIVE_HOLDS_PAGE_MAX) as usize;
                let holds = self
                    .live
                    .range((after >> 8) + 1..)
                    .take_while(|(_, h)| h.made_at_ms < *made_before_ms)
                    .take(limit)
                    .map(|(seq, h)| LiveHold {
                        hold: seq << 8 | u64::from(self.shard),
                        run: self.runs.get(h.legs[0].run).run.clone(),
                        made_at_ms: h.made_at_ms,
                        expires_at_ms: h.expires_at_ms,
                    })
                    .collect();
                Answer::LiveHolds(holds)
            }
        }
    }

    fn hold_state(&self, hold: HoldId, run: &RunId) -> Option<HoldState> {
        let seq = hold >> 8;
        if hold_shard(hold) != self.shard as usize || seq == 0 || seq >= self.next_seq {
            return None;
        }
        if let Some(h) = self.live.get(&seq) {
            return Some(HoldState::Held { expires_at_ms: h.expires_at_ms });
        }
        let sold = self.runs.find(run).is_some_and(|r| r.sold.contains_key(&sold_key(seq, 0)));
        Some(if sold { HoldState::Sold } else { HoldState::Ended })
    }

    /// Remaining seats of every class for every journey (a, b) of a materialised run, in the
    /// order of `ClassInventory::remaining_all`; None for a run not materialised.
    pub fn remaining_all(&self, run: &RunId) -> Option<Vec<Vec<u32>>> {
        let inv = self.runs.find(run)?;
        let mut acc = Vec::new();
        let segments = inv.spec.segments as usize;
        let all = inv
            .classes
            .iter()
            .map(|c| {
                let mut out = Vec::with_capacity(segments * (segments + 1) / 2);
                c.remaining_all(&mut out, &mut acc);
                out
            })
            .collect();
        Some(all)
    }

    /// The run's inventory: `Ok(None)` for a run untouched so far (all free); `Err` for a bad
    /// journey or consist.
    fn inventory(&self, run: &RunId, spec: RunSpec, from: u8, to: u8) -> Result<Option<&RunInventory>, String> {
        if spec.segments == 0 || spec.segments > SEGMENTS_MAX || !(from < to && to <= spec.segments) {
            return Err(format!("journey {from}..{to} is not within the run's {} segments", spec.segments));
        }
        match self.runs.find(run) {
            Some(inv) if inv.spec != spec => Err(format!("run {run} does not match its consist")),
            found => Ok(found),
        }
    }

    fn remaining(&self, run: &RunId, spec: RunSpec, from: u8, to: u8) -> Answer {
        let inv = match self.inventory(run, spec, from, to) {
            Ok(inv) => inv,
            Err(e) => return Answer::Invalid(e),
        };
        let retired = self.runs.is_retired(run);
        let layout = spec.layout();
        let ranges = layout.class_ranges();
        let counts: Vec<u32> = (0..ranges.len())
            .map(|i| match inv {
                _ if retired => 0,
                Some(inv) => inv.classes[i].remaining(from, to),
                None => u32::from(ranges[i].len),
            })
            .collect();
        let waits = ranges.iter().position(|r| r.class == layout.standing_waits_on());
        let seated_left = waits.is_some_and(|w| counts[w] > 0);
        let out = ranges
            .iter()
            .zip(counts)
            .filter(|(r, _)| r.len > 0)
            .map(|(r, n)| match r.class {
                SeatClass::Standing if seated_left => (r.class, 0),
                _ => (r.class, n),
            })
            .collect();
        Answer::Remaining(out)
    }

    fn seat_map(&self, run: &RunId, spec: RunSpec, from: u8, to: u8, class: SeatClass) -> Answer {
        let inv = match self.inventory(run, spec, from, to) {
            Ok(inv) => inv,
            Err(e) => return Answer::Invalid(e),
        };
        let ranges = spec.layout().class_ranges();
        let Some(i) = ranges.iter().position(|r| r.class == class && r.len > 0) else {
            return Answer::Invalid(format!("run {run} has no {class:?} class"));
        };
        let need = span_mask(from, to);
        let retired = self.runs.is_retired(run);
        let free = (0..ranges[i].len as usize)
            .map(|s| !retired && inv.is_none_or(|inv| inv.classes[i].is_free(s, need)))
            .collect();
        Answer::SeatMap { first_seat: ranges[i].first, free }
    }

    /// A digest of the whole state, independent of hash-map order (tests compare replays).
    pub fn digest(&self) -> u64 {
        let runs: Vec<_> = self
            .runs
            .iter()
            .map(|(slot, run)| {
                let mut sold: Vec<_> = run.sold.iter().collect();
                sold.sort_by_key(|(k, _)| **k);
                (slot, &run.run, run.spec, &run.classes, sold)
            })
            .collect();
        let mut expiry: Vec<_> = self.expiry.iter().map(|Reverse(t)| *t).collect();
        expiry.sort_unstable();
        let retired = (self.runs.retired().0, self.runs.early_sorted());
        let parts = (self.shard, self.now_ms, self.next_seq, retired, runs, &self.live, expiry, self.keys.sorted());
        let bytes = postcard::to_stdvec(&parts).expect("state encodes");
        Fnv::new().bytes(&bytes).0
    }
}

impl StateMachine {
    /// Everything the state must satisfy, checked from scratch (tests; slow). I1: no seat
    /// segment is taken twice, and the inventory is exactly what held holds and sold legs take.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected: Vec<Option<Vec<Vec<u64>>>> = Vec::new();
        for (slot, run) in self.runs.iter() {
            expected.resize(expected.len().max(slot as usize + 1), None);
            expected[slot as usize] = Some(run.classes.iter().map(|c| vec![0; c.len()]).collect());
        }
        let mut take = |run: u32, class: u8, seat: u16, need: u64, what: &str| -> Result<(), String> {
            let classes = expected.get_mut(run as usize).and_then(|c| c.as_mut());
            let classes = classes.ok_or_else(|| format!("{what} is on a run that is not materialised"))?;
            let m = &mut classes[class as usize][seat as usize];
            if *m & need != 0 {
                return Err(format!("I1: seat {seat} of run slot {run} taken twice ({what})"));
            }
            *m |= need;
            Ok(())
        };
        self.check_live(&mut take)?;
        for (slot, run) in self.runs.iter() {
            check_sold(slot, run, &mut take)?;
        }
        for (slot, run) in self.runs.iter() {
            let want = expected[slot as usize].as_ref().expect("filled above");
            for (c, class) in run.classes.iter().enumerate() {
                class.check_consistent()?;
                for (s, want) in want[c].iter().enumerate() {
                    if class.mask(s) != *want {
                        return Err(format!(
                            "run {} class {c} seat {s}: {:#x}, holds {want:#x}",
                            run.run,
                            class.mask(s)
                        ));
                    }
                }
            }
        }
        self.check_keys()
    }

    fn check_live(&self, take: &mut impl FnMut(u32, u8, u16, u64, &str) -> Result<(), String>) -> Result<(), String> {
        if self.live.len() > self.limits.holds_live_max as usize {
            return Err(format!("{} live holds, limit {}", self.live.len(), self.limits.holds_live_max));
        }
        let timers: HashSet<(u64, u64)> = self.expiry.iter().map(|Reverse(t)| *t).collect();
        let backlog = self.expiry.peek().is_some_and(|Reverse((at, _))| *at <= self.now_ms);
        for (&seq, h) in &self.live {
            if seq == 0 || seq >= self.next_seq {
                return Err(format!("held hold {seq} is outside 1..{}", self.next_seq));
            }
            if !timers.contains(&(h.expires_at_ms, seq)) {
                return Err(format!("held hold {seq} has no expiry timer"));
            }
            if h.expires_at_ms <= self.now_ms && !backlog {
                return Err(format!("held hold {seq} is past its deadline with no expiry pending"));
            }
            for t in &h.legs {
                let need = span_mask(t.seats.from, t.seats.to);
                for &s in t.seats.ids() {
                    take(t.run, t.seats.class, s, need, &format!("held hold {seq}"))?;
                }
            }
        }
        Ok(())
    }

    fn check_keys(&self) -> Result<(), String> {
        if self.keys.len() > self.limits.keys_max as usize {
            return Err(format!("{} keys, limit {}", self.keys.len(), self.limits.keys_max));
        }
        for (key, what, forget_at) in self.keys.sorted() {
            if what.seq == 0 || what.seq >= self.next_seq {
                return Err(format!("key {key:x} points at hold {} never made", what.seq));
            }
            if forget_at <= self.now_ms {
                return Err(format!("key {key:x} outlived its time"));
            }
        }
        Ok(())
    }
}

fn check_sold(
    slot: u32,
    run: &RunInventory,
    take: &mut impl FnMut(u32, u8, u16, u64, &str) -> Result<(), String>,
) -> Result<(), String> {
    if run.sold.len() > run.sold_legs_max() {
        return Err(format!("run {} keeps {} sold legs, more than its seat segments", run.run, run.sold.len()));
    }
    for (&key, sold) in &run.sold {
        if sold.all_returned() {
            return Err(format!("run {}: sold leg {key} is wholly returned but kept", run.run));
        }
        let need = span_mask(sold.seats.from, sold.seats.to);
        for (p, &s) in sold.seats.ids().iter().enumerate() {
            if sold.returned & (1 << p) == 0 {
                take(slot, sold.seats.class, s, need, &format!("sold leg {key}"))?;
            }
        }
        debug_assert_eq!(sold_key(key >> 2, (key & 3) as u8), key);
    }
    Ok(())
}
