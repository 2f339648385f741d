//! The state machine against a naive reference model.
//!
//! Random streams of hold / confirm / release / return / time passing / retries / key reuse /
//! retiring runs / fences / queries / snapshots / restarts are applied to both. The model
//! keeps every hold it ever saw and every key until its time, and decides what every reply
//! must be (it cannot choose seats the same way, so it checks the engine's choice instead:
//! each seat handed out must be free on the whole journey in the model, which is I1 checked at
//! every step). Remaining counts and the list of held holds must agree, a restart (snapshot +
//! replay of the log after it) must rebuild exactly the same state, and the engine's own
//! invariant check (I1, and that its memory holds only what is live: held holds, sold legs
//! not wholly returned, keys within their time) runs periodically.
//!
//! The engine's limit on expiries per batch is set low (3), so bursts of deadlines are spread
//! over batches and a confirm or retry must notice a deadline that has passed on its own.
//!
//! Size: `CHEPIAO_MODEL_CASES` cases (default 256) of `CHEPIAO_MODEL_OPS` operations (default
//! 4,000): about a million operations per run of the suite.

use std::collections::{BTreeSet, HashMap};

use chepiao_domain::{Layout, RunId, SeatClass, ServiceDate, TrainType};
use chepiao_engine::inventory::span_mask;
use chepiao_engine::*;
use proptest::prelude::*;

const KEY_GRACE_MS: u64 = 5 * 60 * 1000;
const EXPIRIES_PER_APPLY: u32 = 3;
/// Dates the runs are on; retiring moves the floor through the first four.
const DATES: [&str; 6] = ["20261122", "20261123", "20261124", "20261125", "20261126", "20261127"];
/// (train, type, segments) of each date's runs; a hold's legs are on distinct runs.
const TRAINS: [(&str, TrainType, u8); 3] = [("G1", TrainType::G, 5), ("G3", TrainType::G, 3), ("K9", TrainType::K, 4)];
const RUNS: usize = DATES.len() * TRAINS.len();

fn run_id(run: usize) -> RunId {
    format!("{}-{}", TRAINS[run % 3].0, DATES[run / 3]).parse().unwrap()
}

fn spec(run: usize) -> RunSpec {
    RunSpec { train_type: TRAINS[run % 3].1, segments: TRAINS[run % 3].2 }
}

fn layout(run: usize) -> &'static Layout {
    Layout::for_type(TRAINS[run % 3].1)
}

fn date(i: usize) -> ServiceDate {
    let d = DATES[i];
    format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]).parse().unwrap()
}

#[derive(Clone, Debug)]
struct LegPlan {
    run: usize,
    from: u8,
    len: u8,
    class: usize,
    passengers: u8,
    pref: Option<u8>,
}

#[derive(Clone, Debug)]
enum Op {
    Hold { legs: Vec<LegPlan>, ttl_s: u64 },
    Confirm(usize),
    Release(usize),
    Return(usize, u8, u8),
    Advance(u64),
    Retry(usize),
    Reuse(usize, LegPlan),
    Retire(usize),
    Fence(u64),
    Query(usize, u8, u8),
    LiveHolds(u64, usize),
    Snapshot,
    Restart,
}

fn leg_plan() -> impl Strategy<Value = LegPlan> {
    // Class weights favour the small classes (business 18, soft sleeper 36) and G3's second
    // class (3 segments), so runs sell out, fragment and open standing. Most holds are on the
    // last two dates, which never retire.
    (
        prop_oneof![3 => 12..18usize, 1 => 0..12usize],
        0..8u8,
        1..6u8,
        0..100u8,
        1..=5u8,
        prop::option::weighted(0.2, prop::sample::select(b"ACDFLU".to_vec())),
    )
        .prop_map(|(run, from, len, class_roll, passengers, pref)| {
            let class = match (run % 3, class_roll) {
                (1, 0..=59) => 2,
                (_, 0..=39) => 0,
                (_, 40..=69) => 1,
                (_, 70..=94) => 2,
                _ => 3,
            };
            LegPlan { run, from, len, class, passengers, pref }
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (prop::collection::vec(leg_plan(), 1..=2), 1..120u64).prop_map(|(legs, ttl_s)| Op::Hold { legs, ttl_s }),
        12 => any::<usize>().prop_map(Op::Confirm),
        6 => any::<usize>().prop_map(Op::Release),
        8 => (any::<usize>(), 0..2u8, 0..5u8).prop_map(|(h, l, p)| Op::Return(h, l, p)),
        10 => (0..90_000u64).prop_map(Op::Advance),
        6 => any::<usize>().prop_map(Op::Retry),
        2 => (any::<usize>(), leg_plan()).prop_map(|(i, l)| Op::Reuse(i, l)),
        1 => any::<usize>().prop_map(Op::Retire),
        1 => (1..50u64).prop_map(Op::Fence),
        8 => (0..RUNS, 0..8u8, 1..6u8).prop_map(|(r, a, l)| Op::Query(r, a, l)),
        2 => (0..200_000u64, 1..20usize).prop_map(|(ago, limit)| Op::LiveHolds(ago, limit)),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Restart),
    ]
}

#[derive(Clone, Debug)]
struct MLeg {
    run: usize,
    class: usize,
    from: u8,
    to: u8,
    seats: Vec<usize>,
    returned: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    Held,
    Sold,
    Ended,
}

#[derive(Clone, Debug)]
struct MHold {
    state: MState,
    made: u64,
    expires: u64,
    legs: Vec<MLeg>,
}

/// The reference: seat masks per run and class, every hold, keys with their time. Nothing
/// clever, and nothing forgotten but keys.
struct Model {
    now: u64,
    next_seq: u64,
    seats: Vec<Vec<Vec<u64>>>,
    holds: HashMap<u64, MHold>,
    /// (deadline, seq) of every hold ever made, popped in order like the engine's timers.
    timers: BTreeSet<(u64, u64)>,
    /// key -> (the hold request, seq, forget at)
    keys: HashMap<u128, (Command, u64, u64)>,
    floor: usize,
    retired: Vec<bool>,
    /// Runs the engine has inventory for (a hold got as far as choosing seats on them).
    materialised: Vec<bool>,
}

impl Model {
    fn new() -> Model {
        let seats =
            (0..RUNS).map(|r| layout(r).class_ranges().iter().map(|c| vec![0u64; c.len as usize]).collect()).collect();
        Model {
            now: 1_000_000,
            next_seq: 1,
            seats,
            holds: HashMap::new(),
            timers: BTreeSet::new(),
            keys: HashMap::new(),
            floor: 0,
            retired: vec![false; RUNS],
            materialised: vec![false; RUNS],
        }
    }

    fn free(&self, run: usize, class: usize, from: u8, to: u8) -> u32 {
        let need = span_mask(from, to);
        self.seats[run][class].iter().filter(|m| **m & need == 0).count() as u32
    }

    fn set(&mut self, leg: &MLeg, passenger: usize, taken: bool) {
        let need = span_mask(leg.from, leg.to);
        let m = &mut self.seats[leg.run][leg.class][leg.seats[passenger]];
        if taken {
            assert_eq!(*m & need, 0, "I1: engine handed out a seat already taken");
            *m |= need;
        } else {
            assert_eq!(*m & need, need);
            *m &= !need;
        }
    }

    fn end(&mut self, seq: u64) {
        let h = self.holds.get_mut(&seq).unwrap();
        assert_eq!(h.state, MState::Held);
        h.state = MState::Ended;
        let legs = h.legs.clone();
        for l in &legs {
            for p in 0..l.seats.len() {
                self.set(l, p, false);
            }
        }
    }

    /// What `apply` does before running a batch at `now`.
    fn advance(&mut self) {
        for _ in 0..EXPIRIES_PER_APPLY {
            let Some(&(at, seq)) = self.timers.first() else { break };
            if at > self.now {
                break;
            }
            self.timers.pop_first();
            if self.holds[&seq].state == MState::Held && self.holds[&seq].expires == at {
                self.end(seq);
            }
        }
        let now = self.now;
        self.keys.retain(|_, (_, _, forget_at)| *forget_at > now);
    }

    fn remaining(&self, run: usize, from: u8, to: u8) -> Vec<(SeatClass, u32)> {
        let l = layout(run);
        let waits = l.class_ranges().iter().position(|r| r.class == l.standing_waits_on()).unwrap();
        let seated_left = self.free(run, waits, from, to) > 0;
        let retired = self.retired[run];
        l.class_ranges()
            .iter()
            .enumerate()
            .map(|(i, r)| match r.class {
                _ if retired => (r.class, 0),
                SeatClass::Standing if seated_left => (r.class, 0),
                _ => (r.class, self.free(run, i, from, to)),
            })
            .collect()
    }

    /// Whether the engine keeps leg `leg` of hold `seq` as sold on `run`.
    fn sold_record(&self, seq: u64, leg: usize, run: usize) -> bool {
        let Some(h) = self.holds.get(&seq) else { return false };
        h.state == MState::Sold
            && h.legs
                .get(leg)
                .is_some_and(|l| l.run == run && !self.retired[run] && l.returned.count_ones() < l.seats.len() as u32)
    }

    /// The reply `cmd` must get, given the engine's actual reply (whose seat choice is checked,
    /// then adopted).
    fn expect(&mut self, cmd: &Command, actual: &Reply, plans: Option<&[LegPlan]>) -> Reply {
        let result = match cmd {
            Command::Hold { key, legs, ttl_ms } => self.hold_keyed(cmd, *key, legs, *ttl_ms, actual, plans),
            Command::Confirm { hold, run } => self.confirm(*hold, run),
            Command::Release { hold, run } => self.release(*hold, run),
            Command::Return { hold, run, leg, passenger } => self.return_seat(*hold, run, *leg, *passenger),
            Command::Retire { .. } | Command::Fence { .. } => unreachable!("sent by `step` directly"),
        };
        result.unwrap_or_else(Reply::Rejected)
    }

    fn seq_of(&self, hold: HoldId) -> Result<u64, Reject> {
        let seq = hold >> 8;
        if hold & 0xff != 0 || seq == 0 || seq >= self.next_seq {
            return Err(Reject::UnknownHold);
        }
        Ok(seq)
    }

    fn run_index(run: &RunId) -> usize {
        (0..RUNS).find(|&r| &run_id(r) == run).expect("a model run")
    }

    fn hold_keyed(
        &mut self,
        cmd: &Command,
        key: u128,
        legs: &[LegRequest],
        ttl_ms: u64,
        actual: &Reply,
        plans: Option<&[LegPlan]>,
    ) -> Result<Reply, Reject> {
        if let Some((known, seq, _)) = self.keys.get(&key).cloned() {
            if &known != cmd {
                return Err(Reject::KeyReused);
            }
            let h = &self.holds[&seq];
            if h.state == MState::Held {
                if h.expires > self.now {
                    return Ok(Reply::Held(self.held_reply(seq)));
                }
                self.end(seq);
            }
            let first = &self.holds[&seq].legs[0];
            if self.sold_record(seq, 0, first.run) {
                return Err(Reject::AlreadySold);
            }
        }
        let seq = self.hold(legs, ttl_ms, actual, plans.expect("holds carry their plan"))?;
        let forget_at = self.holds[&seq].expires + KEY_GRACE_MS;
        self.keys.insert(key, (cmd.clone(), seq, forget_at));
        Ok(Reply::Held(self.held_reply(seq)))
    }

    fn held_reply(&self, seq: u64) -> Held {
        let h = &self.holds[&seq];
        let legs = h
            .legs
            .iter()
            .map(|l| {
                let first = layout(l.run).class_ranges()[l.class].first;
                l.seats.iter().map(|&s| first + s as u16).collect()
            })
            .collect();
        Held { hold: seq << 8, expires_at_ms: h.expires, legs }
    }

    fn hold(&mut self, legs: &[LegRequest], ttl_ms: u64, actual: &Reply, plans: &[LegPlan]) -> Result<u64, Reject> {
        if plans.iter().any(|p| self.retired[p.run]) {
            return Err(Reject::RunRetired);
        }
        for (i, (leg, plan)) in legs.iter().zip(plans).enumerate() {
            self.materialised[plan.run] = true;
            let l = layout(plan.run);
            if leg.class == SeatClass::Standing {
                let waits = l.class_ranges().iter().position(|r| r.class == l.standing_waits_on()).unwrap();
                if self.free(plan.run, waits, leg.from, leg.to) > 0 {
                    return Err(Reject::StandingNotOnSale { leg: i as u8 });
                }
            }
            if self.free(plan.run, plan.class, leg.from, leg.to) < u32::from(leg.passengers) {
                return Err(Reject::NotEnoughSeats { leg: i as u8 });
            }
        }
        // Enough seats on every leg: the engine must have held, and its seats must be free here.
        let Reply::Held(h) = actual else { return Err(Reject::Invalid("the model expected a hold".into())) };
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut mlegs = Vec::new();
        for (i, (leg, plan)) in legs.iter().zip(plans).enumerate() {
            let first = layout(plan.run).class_ranges()[plan.class].first as usize;
            let seats: Vec<usize> = h.legs[i].iter().map(|&s| s as usize - first).collect();
            assert_eq!(seats.len(), leg.passengers as usize);
            let mut distinct = seats.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), seats.len(), "one seat per passenger");
            let m = MLeg { run: plan.run, class: plan.class, from: leg.from, to: leg.to, seats, returned: 0 };
            for p in 0..m.seats.len() {
                self.set(&m, p, true);
            }
            mlegs.push(m);
        }
        let expires = self.now + ttl_ms;
        self.holds.insert(seq, MHold { state: MState::Held, made: self.now, expires, legs: mlegs });
        self.timers.insert((expires, seq));
        Ok(seq)
    }

    fn confirm(&mut self, hold: HoldId, run: &RunId) -> Result<Reply, Reject> {
        let seq = self.seq_of(hold)?;
        let run = Self::run_index(run);
        let h = self.holds.get(&seq).cloned().unwrap_or_else(ended);
        if h.state == MState::Held {
            if h.legs[0].run != run {
                return Err(Reject::Invalid("another run".into()));
            }
            if h.expires <= self.now {
                self.end(seq);
                return Err(Reject::HoldEnded);
            }
            self.holds.get_mut(&seq).unwrap().state = MState::Sold;
            return Ok(Reply::Confirmed);
        }
        if self.retired[run] {
            return Err(Reject::RunRetired);
        }
        if self.sold_record(seq, 0, run) { Ok(Reply::Confirmed) } else { Err(Reject::HoldEnded) }
    }

    fn release(&mut self, hold: HoldId, run: &RunId) -> Result<Reply, Reject> {
        let seq = self.seq_of(hold)?;
        let run = Self::run_index(run);
        let h = self.holds.get(&seq).cloned().unwrap_or_else(ended);
        if h.state == MState::Held {
            if h.legs[0].run != run {
                return Err(Reject::Invalid("another run".into()));
            }
            self.end(seq);
            return Ok(Reply::Released);
        }
        if self.sold_record(seq, 0, run) { Err(Reject::AlreadySold) } else { Ok(Reply::Released) }
    }

    fn return_seat(&mut self, hold: HoldId, run: &RunId, leg: u8, passenger: u8) -> Result<Reply, Reject> {
        let seq = self.seq_of(hold)?;
        let run = Self::run_index(run);
        if self.retired[run] {
            return Err(Reject::RunRetired);
        }
        if self.holds.get(&seq).is_some_and(|h| h.state == MState::Held) {
            return Err(Reject::NotSold);
        }
        if leg >= 4 {
            return Err(Reject::Invalid("leg".into()));
        }
        if !self.sold_record(seq, leg as usize, run) {
            return Ok(Reply::Returned);
        }
        let l = self.holds[&seq].legs[leg as usize].clone();
        if passenger as usize >= l.seats.len() {
            return Err(Reject::Invalid("passenger".into()));
        }
        if l.returned & (1 << passenger) == 0 {
            self.set(&l, passenger as usize, false);
            self.holds.get_mut(&seq).unwrap().legs[leg as usize].returned |= 1 << passenger;
        }
        Ok(Reply::Returned)
    }

    /// Retire the runs dated before `floor` and `runs`: their held holds end first.
    fn retire(&mut self, floor: usize, runs: &[usize]) -> u32 {
        self.floor = self.floor.max(floor);
        let doomed: Vec<usize> =
            (0..RUNS).filter(|&r| !self.retired[r] && (r / 3 < self.floor || runs.contains(&r))).collect();
        let mut ending: Vec<u64> = self
            .holds
            .iter()
            .filter(|(_, h)| h.state == MState::Held && h.legs.iter().any(|l| doomed.contains(&l.run)))
            .map(|(s, _)| *s)
            .collect();
        ending.sort_unstable();
        for seq in ending {
            self.end(seq);
        }
        let mut materialised = 0;
        for &r in &doomed {
            self.retired[r] = true;
            if std::mem::take(&mut self.materialised[r]) {
                materialised += 1;
            }
            for class in &mut self.seats[r] {
                class.iter_mut().for_each(|m| *m = 0);
            }
        }
        materialised
    }

    fn live_holds(&self, before: u64, limit: usize) -> Vec<LiveHold> {
        let mut held: Vec<(u64, &MHold)> = self
            .holds
            .iter()
            .filter(|(_, h)| h.state == MState::Held && h.made < before)
            .map(|(s, h)| (*s, h))
            .collect();
        held.sort_by_key(|(s, _)| *s);
        held.into_iter()
            .take(limit)
            .map(|(s, h)| LiveHold {
                hold: s << 8,
                run: run_id(h.legs[0].run),
                made_at_ms: h.made,
                expires_at_ms: h.expires,
            })
            .collect()
    }
}

/// A hold id in a gap a fence left: never made, so as good as ended.
fn ended() -> MHold {
    MHold { state: MState::Ended, made: 0, expires: 0, legs: Vec::new() }
}

fn to_command(key: u128, legs: &[LegPlan], ttl_s: u64) -> (Command, Vec<LegPlan>) {
    let mut plans: Vec<LegPlan> = Vec::new();
    for p in legs {
        if plans.iter().any(|q| q.run == p.run) {
            continue;
        }
        let segs = TRAINS[p.run % 3].2;
        let from = p.from % segs;
        let to = (from + p.len).min(segs);
        plans.push(LegPlan { from, len: to - from, ..p.clone() });
    }
    let legs = plans
        .iter()
        .map(|p| LegRequest {
            run: run_id(p.run),
            spec: spec(p.run),
            from: p.from,
            to: p.from + p.len,
            class: layout(p.run).class_ranges()[p.class].class,
            passengers: p.passengers,
            prefs: p.pref.into_iter().collect(),
        })
        .collect();
    (Command::Hold { key, legs, ttl_ms: ttl_s * 1000 }, plans)
}

struct Harness {
    sm: StateMachine,
    model: Model,
    /// Every batch applied since the last snapshot: (now, commands).
    log: Vec<(u64, Vec<Command>)>,
    snapshot: Option<Vec<u8>>,
    sent: Vec<(Command, Option<Vec<LegPlan>>)>,
    next_key: u128,
    /// (command, reply) kinds seen, for the failure message of a case that did too little.
    seen: std::collections::BTreeMap<String, usize>,
}

fn limits() -> Limits {
    Limits { key_grace_ms: KEY_GRACE_MS, expiries_per_apply_max: EXPIRIES_PER_APPLY, ..Limits::default() }
}

impl Harness {
    fn new() -> Harness {
        Harness {
            sm: StateMachine::new(0, limits()),
            model: Model::new(),
            log: Vec::new(),
            snapshot: None,
            sent: Vec::new(),
            next_key: 1,
            seen: Default::default(),
        }
    }

    fn apply(&mut self, cmd: &Command) -> Reply {
        let now = self.model.now;
        let actual = self.sm.apply(std::slice::from_ref(cmd), now).pop().unwrap();
        self.log.push((now, vec![cmd.clone()]));
        self.model.advance();
        actual
    }

    fn send(&mut self, cmd: Command, plans: Option<Vec<LegPlan>>) {
        let actual = self.apply(&cmd);
        let expected = self.model.expect(&cmd, &actual, plans.as_deref());
        assert_eq!(without_message(&actual), without_message(&expected), "command {cmd:?}: {actual:?}");
        let reply = format!("{:?}", without_message(&actual));
        let kind = format!("{} {}", cmd.kind(), reply.split(['{', ' ']).next().unwrap_or_default());
        *self.seen.entry(kind).or_default() += 1;
        self.sent.push((cmd, plans));
    }

    /// A hold id to act on, and the run of its first leg (sometimes one that is not).
    fn pick_hold(&self, pick: usize, leg: usize) -> (HoldId, RunId) {
        let n = self.model.next_seq - 1;
        if n == 0 || pick.is_multiple_of(17) {
            return ((pick as u64 % 1000) << 8, run_id(pick % RUNS));
        }
        // Mostly a recent hold (likely still held), sometimes any (likely ended, or in a gap a
        // fence left).
        let seq = if pick.is_multiple_of(4) { 1 + pick as u64 % n } else { n - (pick as u64 / 4) % n.min(24) };
        let Some(h) = self.model.holds.get(&seq) else { return (seq << 8, run_id(pick % RUNS)) };
        let l = &h.legs[if leg < h.legs.len() { leg } else { 0 }];
        let run = if pick.is_multiple_of(13) { run_id((l.run + 1) % RUNS) } else { run_id(l.run) };
        (seq << 8, run)
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Hold { legs, ttl_s } => {
                let key = self.next_key;
                self.next_key += 1;
                let (cmd, plans) = to_command(key, legs, *ttl_s);
                self.send(cmd, Some(plans));
            }
            Op::Confirm(p) | Op::Release(p) => {
                let (hold, run) = self.pick_hold(*p, 0);
                let cmd = match op {
                    Op::Confirm(_) => Command::Confirm { hold, run },
                    _ => Command::Release { hold, run },
                };
                self.send(cmd, None);
            }
            Op::Return(p, leg, passenger) => {
                let (hold, run) = self.pick_hold(*p, *leg as usize);
                self.send(Command::Return { hold, run, leg: *leg, passenger: *passenger }, None);
            }
            Op::Advance(ms) => {
                self.model.now += ms;
                self.sm.advance(self.model.now);
                self.log.push((self.model.now, vec![]));
                self.model.advance();
            }
            Op::Retry(i) if !self.sent.is_empty() => {
                let (cmd, plans) = self.sent[i % self.sent.len()].clone();
                self.send(cmd, plans);
            }
            Op::Reuse(i, leg) if !self.sent.is_empty() => {
                let Command::Hold { key, .. } = self.sent[i % self.sent.len()].0 else { return };
                let (cmd, plans) = to_command(key, std::slice::from_ref(leg), 60);
                self.send(cmd, Some(plans));
            }
            Op::Retry(_) | Op::Reuse(..) => {}
            Op::Retire(pick) => self.retire(*pick),
            Op::Fence(by) => {
                let next_seq = self.model.next_seq + by;
                assert_eq!(self.apply(&Command::Fence { next_seq }), Reply::Fenced);
                self.model.next_seq = next_seq;
            }
            Op::Query(run, a, len) => {
                let segs = spec(*run).segments;
                let from = a % segs;
                let to = (from + len).min(segs);
                let q = Query::Remaining { run: run_id(*run), spec: spec(*run), from, to };
                let Answer::Remaining(got) = self.sm.query(&q) else { panic!("query refused") };
                assert_eq!(got, self.model.remaining(*run, from, to), "remaining {run} {from}..{to}");
            }
            Op::LiveHolds(ago, limit) => {
                let before = self.model.now.saturating_sub(*ago);
                let q = Query::LiveHolds { made_before_ms: before, after: 0, limit: *limit as u32 };
                let Answer::LiveHolds(got) = self.sm.query(&q) else { panic!("query refused") };
                assert_eq!(got, self.model.live_holds(before, *limit), "held holds made before {before}");
            }
            Op::Snapshot => {
                self.snapshot = Some(postcard::to_stdvec(&self.sm).unwrap());
                self.log.clear();
            }
            Op::Restart => self.restart(),
        }
    }

    /// Move the floor a day (up to the fourth date), or retire one early run.
    fn retire(&mut self, pick: usize) {
        let (floor, runs) = if pick.is_multiple_of(3) {
            (self.model.floor, vec![pick % 12])
        } else {
            ((self.model.floor + 1).min(4), vec![])
        };
        let before = date(floor);
        let cmd = Command::Retire { before, runs: runs.iter().map(|&r| run_id(r)).collect() };
        let actual = self.apply(&cmd);
        let expected = Reply::Retired { runs: self.model.retire(floor, &runs) };
        assert_eq!(actual, expected, "{cmd:?}");
    }

    fn restart(&mut self) {
        let mut restored: StateMachine = match &self.snapshot {
            Some(bytes) => postcard::from_bytes(bytes).unwrap(),
            None => StateMachine::new(0, limits()),
        };
        for (now, batch) in &self.log {
            restored.apply(batch, *now);
        }
        assert_eq!(restored.digest(), self.sm.digest(), "replay rebuilt a different state");
        self.sm = restored;
    }
}

/// The model decides that a request is invalid, not how the engine words it.
fn without_message(r: &Reply) -> Reply {
    match r {
        Reply::Rejected(Reject::Invalid(_)) => Reply::Rejected(Reject::Invalid(String::new())),
        other => other.clone(),
    }
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: env_or("CHEPIAO_MODEL_CASES", 256),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn state_machine_agrees_with_the_model(ops in prop::collection::vec(op(), env_or("CHEPIAO_MODEL_OPS", 4_000) as usize)) {
        let mut h = Harness::new();
        for (i, op) in ops.iter().enumerate() {
            h.step(op);
            if i % 250 == 249 {
                h.sm.check_invariants().map_err(TestCaseError::fail)?;
            }
        }
        h.sm.check_invariants().map_err(TestCaseError::fail)?;
        // Memory follows live state: what the engine keeps is what the model says is live.
        let size = h.sm.size();
        let held = h.model.holds.values().filter(|x| x.state == MState::Held).count();
        prop_assert_eq!(size.live_holds, held);
        prop_assert_eq!(size.keys, h.model.keys.len());
        let sold_legs: usize = h.model.holds.iter()
            .map(|(s, x)| x.legs.iter().enumerate().filter(|(i, l)| h.model.sold_record(*s, *i, l.run)).count())
            .sum();
        prop_assert_eq!(size.sold_legs, sold_legs);
        // Something was actually exercised, not a stream of refusals.
        let sold = h.model.holds.values().filter(|x| x.state == MState::Sold).count();
        prop_assert!(h.model.holds.len() > 50 && sold > 0, "only {} holds, {sold} sold: {:?}", h.model.holds.len(), h.seen);
    }
}
