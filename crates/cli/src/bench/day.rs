//! `chepiao bench day`: a national sale day (or a week of them) through the seat engine, in
//! simulated time (time is an input of the engine: its clock is the simulation's).
//!
//! The sale: the runs of `--runs` real trains-and-dates (the trains of the bundled network,
//! each on the 15 dates of the sale window), `--orders-per-day` orders over 24 simulated hours,
//! shaped like 12306's day: a burst at every sale opening on the hour and half hour from 08:00
//! to 17:30 (exponential decay, one minute), and a long tail that follows the waking day. Of the
//! orders that get seats, 80% are paid (confirmed 10 s to 5 min later) and 20% never are (they
//! expire at the hold's TTL); 5% of the sold seats are refunded 1 to 6 hours later; 5% of the
//! orders are retried under the same key. A week (`--days 7`) rolls the window forward a day at
//! a time: at each midnight the departed date leaves the engine and a new date opens.
//!
//! One shard, its log fsynced per batch, snapshots every `--snapshot-every-ops` commands. It
//! reports refusals by any limit (must be none), resident memory per simulated hour (peak and
//! final), the longest batch in the command path (and the longest state-machine time alone),
//! the recovery time at the end, and the wall time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chepiao_domain::{Network, RunId, SeatClass, ServiceDate};
use chepiao_engine::quality::Rng;
use chepiao_engine::*;

use super::rss;

/// Days a date is on sale (12306: today and the next 14).
const WINDOW_DAYS: i64 = 15;
/// The engine TTL of an order's hold: a 10-minute pay window and 15 minutes of grace.
const HOLD_TTL_MS: u64 = 25 * 60 * 1000;
const DAY_MS: u64 = 86_400_000;
/// Actions run at once within a simulated second (the engine queue holds 65,536).
const IN_FLIGHT_MAX: usize = 16_384;

#[derive(clap::Args)]
pub struct DayArgs {
    /// Where the engine writes its log and snapshots (default: a fresh temporary folder).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Simulated days (7: the window rolls forward a day at a time).
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    #[arg(long, default_value_t = 20_000_000)]
    pub orders_per_day: u64,
    /// Runs on sale at once (trains x 15 dates).
    #[arg(long, default_value_t = 10_000)]
    pub runs: usize,
    /// Commands between snapshots (the engine's default).
    #[arg(long, default_value_t = EngineConfig::new("").snapshot_every_ops)]
    pub snapshot_every_ops: u64,
    /// Commands per engine batch (the engine's default).
    #[arg(long, default_value_t = EngineConfig::new("").batch_len_max)]
    pub batch_len_max: usize,
    #[arg(long, default_value_t = 12306)]
    pub seed: u64,
}

/// What the simulation does at a moment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    /// An order: (order number, train slot, day offset in the window).
    Order(u64, u32, u8),
    /// The same order again, under its key.
    Retry(u64, u32, u8),
    Confirm(HoldId, RunId, u8),
    Refund(HoldId, RunId, u8),
}

/// The trains on sale and what a run of each looks like.
struct Catalogue {
    trains: Vec<CatalogueTrain>,
}

/// A train on sale: its code, what a run of it looks like, and its classes with their places.
type CatalogueTrain = (chepiao_domain::TrainCode, RunSpec, Vec<(SeatClass, u32)>);

impl Catalogue {
    /// `runs / 15` trains of the network, spread over its types and lengths.
    fn new(network: &Network, runs: usize) -> Catalogue {
        let want = runs.div_ceil(WINDOW_DAYS as usize);
        let all: Vec<_> = network.trains().iter().filter(|t| t.stops.len() >= 3).collect();
        let step = (all.len() / want).max(1);
        let trains = all
            .iter()
            .step_by(step)
            .take(want)
            .map(|t| {
                let spec = chepiao_flow::calendar::run_spec(t);
                let classes = spec
                    .layout()
                    .class_ranges()
                    .iter()
                    .filter(|r| r.len > 0)
                    .map(|r| (r.class, u32::from(r.len)))
                    .collect();
                (t.code.clone(), spec, classes)
            })
            .collect();
        Catalogue { trains }
    }

    /// The order `n`'s one leg: a popular train more often, any journey, a class by capacity.
    fn leg(&self, n: u64, train: u32, date: ServiceDate) -> LegRequest {
        let mut rng = Rng::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
        let (code, spec, classes) = &self.trains[train as usize];
        let from = rng.below(u64::from(spec.segments)) as u8;
        let to = from + 1 + rng.below(u64::from(spec.segments - from)) as u8;
        let seats: u32 = classes.iter().map(|(_, n)| n).sum();
        let mut pick = rng.below(u64::from(seats)) as u32;
        let class = classes
            .iter()
            .find(|(_, n)| {
                if pick < *n {
                    true
                } else {
                    pick -= n;
                    false
                }
            })
            .map_or(SeatClass::Second, |c| c.0);
        let passengers = [1, 1, 1, 2, 2, 3][rng.below(6) as usize];
        LegRequest { run: RunId::new(code.clone(), date), spec: *spec, from, to, class, passengers, prefs: vec![] }
    }
}

/// Orders per simulated second at `second` of the day (their sum over a day is `per_day`):
/// 60% in 20 bursts at the openings, 40% in a tail over the waking hours.
fn rate(second: u64, per_day: u64) -> f64 {
    let per_day = per_day as f64;
    let openings = (16..36).map(|half_hour| half_hour * 1800u64);
    let burst: f64 = openings
        .filter(|&at| second >= at && second < at + 600)
        .map(|at| 0.6 * per_day / 20.0 / 60.0 * (-((second - at) as f64) / 60.0).exp())
        .sum();
    let hour = second / 3600;
    let awake = if (6..23).contains(&hour) { 1.0 } else { 0.15 };
    // The tail's weights sum to 17 + 7 * 0.15 = 18.05 hours' worth.
    burst + 0.4 * per_day / (18.05 * 3600.0) * awake
}

struct Tally {
    orders: u64,
    held: u64,
    sold_out: u64,
    limited: u64,
    busy: u64,
    confirmed: u64,
    refunds: u64,
    retries: u64,
}

pub fn day(network: &Network, args: DayArgs) -> anyhow::Result<()> {
    let catalogue = Catalogue::new(network, args.runs);
    let dir =
        args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("chepiao-day-{}", std::process::id())));
    std::fs::create_dir_all(&dir)?;
    let first_day: ServiceDate = "2027-01-10".parse().expect("a date");
    let start_ms = first_day.at_minutes(0).timestamp_millis() as u64;
    let now = Arc::new(AtomicU64::new(start_ms));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let config = EngineConfig {
        shards: 1,
        snapshot_every_ops: args.snapshot_every_ops,
        batch_len_max: args.batch_len_max,
        ..EngineConfig::new(&dir)
    };
    println!(
        "chepiao bench day: {} trains x {WINDOW_DAYS} dates = {} runs, {} orders a day, {} day(s), one shard, fsync per batch",
        catalogue.trains.len(),
        catalogue.trains.len() * WINDOW_DAYS as usize,
        args.orders_per_day,
        args.days
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let wall = Instant::now();
    let (engine, _) = Engine::open(config.clone(), clock.clone()).map_err(anyhow::Error::msg)?;
    let engine = Arc::new(engine);
    let mut sim =
        Sim { engine: engine.clone(), catalogue, now, start_ms, first_day, args, tally: Tally::new(), rss_peak: 0 };
    rt.block_on(sim.run())?;
    let stats = rt.block_on(engine.stats()).map_err(anyhow::Error::msg)?;
    engine.close();
    report_end(&sim, &stats[0], wall.elapsed().as_secs_f64());
    let recovery = Instant::now();
    let (engine, reports) = Engine::open(config, clock).map_err(anyhow::Error::msg)?;
    let r = &reports[0];
    println!(
        "recovery at the end: {:.2} s (snapshot at lsn {} read in {} ms, then {} commands replayed in {} ms)",
        recovery.elapsed().as_secs_f64(),
        r.snapshot_lsn,
        r.snapshot_ms,
        r.commands_replayed,
        r.replay_ms
    );
    engine.shutdown();
    if sim.args.dir.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    anyhow::ensure!(sim.tally.limited == 0 && sim.tally.busy == 0, "refusals by a limit: the engine is sized wrong");
    Ok(())
}

impl Tally {
    fn new() -> Tally {
        Tally { orders: 0, held: 0, sold_out: 0, limited: 0, busy: 0, confirmed: 0, refunds: 0, retries: 0 }
    }
}

fn report_end(sim: &Sim, stats: &ShardStats, wall_s: f64) {
    let t = &sim.tally;
    println!(
        "orders {} ({} held, {} refused sold out), retries {}, confirmed {}, refunds {}; refused by a limit: {} (+{} busy)",
        t.orders, t.held, t.sold_out, t.retries, t.confirmed, t.refunds, t.limited, t.busy
    );
    println!(
        "commands {} in {} batches ({} over 10 ms); longest batch in the command path {:.1} ms (state machine alone {:.1} ms); snapshots up to lsn {}",
        stats.commands,
        stats.batches,
        stats.batches_over_10ms,
        stats.longest_batch_us as f64 / 1000.0,
        stats.longest_apply_us as f64 / 1000.0,
        stats.snapshot_lsn
    );
    println!(
        "of the batches over 10 ms, {} had the shard's thread on a core for 10 ms or more (the rest waited for a core or the disk); most core time in one batch {:.1} ms; state machine alone on a core 10 ms or more: {} batches, at most {:.1} ms; log appends (write + sync) over 10 ms: {}, the longest {:.1} ms",
        stats.batches_over_10ms_on_cpu,
        stats.longest_batch_cpu_us as f64 / 1000.0,
        stats.applies_over_10ms_on_cpu,
        stats.longest_apply_cpu_us as f64 / 1000.0,
        stats.appends_over_10ms,
        stats.longest_append_us as f64 / 1000.0
    );
    println!(
        "resident memory: peak {:.0} MB, final {:.0} MB; wall time {:.0} s ({:.0} simulated orders/s)",
        sim.rss_peak as f64 / 1e6,
        rss::rss_bytes() as f64 / 1e6,
        wall_s,
        t.orders as f64 / wall_s
    );
}

struct Sim {
    engine: Arc<Engine>,
    catalogue: Catalogue,
    now: Arc<AtomicU64>,
    start_ms: u64,
    first_day: ServiceDate,
    args: DayArgs,
    tally: Tally,
    rss_peak: u64,
}

impl Sim {
    async fn run(&mut self) -> anyhow::Result<()> {
        let mut queue: BinaryHeap<Reverse<(u64, Action)>> = BinaryHeap::new();
        let mut rng = Rng::new(self.args.seed);
        let mut next_order = 0u64;
        let mut carry = 0.0;
        for second in 0..u64::from(self.args.days) * 86_400 {
            let at_ms = self.start_ms + second * 1000;
            if second % 86_400 == 0 {
                self.midnight(second / 86_400).await?;
            }
            carry += rate(second % 86_400, self.args.orders_per_day);
            while carry >= 1.0 {
                carry -= 1.0;
                let train = ((rng.below(1 << 16).pow(2) >> 16) as u32 * self.catalogue.trains.len() as u32) >> 16;
                let day = rng.below(WINDOW_DAYS as u64) as u8;
                let when = at_ms + rng.below(1000);
                queue.push(Reverse((when, Action::Order(next_order, train, day))));
                if rng.below(100) < 5 {
                    queue.push(Reverse((when + 1000 + rng.below(120_000), Action::Retry(next_order, train, day))));
                }
                next_order += 1;
            }
            let mut due = Vec::new();
            while queue.peek().is_some_and(|Reverse((t, _))| *t < at_ms + 1000) {
                due.push(queue.pop().expect("peeked").0.1);
            }
            if !due.is_empty() {
                self.now.store(at_ms, Ordering::SeqCst);
                self.run_second(due, at_ms, &mut rng, &mut queue).await;
            }
            if second % 3600 == 3599 {
                self.hourly(second).await?;
            }
        }
        Ok(())
    }

    /// A new day: the date that departed leaves the engine; the window's dates move on.
    async fn midnight(&mut self, day: u64) -> anyhow::Result<()> {
        self.now.store(self.start_ms + day * DAY_MS, Ordering::SeqCst);
        let today = self.first_day.add_days(day as i64);
        let retired = self.engine.retire(today, &[]).await.map_err(anyhow::Error::msg)?;
        if day > 0 {
            println!("day {day}: {retired} runs of {} left the engine", today.add_days(-1));
        }
        Ok(())
    }

    async fn run_second(
        &mut self,
        due: Vec<Action>,
        at_ms: u64,
        rng: &mut Rng,
        queue: &mut BinaryHeap<Reverse<(u64, Action)>>,
    ) {
        let today = self.first_day.add_days(((at_ms - self.start_ms) / DAY_MS) as i64);
        for chunk in due.chunks(IN_FLIGHT_MAX) {
            let calls = chunk.iter().map(|a| self.act(a, today));
            let outcomes = futures_util::future::join_all(calls).await;
            for (a, outcome) in chunk.iter().zip(outcomes) {
                self.follow_up(a, outcome, at_ms, rng, queue);
            }
        }
    }

    /// Send one action; the reply.
    async fn act(&self, action: &Action, today: ServiceDate) -> Result<Reply, EngineError> {
        match action {
            Action::Order(n, train, day) | Action::Retry(n, train, day) => {
                let leg = self.catalogue.leg(*n, *train, today.add_days(i64::from(*day)));
                match self.engine.hold(u128::from(*n) + 1, vec![leg], HOLD_TTL_MS).await? {
                    Ok(h) => Ok(Reply::Held(Held {
                        hold: h.legs[0].hold,
                        expires_at_ms: h.expires_at_ms,
                        legs: vec![h.legs[0].seats.clone()],
                    })),
                    Err(r) => Ok(Reply::Rejected(r)),
                }
            }
            Action::Confirm(hold, run, _) => self.engine.confirm(*hold, run.clone()).await,
            Action::Refund(hold, run, p) => self.engine.return_seat(*hold, run.clone(), 0, *p).await,
        }
    }

    /// Count a reply and schedule what follows it (payment, refund).
    fn follow_up(
        &mut self,
        action: &Action,
        outcome: Result<Reply, EngineError>,
        at_ms: u64,
        rng: &mut Rng,
        queue: &mut BinaryHeap<Reverse<(u64, Action)>>,
    ) {
        let t = &mut self.tally;
        let reply = match outcome {
            Ok(r) => r,
            Err(EngineError::Busy) => return t.busy += 1,
            Err(e) => panic!("engine failed: {e}"),
        };
        match (action, reply) {
            (_, Reply::Rejected(Reject::Limit(m))) => {
                t.limited += 1;
                if t.limited <= 3 {
                    eprintln!("refused by a limit: {m}");
                }
            }
            (Action::Retry(..), _) => t.retries += 1,
            (Action::Order(_, train, day), Reply::Held(h)) => {
                t.orders += 1;
                t.held += 1;
                if rng.below(100) < 80 {
                    let run = self.catalogue.trains[*train as usize].0.clone();
                    let date = self.first_day.add_days(((at_ms - self.start_ms) / DAY_MS) as i64 + i64::from(*day));
                    let passengers = h.legs[0].len() as u8;
                    queue.push(Reverse((
                        at_ms + 10_000 + rng.below(290_000),
                        Action::Confirm(h.hold, RunId::new(run, date), passengers),
                    )));
                }
            }
            (Action::Order(..), Reply::Rejected(_)) => {
                t.orders += 1;
                t.sold_out += 1;
            }
            (Action::Confirm(hold, run, passengers), Reply::Confirmed) => {
                t.confirmed += 1;
                if rng.below(100) < 5 {
                    let p = rng.below(u64::from(*passengers)) as u8;
                    queue.push(Reverse((
                        at_ms + 3_600_000 + rng.below(5 * 3_600_000),
                        Action::Refund(*hold, run.clone(), p),
                    )));
                }
            }
            (Action::Refund(..), Reply::Returned) => t.refunds += 1,
            _ => {}
        }
    }

    async fn hourly(&mut self, second: u64) -> anyhow::Result<()> {
        let rss = rss::rss_bytes();
        self.rss_peak = self.rss_peak.max(rss);
        let s = self.engine.stats().await.map_err(anyhow::Error::msg)?;
        let s = &s[0];
        println!(
            "day {} {:02}:00  orders {:>10}  held {:>9}  live holds {:>8}  sold legs {:>9}  keys {:>8}  runs {:>6}  RSS {:>5.0} MB  longest batch {:>5.1} ms (apply {:>5.1})",
            second / 86_400,
            (second % 86_400) / 3600 + 1,
            self.tally.orders,
            self.tally.held,
            s.size.live_holds,
            s.size.sold_legs,
            s.size.keys,
            s.size.runs,
            rss as f64 / 1e6,
            s.longest_batch_us as f64 / 1000.0,
            s.longest_apply_us as f64 / 1000.0
        );
        Ok(())
    }
}
