//! The state machine against a naive reference model.
//!
//! Random streams of hold / confirm / release / return / time passing / retries / key reuse /
//! queries / snapshots / restarts are applied to both. The model decides what every reply must
//! be (it cannot choose seats the same way, so it checks the engine's choice instead: each seat
//! handed out must be free on the whole journey in the model, which is I1 checked at every
//! step), remaining counts must agree, a restart (snapshot + replay of the log after it) must
//! rebuild exactly the same state, and the engine's own invariant check runs periodically.
//!
//! Size: `CHEPIAO_MODEL_CASES` cases (default 256) of `CHEPIAO_MODEL_OPS` operations (default
//! 4,000): about a million operations per run of the suite.

use std::collections::HashMap;

use chepiao_domain::{Layout, SeatClass, TrainType};
use chepiao_engine::inventory::span_mask;
use chepiao_engine::*;
use proptest::prelude::*;

const KEY_TTL_MS: u64 = 10 * 60 * 1000;

/// (run id, train type, segments); a hold's legs are on distinct runs.
const RUNS: [(&str, TrainType, u8); 3] =
    [("G1-20261122", TrainType::G, 5), ("G3-20261122", TrainType::G, 3), ("K9-20261122", TrainType::K, 4)];

fn spec(run: usize) -> RunSpec {
    RunSpec { train_type: RUNS[run].1, segments: RUNS[run].2 }
}

fn layout(run: usize) -> &'static Layout {
    Layout::for_type(RUNS[run].1)
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
    Reuse(usize),
    Query(usize, u8, u8),
    Snapshot,
    Restart,
}

fn leg_plan() -> impl Strategy<Value = LegPlan> {
    // Class weights favour the small classes (business 18, soft sleeper 36) and G3's second
    // class (3 segments), so runs sell out, fragment and open standing.
    (
        0..3usize,
        0..8u8,
        1..6u8,
        0..100u8,
        1..=5u8,
        prop::option::weighted(0.2, prop::sample::select(b"ACDFLU".to_vec())),
    )
        .prop_map(|(run, from, len, class_roll, passengers, pref)| {
            let class = match (run, class_roll) {
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
        5 => any::<usize>().prop_map(Op::Retry),
        2 => any::<usize>().prop_map(Op::Reuse),
        8 => (0..3usize, 0..8u8, 1..6u8).prop_map(|(r, a, l)| Op::Query(r, a, l)),
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

#[derive(Clone, Debug)]
struct MHold {
    state: HoldState,
    expires: u64,
    legs: Vec<MLeg>,
}

/// The reference: seat masks per run and class, holds, keys. Nothing clever.
struct Model {
    now: u64,
    seats: Vec<Vec<Vec<u64>>>,
    holds: Vec<MHold>,
    keys: HashMap<u128, (Command, Reply)>,
    key_times: Vec<(u64, u128)>,
}

impl Model {
    fn new() -> Model {
        let seats = (0..RUNS.len())
            .map(|r| layout(r).class_ranges().iter().map(|c| vec![0u64; c.len as usize]).collect())
            .collect();
        Model { now: 1_000_000, seats, holds: Vec::new(), keys: HashMap::new(), key_times: Vec::new() }
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

    fn end(&mut self, h: usize, state: HoldState) {
        let legs = std::mem::take(&mut self.holds[h].legs);
        for l in &legs {
            for p in 0..l.seats.len() {
                self.set(l, p, false);
            }
        }
        self.holds[h].state = state;
    }

    /// What `apply` does before running a batch at `now`.
    fn advance(&mut self) {
        for h in 0..self.holds.len() {
            if self.holds[h].state == HoldState::Held && self.holds[h].expires <= self.now {
                self.end(h, HoldState::Expired);
            }
        }
        let now = self.now;
        let keys = &mut self.keys;
        self.key_times.retain(|(at, k)| {
            let keep = at + KEY_TTL_MS > now;
            if !keep {
                keys.remove(k);
            }
            keep
        });
    }

    fn remaining(&self, run: usize, from: u8, to: u8) -> Vec<(SeatClass, u32)> {
        let l = layout(run);
        let waits = l.class_ranges().iter().position(|r| r.class == l.standing_waits_on()).unwrap();
        let seated_left = self.free(run, waits, from, to) > 0;
        l.class_ranges()
            .iter()
            .enumerate()
            .map(|(i, r)| match r.class {
                SeatClass::Standing if seated_left => (r.class, 0),
                _ => (r.class, self.free(run, i, from, to)),
            })
            .collect()
    }

    /// The reply `cmd` must get, given the engine's actual reply (whose seat choice is checked,
    /// then adopted).
    fn expect(&mut self, cmd: &Command, actual: &Reply, plans: Option<&[LegPlan]>) -> Reply {
        if let Some((known, reply)) = self.keys.get(&cmd.key()) {
            return if known == cmd { reply.clone() } else { Reply::Rejected(Reject::KeyReused) };
        }
        let reply = match cmd {
            Command::Hold { legs, ttl_ms, .. } => self.hold(legs, *ttl_ms, actual, plans),
            Command::Confirm { hold, .. } => match self.find(*hold) {
                None => Reply::Rejected(Reject::UnknownHold),
                Some(h) => match self.holds[h].state {
                    HoldState::Held => {
                        self.holds[h].state = HoldState::Sold;
                        Reply::Confirmed
                    }
                    HoldState::Sold => Reply::Confirmed,
                    HoldState::Released => Reply::Rejected(Reject::HoldReleased),
                    HoldState::Expired => Reply::Rejected(Reject::HoldExpired),
                },
            },
            Command::Release { hold, .. } => match self.find(*hold) {
                None => Reply::Rejected(Reject::UnknownHold),
                Some(h) => match self.holds[h].state {
                    HoldState::Held => {
                        self.end(h, HoldState::Released);
                        Reply::Released
                    }
                    HoldState::Released | HoldState::Expired => Reply::Released,
                    HoldState::Sold => Reply::Rejected(Reject::AlreadySold),
                },
            },
            Command::Return { hold, leg, passenger, .. } => self.return_seat(*hold, *leg, *passenger),
        };
        self.keys.insert(cmd.key(), (cmd.clone(), reply.clone()));
        self.key_times.push((self.now, cmd.key()));
        reply
    }

    fn find(&self, hold: HoldId) -> Option<usize> {
        let seq = (hold >> 8) as usize;
        (hold & 0xff == 0 && seq < self.holds.len()).then_some(seq)
    }

    fn hold(&mut self, legs: &[LegRequest], ttl_ms: u64, actual: &Reply, plans: Option<&[LegPlan]>) -> Reply {
        let plans = plans.expect("holds carry their plan");
        for (i, (leg, plan)) in legs.iter().zip(plans).enumerate() {
            let l = layout(plan.run);
            if leg.class == SeatClass::Standing {
                let waits = l.class_ranges().iter().position(|r| r.class == l.standing_waits_on()).unwrap();
                if self.free(plan.run, waits, leg.from, leg.to) > 0 {
                    return Reply::Rejected(Reject::StandingNotOnSale { leg: i as u8 });
                }
            }
            if self.free(plan.run, plan.class, leg.from, leg.to) < u32::from(leg.passengers) {
                return Reply::Rejected(Reject::NotEnoughSeats { leg: i as u8 });
            }
        }
        // Enough seats on every leg: the engine must have held, and its seats must be free here.
        let Reply::Held(h) = actual else { return Reply::Rejected(Reject::Invalid("model expected a hold".into())) };
        let seq = self.holds.len() as u64;
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
        self.holds.push(MHold { state: HoldState::Held, expires, legs: mlegs });
        Reply::Held(Held { hold: seq << 8, expires_at_ms: expires, legs: h.legs.clone() })
    }

    fn return_seat(&mut self, hold: HoldId, leg: u8, passenger: u8) -> Reply {
        let Some(h) = self.find(hold) else { return Reply::Rejected(Reject::UnknownHold) };
        if self.holds[h].state != HoldState::Sold {
            return Reply::Rejected(Reject::NotSold);
        }
        let Some(l) = self.holds[h].legs.get(leg as usize).cloned() else {
            return Reply::Rejected(Reject::Invalid(format!("the hold has no leg {leg}")));
        };
        if passenger as usize >= l.seats.len() {
            return Reply::Rejected(Reject::Invalid(format!("leg {leg} has no passenger {passenger}")));
        }
        if l.returned & (1 << passenger) != 0 {
            return Reply::Rejected(Reject::AlreadyReturned);
        }
        self.set(&l, passenger as usize, false);
        self.holds[h].legs[leg as usize].returned |= 1 << passenger;
        Reply::Returned
    }
}

fn to_command(key: u128, legs: &[LegPlan], ttl_s: u64) -> Option<(Command, Vec<LegPlan>)> {
    let mut plans: Vec<LegPlan> = Vec::new();
    for p in legs {
        if plans.iter().any(|q| q.run == p.run) {
            continue;
        }
        let segs = RUNS[p.run].2;
        let from = p.from % segs;
        let to = (from + p.len).min(segs);
        plans.push(LegPlan { from, len: to - from, ..p.clone() });
    }
    let legs = plans
        .iter()
        .map(|p| LegRequest {
            run: RUNS[p.run].0.parse().unwrap(),
            spec: spec(p.run),
            from: p.from,
            to: p.from + p.len,
            class: layout(p.run).class_ranges()[p.class].class,
            passengers: p.passengers,
            prefs: p.pref.into_iter().collect(),
        })
        .collect();
    Some((Command::Hold { key, legs, ttl_ms: ttl_s * 1000 }, plans))
}

struct Harness {
    sm: StateMachine,
    model: Model,
    /// Every batch applied since the last snapshot: (now, commands).
    log: Vec<(u64, Vec<Command>)>,
    snapshot: Option<Vec<u8>>,
    sent: Vec<(Command, Option<Vec<LegPlan>>)>,
    next_key: u128,
}

fn limits() -> Limits {
    Limits { idempotency_ttl_ms: KEY_TTL_MS, ..Limits::default() }
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
        }
    }

    fn send(&mut self, cmd: Command, plans: Option<Vec<LegPlan>>) {
        let now = self.model.now;
        let actual = self.sm.apply(std::slice::from_ref(&cmd), now).pop().unwrap();
        self.log.push((now, vec![cmd.clone()]));
        self.model.advance();
        let expected = self.model.expect(&cmd, &actual, plans.as_deref());
        assert_eq!(actual, expected, "command {cmd:?}");
        self.sent.push((cmd, plans));
    }

    fn hold_id(&self, pick: usize) -> HoldId {
        let n = self.model.holds.len();
        if n == 0 || pick.is_multiple_of(17) { (pick as u64 % 1000) << 8 } else { ((pick % n) as u64) << 8 }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Hold { legs, ttl_s } => {
                let key = self.next_key;
                self.next_key += 1;
                if let Some((cmd, plans)) = to_command(key, legs, *ttl_s) {
                    self.send(cmd, Some(plans));
                }
            }
            Op::Confirm(p) | Op::Release(p) | Op::Return(p, ..) => {
                let key = self.next_key;
                self.next_key += 1;
                let hold = self.hold_id(*p);
                let cmd = match op {
                    Op::Confirm(_) => Command::Confirm { key, hold },
                    Op::Release(_) => Command::Release { key, hold },
                    Op::Return(_, leg, passenger) => Command::Return { key, hold, leg: *leg, passenger: *passenger },
                    _ => unreachable!(),
                };
                self.send(cmd, None);
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
            Op::Reuse(i) if !self.sent.is_empty() => {
                let (cmd, _) = &self.sent[i % self.sent.len()];
                let other = Command::Confirm { key: cmd.key(), hold: 999_999 << 8 };
                self.send(other, None);
            }
            Op::Retry(_) | Op::Reuse(_) => {}
            Op::Query(run, a, len) => {
                let segs = RUNS[*run].2;
                let from = a % segs;
                let to = (from + len).min(segs);
                let q = Query::Remaining { run: RUNS[*run].0.parse().unwrap(), spec: spec(*run), from, to };
                let Answer::Remaining(got) = self.sm.query(&q) else { panic!("query refused") };
                assert_eq!(got, self.model.remaining(*run, from, to), "remaining {run} {from}..{to}");
            }
            Op::Snapshot => {
                self.snapshot = Some(postcard::to_stdvec(&self.sm).unwrap());
                self.log.clear();
            }
            Op::Restart => {
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
        // Something was actually exercised, not a stream of refusals.
        let sold = h.model.holds.iter().filter(|x| x.state == HoldState::Sold).count();
        prop_assert!(h.model.holds.len() > 50 && sold > 0, "only {} holds, {sold} sold", h.model.holds.len());
    }
}
