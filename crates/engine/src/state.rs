//! The state machine of one shard: pure, single-threaded, deterministic.
//!
//! `apply(batch, now_ms)` is the only way state changes. There is no clock, no I/O and no
//! randomness inside: time comes in as `now_ms`, and replaying the same batches with the same
//! times rebuilds the same state, which is what the write-ahead log relies on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::OnceLock;

use chepiao_domain::{RunId, SeatClass, TrainType};
use serde::{Deserialize, Serialize};

use crate::command::*;
use crate::inventory::{ClassInventory, Policy, SEGMENTS_MAX, SeatFacts, span_mask};

/// FxHash: fast and unseeded, so the same insertions give the same maps on every replay.
/// (Keys are hold ids, run ids and idempotency keys the server derives, not raw client input.)
type FixedState = rustc_hash::FxBuildHasher;

/// Every bound the state machine enforces. Past one, a request is refused with
/// `Reject::Limit` and has no effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Runs with materialised inventory in one shard.
    pub runs_max: u32,
    pub legs_per_hold_max: u8,
    pub passengers_per_leg_max: u8,
    pub hold_ttl_ms_min: u64,
    pub hold_ttl_ms_max: u64,
    /// Holds waiting for payment in one shard.
    pub holds_live_max: u32,
    /// Idempotency keys remembered in one shard.
    pub idempotency_keys_max: u32,
    /// How long a key's answer is remembered.
    pub idempotency_ttl_ms: u64,
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
            idempotency_keys_max: 4_000_000,
            idempotency_ttl_ms: 24 * 3600 * 1000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RunInventory {
    run: RunId,
    spec: RunSpec,
    /// Parallel to `spec.layout().class_ranges()`.
    classes: Vec<ClassInventory>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HeldLeg {
    run: u32,
    class: u8,
    from: u8,
    to: u8,
    /// Seat offsets within the class, one per passenger: the first `count` entries. Inline,
    /// so that a hold record costs no allocation per leg.
    seat_ids: [u16; PASSENGERS_PER_LEG_CAP],
    count: u8,
    /// Bit p set: passenger p's seat was returned.
    returned: u8,
}

impl HeldLeg {
    fn seats(&self) -> &[u16] {
        &self.seat_ids[..self.count as usize]
    }
}

/// The most passengers a leg can ever carry (`Limits::passengers_per_leg_max` is at most this).
pub const PASSENGERS_PER_LEG_CAP: usize = 8;
/// The most legs a hold can ever have (`Limits::legs_per_hold_max` is at most this).
pub const LEGS_PER_HOLD_CAP: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HoldRecord {
    state: HoldState,
    expires_at_ms: u64,
    /// Kept after the hold ends (its seats are free again), so a retried hold request gets
    /// the answer it got the first time.
    legs: Vec<HeldLeg>,
}

/// A remembered answer. A hold's answer is rebuilt from its record instead of being copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Cached {
    Held(u64),
    Reply(Reply),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateMachine {
    shard: u8,
    policy: Policy,
    limits: Limits,
    now_ms: u64,
    run_index: HashMap<RunId, u32, FixedState>,
    runs: Vec<RunInventory>,
    /// Every hold ever made, by sequence number (the hold id without its shard byte).
    holds: Vec<HoldRecord>,
    /// (deadline, hold seq) of held holds, earliest first. Entries of holds confirmed or
    /// released before their deadline stay until popped and are then skipped.
    expiry: BinaryHeap<Reverse<(u64, u64)>>,
    live_holds: u32,
    keys: HashMap<IdemKey, (u64, Cached), FixedState>,
    key_order: VecDeque<(u64, IdemKey)>,
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
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
        self
    }
}

/// A stable fingerprint of a command, to tell a retry (same key, same request) from a reuse
/// (same key, another request). Written out field by field so it cannot change with a library.
fn fingerprint(cmd: &Command) -> u64 {
    let mut h = Fnv(0xcbf29ce484222325);
    match cmd {
        Command::Hold { key, legs, ttl_ms } => {
            h.bytes(&[0]).bytes(&key.to_le_bytes()).bytes(&ttl_ms.to_le_bytes());
            for l in legs {
                h.bytes(l.run.train.as_str().as_bytes()).bytes(&[0xff]);
                h.bytes(&l.run.date.days_from_ce().to_le_bytes());
                h.bytes(&[l.spec.train_type as u8, l.spec.segments, l.from, l.to, l.class as u8, l.passengers]);
                h.bytes(&l.prefs).bytes(&[0xfe]);
            }
        }
        Command::Confirm { key, hold } => {
            h.bytes(&[1]).bytes(&key.to_le_bytes()).bytes(&hold.to_le_bytes());
        }
        Command::Release { key, hold } => {
            h.bytes(&[2]).bytes(&key.to_le_bytes()).bytes(&hold.to_le_bytes());
        }
        Command::Return { key, hold, leg, passenger } => {
            h.bytes(&[3]).bytes(&key.to_le_bytes()).bytes(&hold.to_le_bytes()).bytes(&[*leg, *passenger]);
        }
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
        StateMachine {
            shard,
            policy,
            limits,
            now_ms: 0,
            run_index: HashMap::default(),
            runs: Vec::new(),
            holds: Vec::new(),
            expiry: BinaryHeap::new(),
            live_holds: 0,
            keys: HashMap::default(),
            key_order: VecDeque::new(),
        }
    }

    pub fn shard(&self) -> u8 {
        self.shard
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Runs whose inventory exists (the others are untouched: remaining = capacity).
    pub fn materialised_runs(&self) -> usize {
        self.runs.len()
    }

    pub fn holds_made(&self) -> usize {
        self.holds.len()
    }

    /// Apply a batch at time `now_ms`: first expire holds and forget old keys, then execute
    /// each command in order. Time never goes backwards: an earlier `now_ms` counts as the
    /// latest seen.
    pub fn apply(&mut self, batch: &[Command], now_ms: u64) -> Vec<Reply> {
        self.advance(now_ms);
        batch.iter().map(|c| self.execute(c)).collect()
    }

    /// Move time forward: expire due holds, forget keys past their time.
    pub fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        while let Some(&Reverse((at, seq))) = self.expiry.peek() {
            if at > self.now_ms {
                break;
            }
            self.expiry.pop();
            if self.holds[seq as usize].state == HoldState::Held {
                self.end_hold(seq, HoldState::Expired);
            }
        }
        while let Some(&(at, key)) = self.key_order.front() {
            if at.saturating_add(self.limits.idempotency_ttl_ms) > self.now_ms {
                break;
            }
            self.key_order.pop_front();
            self.keys.remove(&key);
        }
    }

    fn execute(&mut self, cmd: &Command) -> Reply {
        let fp = fingerprint(cmd);
        if let Some((known, cached)) = self.keys.get(&cmd.key()) {
            if *known != fp {
                return Reply::Rejected(Reject::KeyReused);
            }
            return match cached {
                Cached::Held(seq) => Reply::Held(self.held_reply(*seq)),
                Cached::Reply(r) => r.clone(),
            };
        }
        if self.keys.len() >= self.limits.idempotency_keys_max as usize {
            return Reply::Rejected(Reject::Limit("idempotency key memory is full".into()));
        }
        let reply = match cmd {
            Command::Hold { legs, ttl_ms, .. } => self.hold(legs, *ttl_ms),
            Command::Confirm { hold, .. } => self.confirm(*hold),
            Command::Release { hold, .. } => self.release(*hold),
            Command::Return { hold, leg, passenger, .. } => self.return_seat(*hold, *leg, *passenger),
        };
        let reply = reply.unwrap_or_else(Reply::Rejected);
        // A refusal for a limit had no effect; a retry may succeed, so it is not remembered.
        let cached = match &reply {
            Reply::Rejected(Reject::Limit(_)) => return reply,
            Reply::Held(h) => Cached::Held(h.hold >> 8),
            other => Cached::Reply(other.clone()),
        };
        self.keys.insert(cmd.key(), (fp, cached));
        self.key_order.push_back((self.now_ms, cmd.key()));
        reply
    }

    /// The answer hold `seq` was given: its id, deadline and seats.
    fn held_reply(&self, seq: u64) -> Held {
        let rec = &self.holds[seq as usize];
        let legs = rec
            .legs
            .iter()
            .map(|h| {
                let first = self.runs[h.run as usize].spec.layout().class_ranges()[h.class as usize].first;
                h.seats().iter().map(|s| first + s).collect()
            })
            .collect();
        Held { hold: seq << 8 | u64::from(self.shard), expires_at_ms: rec.expires_at_ms, legs }
    }

    fn check_leg(&self, leg: &LegRequest) -> Result<usize, Reject> {
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
        if let Some(&i) = self.run_index.get(&leg.run)
            && self.runs[i as usize].spec != leg.spec
        {
            return invalid(format!("run {} does not match the inventory's consist", leg.run));
        }
        let ranges = leg.spec.layout().class_ranges();
        ranges
            .iter()
            .position(|r| r.class == leg.class && r.len > 0)
            .ok_or_else(|| Reject::Invalid(format!("run {} has no {:?} class", leg.run, leg.class)))
    }

    fn materialise(&mut self, run: &RunId, spec: RunSpec) -> Result<u32, Reject> {
        if let Some(&i) = self.run_index.get(run) {
            return Ok(i);
        }
        if self.runs.len() >= self.limits.runs_max as usize {
            return Err(Reject::Limit(format!("{} runs in this shard", self.limits.runs_max)));
        }
        let classes =
            spec.layout().class_ranges().iter().map(|r| ClassInventory::new(r.len as usize, spec.segments)).collect();
        let i = self.runs.len() as u32;
        self.runs.push(RunInventory { run: run.clone(), spec, classes });
        self.run_index.insert(run.clone(), i);
        Ok(i)
    }

    fn hold(&mut self, legs: &[LegRequest], ttl_ms: u64) -> Result<Reply, Reject> {
        if legs.is_empty() || legs.len() > self.limits.legs_per_hold_max as usize {
            return invalid(format!("1 to {} legs per hold", self.limits.legs_per_hold_max));
        }
        if !(self.limits.hold_ttl_ms_min..=self.limits.hold_ttl_ms_max).contains(&ttl_ms) {
            return invalid(format!(
                "hold ttl must be {} to {} ms",
                self.limits.hold_ttl_ms_min, self.limits.hold_ttl_ms_max
            ));
        }
        if self.live_holds >= self.limits.holds_live_max {
            return Err(Reject::Limit(format!("{} holds awaiting payment", self.limits.holds_live_max)));
        }
        let mut classes = [0usize; LEGS_PER_HOLD_CAP];
        for (i, l) in legs.iter().enumerate() {
            classes[i] = self.check_leg(l)?;
        }
        let mut taken: Vec<HeldLeg> = Vec::with_capacity(legs.len());
        for (i, (leg, &class)) in legs.iter().zip(&classes).enumerate() {
            match self.take(i as u8, leg, class) {
                Ok(h) => taken.push(h),
                Err(reject) => {
                    // All legs or none: give back what earlier legs took.
                    for h in &taken {
                        self.give_back(h, |_| true);
                    }
                    return Err(reject);
                }
            }
        }
        let seq = self.holds.len() as u64;
        let expires_at_ms = self.now_ms + ttl_ms;
        self.holds.push(HoldRecord { state: HoldState::Held, expires_at_ms, legs: taken });
        self.expiry.push(Reverse((expires_at_ms, seq)));
        self.live_holds += 1;
        Ok(Reply::Held(self.held_reply(seq)))
    }

    fn take(&mut self, leg_i: u8, leg: &LegRequest, class: usize) -> Result<HeldLeg, Reject> {
        let run = self.materialise(&leg.run, leg.spec)?;
        let layout = leg.spec.layout();
        let inv = &mut self.runs[run as usize];
        if leg.class == SeatClass::Standing {
            let waits = layout.class_ranges().iter().position(|r| r.class == layout.standing_waits_on());
            if waits.is_some_and(|w| inv.classes[w].remaining(leg.from, leg.to) > 0) {
                return Err(Reject::StandingNotOnSale { leg: leg_i });
            }
        }
        let (coach, letter) = &class_facts(leg.spec.train_type)[class];
        let facts = SeatFacts { coach, letter };
        let ci = &mut inv.classes[class];
        let seats = ci
            .choose(leg.from, leg.to, leg.passengers as usize, &leg.prefs, &facts, self.policy)
            .ok_or(Reject::NotEnoughSeats { leg: leg_i })?;
        let need = span_mask(leg.from, leg.to);
        let mut seat_ids = [0u16; PASSENGERS_PER_LEG_CAP];
        for (i, &s) in seats.iter().enumerate() {
            ci.occupy(s, need);
            seat_ids[i] = s as u16;
        }
        Ok(HeldLeg {
            run,
            class: class as u8,
            from: leg.from,
            to: leg.to,
            seat_ids,
            count: seats.len() as u8,
            returned: 0,
        })
    }

    /// Vacate the seats of `leg` for which `which(passenger)` holds.
    fn give_back(&mut self, leg: &HeldLeg, which: impl Fn(usize) -> bool) {
        let need = span_mask(leg.from, leg.to);
        let ci = &mut self.runs[leg.run as usize].classes[leg.class as usize];
        for (p, &s) in leg.seats().iter().enumerate() {
            if which(p) && leg.returned & (1 << p) == 0 {
                ci.vacate(s as usize, need);
            }
        }
    }

    fn record(&self, hold: HoldId) -> Result<u64, Reject> {
        let seq = hold >> 8;
        if hold_shard(hold) != self.shard as usize || seq >= self.holds.len() as u64 {
            return Err(Reject::UnknownHold);
        }
        Ok(seq)
    }

    /// A held hold ends without a sale: its seats go back, exactly once (I3).
    fn end_hold(&mut self, seq: u64, end: HoldState) {
        let rec = &mut self.holds[seq as usize];
        assert_eq!(rec.state, HoldState::Held, "only a held hold can be released or expire");
        rec.state = end;
        let legs = std::mem::take(&mut rec.legs);
        for leg in &legs {
            self.give_back(leg, |_| true);
        }
        self.holds[seq as usize].legs = legs;
        self.live_holds -= 1;
    }

    fn confirm(&mut self, hold: HoldId) -> Result<Reply, Reject> {
        let seq = self.record(hold)?;
        let rec = &mut self.holds[seq as usize];
        match rec.state {
            HoldState::Held => {
                rec.state = HoldState::Sold;
                self.live_holds -= 1;
                Ok(Reply::Confirmed)
            }
            HoldState::Sold => Ok(Reply::Confirmed),
            HoldState::Released => Err(Reject::HoldReleased),
            HoldState::Expired => Err(Reject::HoldExpired),
        }
    }

    fn release(&mut self, hold: HoldId) -> Result<Reply, Reject> {
        let seq = self.record(hold)?;
        let rec = &self.holds[seq as usize];
        match rec.state {
            HoldState::Held => {
                self.end_hold(seq, HoldState::Released);
                Ok(Reply::Released)
            }
            HoldState::Released | HoldState::Expired => Ok(Reply::Released),
            HoldState::Sold => Err(Reject::AlreadySold),
        }
    }

    fn return_seat(&mut self, hold: HoldId, leg: u8, passenger: u8) -> Result<Reply, Reject> {
        let seq = self.record(hold)?;
        let rec = &self.holds[seq as usize];
        if rec.state != HoldState::Sold {
            return Err(Reject::NotSold);
        }
        let Some(l) = rec.legs.get(leg as usize) else { return invalid(format!("the hold has no leg {leg}")) };
        if passenger as usize >= l.seats().len() {
            return invalid(format!("leg {leg} has no passenger {passenger}"));
        }
        if l.returned & (1 << passenger) != 0 {
            return Err(Reject::AlreadyReturned);
        }
        let l = l.clone();
        self.give_back(&l, |p| p == passenger as usize);
        self.holds[seq as usize].legs[leg as usize].returned |= 1 << passenger;
        Ok(Reply::Returned)
    }

    /// Remaining seats of every class for every journey (a, b) of a materialised run, in the
    /// order of `ClassInventory::remaining_all`; None for a run not materialised.
    pub fn remaining_all(&self, run: &RunId) -> Option<Vec<Vec<u32>>> {
        let inv = &self.runs[*self.run_index.get(run)? as usize];
        let mut acc = Vec::new();
        Some(
            inv.classes
                .iter()
                .map(|c| {
                    let mut out = Vec::with_capacity(inv.spec.segments as usize * (inv.spec.segments as usize + 1) / 2);
                    c.remaining_all(&mut out, &mut acc);
                    out
                })
                .collect(),
        )
    }

    /// Answer a read-only question.
    pub fn query(&self, q: &Query) -> Answer {
        match q {
            Query::Remaining { run, spec, from, to } => self.remaining(run, *spec, *from, *to),
            Query::SeatMap { run, spec, from, to, class } => self.seat_map(run, *spec, *from, *to, *class),
            Query::Hold { hold } => Answer::Hold(self.record(*hold).ok().map(|seq| {
                let r = &self.holds[seq as usize];
                (r.state, r.expires_at_ms)
            })),
        }
    }

    fn inventory(&self, run: &RunId, spec: RunSpec, from: u8, to: u8) -> Result<Option<&RunInventory>, String> {
        if spec.segments == 0 || spec.segments > SEGMENTS_MAX || !(from < to && to <= spec.segments) {
            return Err(format!("journey {from}..{to} is not within the run's {} segments", spec.segments));
        }
        match self.run_index.get(run) {
            Some(&i) if self.runs[i as usize].spec != spec => Err(format!("run {run} does not match its consist")),
            Some(&i) => Ok(Some(&self.runs[i as usize])),
            None => Ok(None),
        }
    }

    fn remaining(&self, run: &RunId, spec: RunSpec, from: u8, to: u8) -> Answer {
        let inv = match self.inventory(run, spec, from, to) {
            Ok(inv) => inv,
            Err(e) => return Answer::Invalid(e),
        };
        let layout = spec.layout();
        let ranges = layout.class_ranges();
        let counts: Vec<u32> = (0..ranges.len())
            .map(|i| inv.map_or(u32::from(ranges[i].len), |inv| inv.classes[i].remaining(from, to)))
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
        let free = (0..ranges[i].len as usize).map(|s| inv.is_none_or(|inv| inv.classes[i].is_free(s, need))).collect();
        Answer::SeatMap { first_seat: ranges[i].first, free }
    }

    /// Everything the state must satisfy, checked from scratch (tests; slow). I1: no seat
    /// segment is taken by two live holds, and the inventory is exactly what live holds take.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected: Vec<Vec<Vec<u64>>> =
            self.runs.iter().map(|r| r.classes.iter().map(|c| vec![0; c.len()]).collect()).collect();
        let timers: std::collections::HashSet<(u64, u64)> = self.expiry.iter().map(|Reverse(t)| *t).collect();
        let mut live = 0;
        for (seq, h) in self.holds.iter().enumerate() {
            match h.state {
                HoldState::Held => {
                    live += 1;
                    if !timers.contains(&(h.expires_at_ms, seq as u64)) {
                        return Err(format!("held hold {seq} has no expiry timer"));
                    }
                    if h.expires_at_ms <= self.now_ms {
                        return Err(format!("held hold {seq} is past its deadline"));
                    }
                }
                HoldState::Sold => {}
                HoldState::Released | HoldState::Expired => continue,
            }
            for leg in &h.legs {
                let need = span_mask(leg.from, leg.to);
                for (p, &s) in leg.seats().iter().enumerate() {
                    if leg.returned & (1 << p) != 0 {
                        continue;
                    }
                    let m = &mut expected[leg.run as usize][leg.class as usize][s as usize];
                    if *m & need != 0 {
                        return Err(format!("I1: seat {s} of run {} sold twice (hold {seq})", leg.run));
                    }
                    *m |= need;
                }
            }
        }
        if live != self.live_holds {
            return Err(format!("live holds {live}, counter {}", self.live_holds));
        }
        for (r, run) in self.runs.iter().enumerate() {
            for (c, class) in run.classes.iter().enumerate() {
                class.check_consistent()?;
                for (s, want) in expected[r][c].iter().enumerate() {
                    if class.mask(s) != *want {
                        return Err(format!(
                            "run {} class {c} seat {s}: inventory {:#x}, holds {want:#x}",
                            run.run,
                            class.mask(s)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A digest of the whole state, independent of hash-map order (tests compare replays).
    pub fn digest(&self) -> u64 {
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by_key(|(k, _)| **k);
        let parts =
            (self.shard, self.now_ms, &self.runs, &self.holds, &self.expiry, self.live_holds, keys, &self.key_order);
        let bytes = postcard::to_stdvec(&parts).expect("state encodes");
        bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
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
        assert_eq!(sm.apply(&[Command::Confirm { key: 2, hold: h.hold }], 2_000), [Reply::Confirmed]);
        // Sold holds do not expire; a sold hold is not released, it is returned seat by seat.
        sm.advance(1_000_000);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 3)[0].1, 16);
        assert_eq!(sm.apply(&[Command::Release { key: 3, hold: h.hold }], 0), [Reply::Rejected(Reject::AlreadySold)]);
        let ret = Command::Return { key: 4, hold: h.hold, leg: 0, passenger: 1 };
        assert_eq!(sm.apply(&[ret], 0), [Reply::Returned]);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 3)[0].1, 17);
        // The same seat again, under a new key: refused, seats not freed twice (I3).
        let again = Command::Return { key: 5, hold: h.hold, leg: 0, passenger: 1 };
        assert_eq!(sm.apply(&[again], 0), [Reply::Rejected(Reject::AlreadyReturned)]);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 3)[0].1, 17);

        // An unpaid hold expires at its deadline and its seats come back.
        let now = sm.now_ms();
        let r = sm.apply(&[hold(6, vec![leg("G1-20261122", 0, 1, SeatClass::First, 1)])], now);
        let h2 = held(&r[0]).clone();
        assert_eq!(remaining(&sm, "G1-20261122", 0, 1)[1].1, 51);
        sm.advance(h2.expires_at_ms);
        assert_eq!(remaining(&sm, "G1-20261122", 0, 1)[1].1, 52);
        assert_eq!(sm.apply(&[Command::Confirm { key: 7, hold: h2.hold }], 0), [Reply::Rejected(Reject::HoldExpired)]);
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
        assert_eq!(sm.materialised_runs(), 1);
        assert_eq!(
            sm.apply(&[Command::Confirm { key: 70, hold: 999 << 8 }], 0),
            [Reply::Rejected(Reject::UnknownHold)]
        );
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
