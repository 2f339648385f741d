//! The runs a shard has inventory for, and what each run has sold.
//!
//! A run is materialised on its first hold (an untouched run has its whole capacity free) and
//! leaves the engine when it is retired (it has arrived; SQL keeps what it sold). Slots of
//! retired runs are reused, so memory follows the runs on sale, not every run ever sold.
//!
//! A sold leg is kept with its run, compactly (`SoldLeg`), for as long as one of its seats
//! may still be returned by a refund: until every seat of it is returned or the run retires.
//! Each sold leg holds at least one seat segment of its run, so a run never keeps more sold
//! legs than it has seats times segments.

use std::collections::{HashMap, HashSet};

use chepiao_domain::RunId;
use serde::{Deserialize, Serialize};

use crate::command::{Reject, RunSpec};
use crate::inventory::ClassInventory;

type FixedState = rustc_hash::FxBuildHasher;

/// The most passengers a leg can ever carry (`Limits::passengers_per_leg_max` is at most this).
pub const PASSENGERS_PER_LEG_CAP: usize = 5;
/// The most legs a hold can ever have (`Limits::legs_per_hold_max` is at most this).
pub const LEGS_PER_HOLD_CAP: usize = 4;

/// A sold leg's key within its run: the hold's sequence number and the leg's index in it.
pub fn sold_key(seq: u64, leg: u8) -> u64 {
    debug_assert!(usize::from(leg) < LEGS_PER_HOLD_CAP && seq < 1 << 54);
    seq << 2 | u64::from(leg)
}

/// The seats one leg of a hold took in one class of one run, one per passenger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    pub class: u8,
    pub from: u8,
    pub to: u8,
    count: u8,
    /// Seat offsets within the class; the first `count` are used.
    ids: [u16; PASSENGERS_PER_LEG_CAP],
}

impl Seats {
    pub fn new(class: u8, from: u8, to: u8, seats: &[usize]) -> Seats {
        assert!(!seats.is_empty() && seats.len() <= PASSENGERS_PER_LEG_CAP);
        let mut ids = [0u16; PASSENGERS_PER_LEG_CAP];
        for (i, &s) in seats.iter().enumerate() {
            ids[i] = u16::try_from(s).expect("a class has fewer than 65,536 seats");
        }
        Seats { class, from, to, count: seats.len() as u8, ids }
    }

    pub fn ids(&self) -> &[u16] {
        &self.ids[..self.count as usize]
    }
}

/// A leg of a sold hold: its seats, and which passengers' seats were returned (bit p).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoldLeg {
    pub seats: Seats,
    pub returned: u8,
}

impl SoldLeg {
    pub fn all_returned(&self) -> bool {
        u32::from(self.returned).count_ones() == u32::from(self.seats.count)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInventory {
    pub run: RunId,
    pub spec: RunSpec,
    /// Parallel to `spec.layout().class_ranges()`.
    pub classes: Vec<ClassInventory>,
    /// By `sold_key`.
    pub sold: HashMap<u64, SoldLeg, FixedState>,
}

impl RunInventory {
    /// The most sold legs the run can keep: each takes at least one seat segment.
    pub fn sold_legs_max(&self) -> usize {
        self.classes.iter().map(|c| c.len()).sum::<usize>() * usize::from(self.spec.segments)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Runs {
    slots: Vec<Option<RunInventory>>,
    /// Slots of retired runs, reused last-in first-out (deterministic on replay).
    free: Vec<u32>,
    index: HashMap<RunId, u32, FixedState>,
    /// Runs dated before this day (days from the common era) have left the engine.
    floor_days: i32,
    /// Runs dated on or after the floor that left early (they arrived); dropped as the floor
    /// passes them, so at most the runs of the few days a journey can last.
    early: HashSet<RunId, FixedState>,
}

impl Runs {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn slot_of(&self, run: &RunId) -> Option<u32> {
        self.index.get(run).copied()
    }

    pub fn get(&self, slot: u32) -> &RunInventory {
        self.slots[slot as usize].as_ref().expect("a live slot")
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut RunInventory {
        self.slots[slot as usize].as_mut().expect("a live slot")
    }

    pub fn find(&self, run: &RunId) -> Option<&RunInventory> {
        self.slot_of(run).map(|s| self.get(s))
    }

    /// Whether `run` has left the engine for good (dated before the floor).
    pub fn is_retired(&self, run: &RunId) -> bool {
        run.date.days_from_ce() < self.floor_days || self.early.contains(run)
    }

    /// The floor (days from the common era) and the runs retired early above it.
    pub fn retired(&self) -> (i32, usize) {
        (self.floor_days, self.early.len())
    }

    /// The run's slot, materialising it (all seats free) on first use.
    pub fn materialise(&mut self, run: &RunId, spec: RunSpec, runs_max: u32) -> Result<u32, Reject> {
        if let Some(slot) = self.slot_of(run) {
            return Ok(slot);
        }
        if self.is_retired(run) {
            return Err(Reject::RunRetired);
        }
        if self.index.len() >= runs_max as usize {
            return Err(Reject::Limit(format!("{runs_max} runs in this shard")));
        }
        let classes =
            spec.layout().class_ranges().iter().map(|r| ClassInventory::new(r.len as usize, spec.segments)).collect();
        let inventory = RunInventory { run: run.clone(), spec, classes, sold: HashMap::default() };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(inventory);
                slot
            }
            None => {
                self.slots.push(Some(inventory));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(run.clone(), slot);
        Ok(slot)
    }

    /// The runs retired early, sorted (digests).
    pub fn early_sorted(&self) -> Vec<&RunId> {
        let mut early: Vec<_> = self.early.iter().collect();
        early.sort();
        early
    }

    /// Raise the floor to `before_days` and list the slots of the runs it retires, plus those
    /// of `runs`, sorted (the caller ends their live holds, then calls `remove`).
    pub fn to_retire(&mut self, before_days: i32, runs: &[RunId]) -> Vec<u32> {
        self.floor_days = self.floor_days.max(before_days);
        let floor = self.floor_days;
        self.early.retain(|r| r.date.days_from_ce() >= floor);
        self.early.extend(runs.iter().filter(|r| r.date.days_from_ce() >= floor).cloned());
        let mut slots: Vec<u32> = self
            .index
            .iter()
            .filter(|(run, _)| run.date.days_from_ce() < self.floor_days)
            .map(|(_, slot)| *slot)
            .chain(runs.iter().filter_map(|r| self.slot_of(r)))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// Drop a run's inventory and what it sold.
    pub fn remove(&mut self, slot: u32) {
        let inventory = self.slots[slot as usize].take().expect("a live slot");
        self.index.remove(&inventory.run);
        self.free.push(slot);
    }

    /// Every materialised run with its slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &RunInventory)> {
        self.slots.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| (i as u32, r)))
    }

    /// Sold legs kept over all runs.
    pub fn sold_legs(&self) -> usize {
        self.iter().map(|(_, r)| r.sold.len()).sum()
    }
}
