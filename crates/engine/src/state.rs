//! The state machine of one shard: pure, single-threaded, deterministic.
//!
//! `apply(batch, now_ms)` is the only way state changes. There is no clock, no I/O and no
//! randomness inside: time comes in as `now_ms`, and replaying the same batches with the same
//! times rebuilds the same state, which is what the write-ahead log relies on.
//!
//! Memory follows what is live, not the day's history:
//! - a hold is kept while it is held (`live`); when it ends unpaid its record goes, and when it
//!   is sold its seats move to its runs' sold legs ([`crate::runs`]), kept until refunded or
//!   until the run retires;
//! - a hold request's key is kept until the hold's deadline plus a grace ([`crate::keys`]);
//!   confirm, release and return need no key: they are idempotent by the hold's state;
//! - runs leave with `Retire` once they have arrived.
//!
//! Reads (queries, invariant checks, digests) are in [`crate::reads`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::OnceLock;

use chepiao_domain::{RunId, SeatClass, ServiceDate, TrainType};
use serde::{Deserialize, Serialize};

use crate::command::*;
use crate::inventory::{Policy, SEGMENTS_MAX, SeatFacts, span_mask, takes_single};
use crate::keys::{KeyMemory, Remembered};
use crate::runs::{LEGS_PER_HOLD_CAP, PASSENGERS_PER_LEG_CAP, Runs, Seats, SoldLeg, sold_key};

/// Hold sequence numbers stay below this (a hold id is the sequence number shifted over the
/// shard byte, and a sold leg's key the sequence number over two bits of leg index).
pub const SEQ_END: u64 = 1 << 54;

/// Commands whose first cache lines are read ahead together (`StateMachine::warm`): enough to
/// overlap many misses, few enough that what they read is still cached when they run.
const WARM_CHUNK_LEN: usize = 32;

/// Runs one `Retire` command may name (besides those its date retires).
pub const RETIRE_RUNS_MAX: usize = 4_096;

/// Every bound the state machine enforces. Past one, a request is refused with
/// `Reject::Limit` and has no effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Runs with materialised inventory in one shard (the sale window's runs, plus those not
    /// yet retired).
    pub runs_max: u32,
    pub legs_per_hold_max: u8,
    pub passengers_per_leg_max: u8,
    pub hold_ttl_ms_min: u64,
    pub hold_ttl_ms_max: u64,
    /// Holds waiting for payment in one shard.
    pub holds_live_max: u32,
    /// Hold keys remembered in one shard.
    pub keys_max: u32,
    /// How long after its hold's deadline a key is still remembered.
    pub key_grace_ms: u64,
    /// Holds ended by expiry in one `apply` (a burst of deadlines is spread over batches, so
    /// no batch waits long behind them; a confirm checks the deadline itself).
    pub expiries_per_apply_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            runs_max: 200_000,
            legs_per_hold_max: 4,
            passengers_per_leg_max: 5,
            hold_ttl_ms_min: 1_000,
            hold_ttl_ms_max: 2 * 3600 * 1000,
            holds_live_max: 2_000_000,
            keys_max: 8_000_000,
            key_grace_ms: 15 * 60 * 1000,
            expiries_per_apply_max: 256,
        }
    }
}

/// What moving time did in one `advance`: deadlines popped (ended holds, or entries of holds
/// that had ended before) and keys forgotten.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Advanced {
    pub expired: u32,
    pub forgotten: u64,
}

impl Advanced {
    pub fn changed(&self) -> bool {
        self.expired > 0 || self.forgotten > 0
    }
}

/// One leg of a held hold: the run's slot and the seats taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Taken {
    pub run: u32,
    pub seats: Seats,
}

/// A hold waiting for payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Live {
    pub made_at_ms: u64,
    pub expires_at_ms: u64,
    pub legs: Vec<Taken>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateMachine {
    pub(crate) shard: u8,
    pub(crate) policy: Policy,
    pub(crate) limits: Limits,
    pub(crate) now_ms: u64,
    /// The next hold's sequence number (the hold id without its shard byte); never reused.
    pub(crate) next_seq: u64,
    pub(crate) runs: Runs,
    /// Held holds by sequence number: oldest first, so reconciliation reads a prefix.
    pub(crate) live: BTreeMap<u64, Live>,
    /// (deadline, seq) of held holds, earliest first. Entries of holds that ended before their
    /// deadline stay until popped and are then skipped.
    pub(crate) expiry: BinaryHeap<Reverse<(u64, u64)>>,
    pub(crate) keys: KeyMemory,
}

/// (coach, letter) per seat of one class.
type ClassFacts = (Vec<u8>, Vec<u8>);

/// Coach and letter per seat of each class of a train type, built once.
fn class_facts(t: TrainType) -> &'static [ClassFacts] {
    static FACTS: OnceLock<Vec<(TrainType, Vec<ClassFacts>)>> = OnceLock::new();
    let all = FACTS.get_or_init(|| {
        TrainType::ALL
            .iter()
            .map(|&t| {
                let layout = chepiao_domain::Layout::for_type(t);
                let per_class = layout
                    .class_ranges()
                    .iter()
                    .map(|r| {
                        let seats = r.first..r.first + r.len;
                        let coach = seats.clone().map(|i| layout.seat_at(i).map_or(0, |p| p.coach)).collect();
                        let letter = seats.map(|i| layout.seat_letter(i).unwrap_or(0)).collect();
                        (coach, letter)
                    })
                    .collect();
                (t, per_class)
            })
            .collect()
    });
    &all.iter().find(|(x, _)| *x == t).expect("every type has facts").1
}

/// FNV-1a, fed field by field.
pub(crate) struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
        self
    }
}

/// A stable fingerprint of a hold request, to tell a retry (same key, same request) from a
/// reuse (same key, another request). Written out field by field so it cannot change with a
/// library.
fn fingerprint(key: IdemKey, legs: &[LegRequest], ttl_ms: u64) -> u64 {
    let mut h = Fnv::new();
    h.bytes(&[0]).bytes(&key.to_le_bytes()).bytes(&ttl_ms.to_le_bytes());
    for l in legs {
        h.bytes(l.run.train.as_str().as_bytes()).bytes(&[0xff]);
        h.bytes(&l.run.date.days_from_ce().to_le_bytes());
        h.bytes(&[l.spec.train_type as u8, l.spec.segments, l.from, l.to, l.class as u8, l.passengers]);
        h.bytes(&l.prefs).bytes(&[0xfe]);
    }
    h.0
}

fn invalid<T>(message: impl Into<String>) -> Result<T, Reject> {
    Err(Reject::Invalid(message.into()))
}

impl StateMachine {
    pub fn new(shard: u8, limits: Limits) -> StateMachine {
        Self::with_policy(shard, limits, Policy::BestFit)
    }

    pub fn with_policy(shard: u8, limits: Limits, policy: Policy) -> StateMachine {
        assert!(usize::from(limits.passengers_per_leg_max) <= PASSENGERS_PER_LEG_CAP);
        assert!(usize::from(limits.legs_per_hold_max) <= LEGS_PER_HOLD_CAP);
        assert!(limits.expiries_per_apply_max >= 1);
        StateMachine {
            shard,
            policy,
            limits,
            now_ms: 0,
            next_seq: 1,
            runs: Runs::default(),
            live: BTreeMap::new(),
            expiry: BinaryHeap::new(),
            keys: KeyMemory::default(),
        }
    }

    pub fn shard(&self) -> u8 {
        self.shard
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Apply a batch at time `now_ms`: first expire due holds and forget old keys, then
    /// execute each command in order. Time never goes backwards: an earlier `now_ms` counts as
    /// the latest seen.
    pub fn apply(&mut self, batch: &[Command], now_ms: u64) -> Vec<Reply> {
        self.apply_counted(batch, now_ms).0
    }

    /// `apply`, also saying what moving time did first (the shard reports it for slow batches).
    pub fn apply_counted(&mut self, batch: &[Command], now_ms: u64) -> (Vec<Reply>, Advanced) {
        let advanced = self.advance(now_ms);
        let mut replies = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(WARM_CHUNK_LEN) {
            self.warm(chunk);
            replies.extend(chunk.iter().map(|c| self.execute(c)));
        }
        (replies, advanced)
    }

    /// Read, and throw away, the first cache lines each hold of `chunk` will need: its key's
    /// slot in the key memory, its runs' index entries, inventories and chosen class's pattern
    /// heads. Nothing here depends on another command, so the CPU overlaps these misses
    /// (executing a hold is a chain of misses, each waiting for the one before). Reads only.
    fn warm(&self, chunk: &[Command]) {
        for c in chunk {
            let Command::Hold { key, legs, .. } = c else { continue };
            std::hint::black_box(self.keys.get(*key));
            for leg in legs {
                let Some(slot) = self.runs.slot_of(&leg.run) else { continue };
                let run = self.runs.get(slot);
                let ranges = run.spec.layout().class_ranges();
                if let Some(class) = ranges.iter().position(|r| r.class == leg.class).and_then(|i| run.classes.get(i)) {
                    class.warm();
                }
            }
        }
    }

    /// Move time forward: end due holds (at most `expiries_per_apply_max`), forget keys past
    /// their time. Says what changed (when anything did, the shard logs the tick, so that a
    /// replay spreads the same expiries over the same batches).
    pub fn advance(&mut self, now_ms: u64) -> Advanced {
        self.now_ms = self.now_ms.max(now_ms);
        let mut popped = 0;
        while popped < self.limits.expiries_per_apply_max {
            let Some(&Reverse((at, seq))) = self.expiry.peek() else { break };
            if at > self.now_ms {
                break;
            }
            self.expiry.pop();
            popped += 1;
            if self.live.get(&seq).is_some_and(|h| h.expires_at_ms == at) {
                self.end_hold(seq);
            }
        }
        let forgotten = self.keys.forget_due(self.now_ms);
        Advanced { expired: popped, forgotten: forgotten as u64 }
    }

    fn execute(&mut self, cmd: &Command) -> Reply {
        let reply = match cmd {
            Command::Hold { key, legs, ttl_ms } => self.hold_keyed(*key, legs, *ttl_ms),
            Command::Confirm { hold, run } => self.confirm(*hold, run),
            Command::Release { hold, run } => self.release(*hold, run),
            Command::Return { hold, run, leg, passenger } => self.return_seat(*hold, run, *leg, *passenger),
            Command::Retire { before, runs } => self.retire(*before, runs),
            Command::Fence { next_seq } => self.fence(*next_seq),
        };
        reply.unwrap_or_else(Reply::Rejected)
    }

    /// A hold request under its key: a retry of a held hold gets the same answer; a retry of a
    /// sold one is told so; a retry after the hold ended unpaid holds anew (the first effect
    /// was undone, so there is still one).
    fn hold_keyed(&mut self, key: IdemKey, legs: &[LegRequest], ttl_ms: u64) -> Result<Reply, Reject> {
        let fingerprint = fingerprint(key, legs, ttl_ms);
        let known = self.keys.get(key);
        if let Some(known) = known {
            if known.fingerprint != fingerprint {
                return Err(Reject::KeyReused);
            }
            if let Some(h) = self.live.get(&known.seq) {
                if h.expires_at_ms > self.now_ms {
                    return Ok(Reply::Held(self.held_reply(known.seq)));
                }
                self.end_hold(known.seq);
            }
            if self.is_sold(known.seq, &legs[0].run) {
                return Err(Reject::AlreadySold);
            }
        } else if self.keys.len() >= self.limits.keys_max as usize {
            return Err(Reject::Limit(format!("{} hold keys remembered", self.limits.keys_max)));
        }
        let held = self.hold(legs, ttl_ms)?;
        let forget_at_ms = held.expires_at_ms.saturating_add(self.limits.key_grace_ms);
        self.keys.remember(key, Remembered { fingerprint, seq: held.hold >> 8 }, forget_at_ms);
        Ok(Reply::Held(held))
    }

    /// Whether hold `seq`, whose first leg is on `run`, is sold (and not wholly returned).
    fn is_sold(&self, seq: u64, run: &RunId) -> bool {
        self.runs.find(run).is_some_and(|r| r.sold.contains_key(&sold_key(seq, 0)))
    }

    /// The answer hold `seq` (held) was given: its id, deadline and seats.
    fn held_reply(&self, seq: u64) -> Held {
        self.reply_for(seq, &self.live[&seq])
    }

    fn reply_for(&self, seq: u64, rec: &Live) -> Held {
        let legs = rec
            .legs
            .iter()
            .map(|t| {
                let run = self.runs.get(t.run);
                let first = run.spec.layout().class_ranges()[t.seats.class as usize].first;
                t.seats.ids().iter().map(|s| first + s).collect()
            })
            .collect();
        Held { hold: seq << 8 | u64::from(self.shard), expires_at_ms: rec.expires_at_ms, legs }
    }

    /// The leg's class index, and its run's slot when the run is materialised.
    fn check_leg(&self, leg: &LegRequest) -> Result<(usize, Option<u32>), Reject> {
        let s = leg.spec.segments;
        if s == 0 || s > SEGMENTS_MAX {
            return invalid(format!("a run has 1 to {SEGMENTS_MAX} segments, not {s}"));
        }
        if !(leg.from < leg.to && leg.to <= s) {
            return invalid(format!("journey {}..{} is not within the run's {s} segments", leg.from, leg.to));
        }
        if leg.passengers == 0 || leg.passengers > self.limits.passengers_per_leg_max {
            return invalid(format!("1 to {} passengers per leg", self.limits.passengers_per_leg_max));
        }
        if leg.prefs.len() > leg.passengers as usize {
            return invalid("at most one seat preference per passenger");
        }
        let slot = self.runs.slot_of(&leg.run);
        if slot.is_none() && self.runs.is_retired(&leg.run) {
            return Err(Reject::RunRetired);
        }
        if slot.is_some_and(|s| self.runs.get(s).spec != leg.spec) {
            return invalid(format!("run {} does not match the inventory's consist", leg.run));
        }
        let ranges = leg.spec.layout().class_ranges();
        let class = ranges
            .iter()
            .position(|r| r.class == leg.class && r.len > 0)
            .ok_or_else(|| Reject::Invalid(format!("run {} has no {:?} class", leg.run, leg.class)))?;
        Ok((class, slot))
    }

    /// Hold every leg or none; the new hold's answer.
    fn hold(&mut self, legs: &[LegRequest], ttl_ms: u64) -> Result<Held, Reject> {
        if legs.is_empty() || legs.len() > self.limits.legs_per_hold_max as usize {
            return invalid(format!("1 to {} legs per hold", self.limits.legs_per_hold_max));
        }
        if !(self.limits.hold_ttl_ms_min..=self.limits.hold_ttl_ms_max).contains(&ttl_ms) {
            let (min, max) = (self.limits.hold_ttl_ms_min, self.limits.hold_ttl_ms_max);
            return invalid(format!("hold ttl must be {min} to {max} ms"));
        }
        if self.live.len() >= self.limits.holds_live_max as usize {
            return Err(Reject::Limit(format!("{} holds awaiting payment", self.limits.holds_live_max)));
        }
        let mut checked = [(0usize, None); LEGS_PER_HOLD_CAP];
        for (i, l) in legs.iter().enumerate() {
            checked[i] = self.check_leg(l)?;
        }
        let mut taken: Vec<Taken> = Vec::with_capacity(legs.len());
        for (i, (leg, &(class, slot))) in legs.iter().zip(&checked).enumerate() {
            match self.take(i as u8, leg, class, slot) {
                Ok(t) => taken.push(t),
                Err(reject) => {
                    // All legs or none: give back what earlier legs took.
                    for t in &taken {
                        self.give_back(t.run, &t.seats, |_| true);
                    }
                    return Err(reject);
                }
            }
        }
        let seq = self.next_seq;
        if seq >= SEQ_END {
            return Err(Reject::Limit("hold sequence numbers are used up".into()));
        }
        self.next_seq += 1;
        let expires_at_ms = self.now_ms + ttl_ms;
        let live = Live { made_at_ms: self.now_ms, expires_at_ms, legs: taken };
        let held = self.reply_for(seq, &live);
        self.live.insert(seq, live);
        self.expiry.push(Reverse((expires_at_ms, seq)));
        Ok(held)
    }

    /// One leg's seats; `slot` is its run's, if materialised (a second leg on the same new
    /// run finds it materialised by the first).
    fn take(&mut self, leg_i: u8, leg: &LegRequest, class: usize, slot: Option<u32>) -> Result<Taken, Reject> {
        let run = match slot {
            Some(slot) => slot,
            None => self.runs.materialise(&leg.run, leg.spec, self.limits.runs_max)?,
        };
        let layout = leg.spec.layout();
        let inv = self.runs.get_mut(run);
        if leg.class == SeatClass::Standing {
            let waits = layout.class_ranges().iter().position(|r| r.class == layout.standing_waits_on());
            if waits.is_some_and(|w| inv.classes[w].remaining(leg.from, leg.to) > 0) {
                return Err(Reject::StandingNotOnSale { leg: leg_i });
            }
        }
        let ci = &mut inv.classes[class];
        let not_enough = Reject::NotEnoughSeats { leg: leg_i };
        if takes_single(leg.passengers as usize, &leg.prefs, self.policy) {
            // The common request, chosen and taken in one step: one seat, no wish.
            let seat = ci.take_single(leg.from, leg.to).ok_or(not_enough)?;
            return Ok(Taken { run, seats: Seats::new(class as u8, leg.from, leg.to, &[seat]) });
        }
        let (coach, letter) = &class_facts(leg.spec.train_type)[class];
        let facts = SeatFacts { coach, letter };
        let chosen = ci.choose(leg.from, leg.to, leg.passengers as usize, &leg.prefs, &facts, self.policy);
        let seats = Seats::new(class as u8, leg.from, leg.to, &chosen.ok_or(not_enough)?);
        let need = span_mask(leg.from, leg.to);
        for &s in seats.ids() {
            ci.occupy(usize::from(s), need);
        }
        Ok(Taken { run, seats })
    }

    /// Vacate the seats of one leg for which `which(passenger)` holds.
    fn give_back(&mut self, run: u32, seats: &Seats, which: impl Fn(usize) -> bool) {
        let need = span_mask(seats.from, seats.to);
        let ci = &mut self.runs.get_mut(run).classes[seats.class as usize];
        for (p, &s) in seats.ids().iter().enumerate() {
            if which(p) {
                ci.vacate(s as usize, need);
            }
        }
    }

    /// The sequence number of `hold`, if this shard ever handed it out.
    fn seq_of(&self, hold: HoldId) -> Result<u64, Reject> {
        let seq = hold >> 8;
        if hold_shard(hold) != self.shard as usize || seq == 0 || seq >= self.next_seq {
            return Err(Reject::UnknownHold);
        }
        Ok(seq)
    }

    /// A held hold ends without a sale: its seats go back, exactly once (I3).
    fn end_hold(&mut self, seq: u64) {
        let rec = self.live.remove(&seq).expect("only a held hold ends");
        for t in &rec.legs {
            self.give_back(t.run, &t.seats, |_| true);
        }
    }

    /// Refuse a command naming another run than the hold's first leg's.
    fn check_first_run(&self, seq: u64, run: &RunId) -> Result<(), Reject> {
        let first = self.live[&seq].legs[0].run;
        if &self.runs.get(first).run != run {
            return invalid(format!("hold {seq}'s first leg is not on {run}"));
        }
        Ok(())
    }

    fn confirm(&mut self, hold: HoldId, run: &RunId) -> Result<Reply, Reject> {
        let seq = self.seq_of(hold)?;
        if let Some(h) = self.live.get(&seq) {
            let past = h.expires_at_ms <= self.now_ms;
            self.check_first_run(seq, run)?;
            if past {
                self.end_hold(seq);
                return Err(Reject::HoldEnded);
            }
            let h = self.live.remove(&seq).expect("checked above");
            for (i, t) in h.legs.iter().enumerate() {
                let sold = SoldLeg { seats: t.seats, returned: 0 };
                self.runs.get_mut(t.run).sold.insert(sold_key(seq, i as u8), sold);
            }
            return Ok(Reply::Confirmed);
        }
        if self.runs.is_retired(run) {
            return Err(Reject::RunRetired);
        }
        if self.is_sold(seq, run) { Ok(Reply::Confirmed) } else { Err(Reject::HoldEnded) }
    }

    fn release(&mut self, hold: HoldId, run: &RunId) -> Result<Reply, Reject> {
        let seq = self.seq_of(hold)?;
        if self.live.contains_key(&seq) {
            self.check_first_run(seq, run)?;
            self.end_hold(seq);
            return Ok(Reply::Released);
        }
        if self.is_sold(seq, run) { Err(Reject::AlreadySold) } else { Ok(Reply::Released) }
    }

    /// One seat of a sold leg back on sale. A seat already returned, or a leg of which
    /// nothing is sold any more, answers `Returned` and frees nothing (I3).
    fn return_seat(&mut self, hold: HoldId, run: &RunId, leg: u8, passenger: u8) -> Result<Reply, Reject> {
        let seq = self.seq_of(hold)?;
        if self.runs.is_retired(run) {
            return Err(Reject::RunRetired);
        }
        if self.live.contains_key(&seq) {
            return Err(Reject::NotSold);
        }
        if usize::from(leg) >= LEGS_PER_HOLD_CAP {
            return invalid(format!("a hold has at most {LEGS_PER_HOLD_CAP} legs"));
        }
        let Some(slot) = self.runs.slot_of(run) else { return Ok(Reply::Returned) };
        let key = sold_key(seq, leg);
        let Some(sold) = self.runs.get(slot).sold.get(&key).copied() else { return Ok(Reply::Returned) };
        if usize::from(passenger) >= sold.seats.ids().len() {
            return invalid(format!("hold {seq} has no passenger {passenger} on leg {leg}"));
        }
        if sold.returned & (1 << passenger) != 0 {
            return Ok(Reply::Returned);
        }
        self.give_back(slot, &sold.seats, |p| p == usize::from(passenger));
        let sold_legs = &mut self.runs.get_mut(slot).sold;
        let rec = sold_legs.get_mut(&key).expect("read above");
        rec.returned |= 1 << passenger;
        if rec.all_returned() {
            sold_legs.remove(&key);
        }
        Ok(Reply::Returned)
    }

    fn fence(&mut self, next_seq: u64) -> Result<Reply, Reject> {
        if next_seq >= SEQ_END {
            return invalid(format!("hold sequence numbers end at {SEQ_END}"));
        }
        self.next_seq = self.next_seq.max(next_seq);
        Ok(Reply::Fenced)
    }

    /// Runs leave the engine; their held holds end first (their seats on other runs go back).
    fn retire(&mut self, before: ServiceDate, runs: &[RunId]) -> Result<Reply, Reject> {
        if runs.len() > RETIRE_RUNS_MAX {
            return invalid(format!("at most {RETIRE_RUNS_MAX} runs per retire"));
        }
        if self.runs.retired().1 + runs.len() > self.limits.runs_max as usize {
            return Err(Reject::Limit(format!("{} runs retired early", self.limits.runs_max)));
        }
        let slots = self.runs.to_retire(before.days_from_ce(), runs);
        let doomed: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, h)| h.legs.iter().any(|t| slots.binary_search(&t.run).is_ok()))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in doomed {
            self.end_hold(seq);
        }
        for &slot in &slots {
            self.runs.remove(slot);
        }
        Ok(Reply::Retired { runs: slots.len() as u32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: TrainType, segments: u8) -> RunSpec {
        RunSpec { train_type: t, segments }
    }

    fn leg(run: &str, from: u8, to: u8, class: SeatClass, passengers: u8) -> LegRequest {
        LegRequest {
            run: run.parse().unwrap(),
            spec: spec(TrainType::G, 3),
            from,
            to,
            class,
            passengers,
            prefs: vec![],
        }
    }

    fn hold(key: u128, legs: Vec<LegRequest>) -> Command {
        Command::Hold { key, legs, ttl_ms: 60_000 }
    }

    fn held(r: &Reply) -> &Held {
        match r {
            Reply::Held(h) => h,
            other => panic!("expected a hold, got {other:?}"),
        }
    }

    fn remaining(sm: &StateMachine, run: &str, from: u8, to: u8) -> Vec<(SeatClass, u32)> {
        let q = Query::Remaining { run: run.parse().unwrap(), spec: spec(TrainType::G, 3), from, to };
        match sm.query(&q) {
            Answer::Remaining(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hold_confirm_release_return_and_expiry() {
        let mut sm = StateMachine::new(0, Limits::default());
        let r = sm.apply(&[hold(1, vec![leg("G1-20261122", 0, 3, SeatClass::Business, 2)])], 1_000);
        let h = held(&r[0]).clone();
        assert_eq!(h.legs[0].len(), 2);
        assert_eq!(remaining(&sm, "G1-20261122", 1, 2)[0], (SeatClass::Business, 16));
        let g1 = || -> RunId { "G1-20261122".parse().unwrap() };
        assert_eq!(sm.apply(&[Command::Confirm { hold: h.hold, run: g1() }], 2_000), [Reply::Confirmed]);
        // Sold holds do not expire; a sold hold is not released, it is returned seat by seat.
        sm.advance(1_000_000);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 3)[0].1, 16);
        assert_eq!(
            sm.apply(&[Command::Release { hold: h.hold, run: g1() }], 0),
            [Reply::Rejected(Reject::AlreadySold)]
        );
        let ret = Command::Return { hold: h.hold, run: g1(), leg: 0, passenger: 1 };
        assert_eq!(sm.apply(std::slice::from_ref(&ret), 0), [Reply::Returned]);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 3)[0].1, 17);
        // The same seat again: answered as done, seats not freed twice (I3).
        assert_eq!(sm.apply(&[ret], 0), [Reply::Returned]);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 3)[0].1, 17);
        assert_eq!(sm.size().sold_legs, 1);
        // The last seat back: nothing of the hold is kept.
        assert_eq!(
            sm.apply(&[Command::Return { hold: h.hold, run: g1(), leg: 0, passenger: 0 }], 0),
            [Reply::Returned]
        );
        assert_eq!(sm.size().sold_legs, 0);

        // An unpaid hold expires at its deadline and its seats come back.
        let now = sm.now_ms();
        let r = sm.apply(&[hold(6, vec![leg("G1-20261122", 0, 1, SeatClass::First, 1)])], now);
        let h2 = held(&r[0]).clone();
        assert_eq!(remaining(&sm, "G1-20261122", 0, 1)[1].1, 51);
        sm.advance(h2.expires_at_ms);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 1)[1].1, 52);
        let confirm = Command::Confirm { hold: h2.hold, run: "G1-20261122".parse().unwrap() };
        assert_eq!(sm.apply(&[confirm], 0), [Reply::Rejected(Reject::HoldEnded)]);
        assert_eq!(sm.size().live_holds, 0, "an ended hold leaves nothing behind");
        sm.check_invariants().unwrap();
    }

    #[test]
    fn retries_answer_the_same_and_reuse_is_refused() {
        let mut sm = StateMachine::new(0, Limits::default());
        let cmd = hold(9, vec![leg("G1-20261122", 0, 2, SeatClass::Second, 1)]);
        let first = sm.apply(std::slice::from_ref(&cmd), 0);
        let again = sm.apply(std::slice::from_ref(&cmd), 10);
        assert_eq!(first, again);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 2)[2].1, 539, "one effect");
        let other = hold(9, vec![leg("G1-20261122", 0, 2, SeatClass::Second, 2)]);
        assert_eq!(sm.apply(&[other], 0), [Reply::Rejected(Reject::KeyReused)]);
        // Sold, a retry is told so; the key is forgotten after the deadline and the grace.
        let h = held(&first[0]).clone();
        sm.apply(&[Command::Confirm { hold: h.hold, run: "G1-20261122".parse().unwrap() }], 20);
        assert_eq!(sm.apply(std::slice::from_ref(&cmd), 30), [Reply::Rejected(Reject::AlreadySold)]);
        assert_eq!(sm.size().keys, 1);
        sm.advance(h.expires_at_ms + Limits::default().key_grace_ms);
        assert_eq!(sm.size().keys, 0);
        sm.check_invariants().unwrap();
    }

    #[test]
    fn a_retry_after_the_hold_ended_unpaid_holds_again() {
        let mut sm = StateMachine::new(0, Limits::default());
        let cmd = hold(9, vec![leg("G1-20261122", 0, 2, SeatClass::Business, 1)]);
        let first = held(&sm.apply(std::slice::from_ref(&cmd), 0)[0]).clone();
        sm.apply(&[Command::Release { hold: first.hold, run: "G1-20261122".parse().unwrap() }], 1);
        let again = held(&sm.apply(std::slice::from_ref(&cmd), 2)[0]).clone();
        assert_ne!(again.hold, first.hold, "a new hold: the first one gave its seats back");
        assert_eq!(remaining(&sm, "G1-20261122", 0, 2)[0].1, 17, "one effect");
        sm.check_invariants().unwrap();
    }

    #[test]
    fn multi_leg_is_all_or_nothing() {
        let mut sm = StateMachine::new(0, Limits::default());
        let r = sm.apply(&[hold(1, vec![leg("G3-20261122", 0, 3, SeatClass::Business, 5)])], 0);
        held(&r[0]);
        for k in 2..4 {
            held(&sm.apply(&[hold(k, vec![leg("G3-20261122", 0, 3, SeatClass::Business, 5)])], 0)[0]);
        }
        // G3 has 3 of its 18 business seats left: a second leg of 4 fails...
        let two = hold(
            10,
            vec![leg("G1-20261122", 0, 3, SeatClass::Business, 2), leg("G3-20261122", 0, 3, SeatClass::Business, 4)],
        );
        assert_eq!(sm.apply(&[two], 0), [Reply::Rejected(Reject::NotEnoughSeats { leg: 1 })]);
        // ... and the first leg's seats were given back.
        assert_eq!(remaining(&sm, "G1-20261122", 0, 3)[0].1, 18);
        sm.check_invariants().unwrap();
    }

    #[test]
    fn standing_waits_for_second_class_to_sell_out() {
        let mut sm = StateMachine::new(0, Limits::default());
        let stand = || leg("G1-20261122", 0, 2, SeatClass::Standing, 1);
        assert_eq!(sm.apply(&[hold(1, vec![stand()])], 0), [Reply::Rejected(Reject::StandingNotOnSale { leg: 0 })]);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 2).last().unwrap(), &(SeatClass::Standing, 0));
        for k in 0..108 {
            held(&sm.apply(&[hold(100 + k, vec![leg("G1-20261122", 0, 2, SeatClass::Second, 5)])], 0)[0]);
        }
        assert_eq!(remaining(&sm, "G1-20261122", 0, 2).last().unwrap(), &(SeatClass::Standing, 60));
        held(&sm.apply(&[hold(2, vec![stand()])], 0)[0]);
        // Second class is still free on 2..3, so standing there is not on sale.
        assert_eq!(remaining(&sm, "G1-20261122", 2, 3).last().unwrap(), &(SeatClass::Standing, 0));
        sm.check_invariants().unwrap();
    }

    #[test]
    fn bad_requests_and_limits_have_no_effect() {
        let limits = Limits { runs_max: 1, ..Limits::default() };
        let mut sm = StateMachine::new(0, limits);
        let bad = [
            leg("G1-20261122", 2, 2, SeatClass::Second, 1),
            leg("G1-20261122", 0, 4, SeatClass::Second, 1),
            leg("G1-20261122", 0, 1, SeatClass::HardSleeper, 1),
            leg("G1-20261122", 0, 1, SeatClass::Second, 0),
            leg("G1-20261122", 0, 1, SeatClass::Second, 6),
        ];
        for (k, l) in bad.into_iter().enumerate() {
            let r = sm.apply(&[hold(k as u128, vec![l])], 0);
            assert!(matches!(r[0], Reply::Rejected(Reject::Invalid(_))), "{r:?}");
        }
        let short = Command::Hold { key: 50, legs: vec![leg("G1-20261122", 0, 1, SeatClass::Second, 1)], ttl_ms: 1 };
        assert!(matches!(sm.apply(&[short], 0)[0], Reply::Rejected(Reject::Invalid(_))));
        held(&sm.apply(&[hold(60, vec![leg("G1-20261122", 0, 1, SeatClass::Second, 1)])], 0)[0]);
        let r = sm.apply(&[hold(61, vec![leg("G3-20261122", 0, 1, SeatClass::Second, 1)])], 0);
        assert!(matches!(r[0], Reply::Rejected(Reject::Limit(_))), "{r:?}");
        assert_eq!(sm.size().runs, 1);
        let unknown = Command::Confirm { hold: 999 << 8, run: "G1-20261122".parse().unwrap() };
        assert_eq!(sm.apply(&[unknown], 0), [Reply::Rejected(Reject::UnknownHold)]);
        let too_far = Command::Fence { next_seq: SEQ_END };
        assert!(matches!(sm.apply(&[too_far], 0)[0], Reply::Rejected(Reject::Invalid(_))));
        sm.check_invariants().unwrap();
    }

    #[test]
    fn snapshot_round_trip_preserves_everything() {
        let mut sm = StateMachine::new(3, Limits::default());
        held(&sm.apply(&[hold(1, vec![leg("G1-20261122", 0, 2, SeatClass::Second, 3)])], 5)[0]);
        let bytes = postcard::to_stdvec(&sm).unwrap();
        let back: StateMachine = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.digest(), sm.digest());
        back.check_invariants().unwrap();
    }
}
