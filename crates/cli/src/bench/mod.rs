//! `chepiao bench`: benchmark programs whose figures go in docs/BENCHMARKS.md.
//!
//! - `bench engine`: the seat engine's five figures (in-memory holds, durable holds with group
//!   commit, all-pairs remaining, recovery, memory per run).
//! - `bench allocation`: seat-km sold ÷ offered for best-fit, first-fit and the offline optimum
//!   over fixed-seed demand streams on real long trains.
//! - `bench day` ([`day`]): a national sale day (or week) through the engine in simulated time.
//! - `bench hello` ([`hello`]): the axum JSON hello-world `bench/compare.sh` measures figures against.
//! - `bench stats` ([`stats`]): the operator's sales statistics on a day of orders (1 million).
//! - `bench replicated` ([`replicated`]): holds through the cluster's replicated log (NATS
//!   JetStream) against the local log, in one run.

mod common;
mod day;
mod hello;
mod replicated;
mod rss;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::{bench_limits, random_hold, run_ids};
use rss::rss_bytes;

use anyhow::Context;
use chepiao_domain::{Network, SeatClass, TrainType};
use chepiao_engine::inventory::Policy;
use chepiao_engine::quality::{OdMix, Rng, Scenario};
use chepiao_engine::*;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// The seat engine's throughput, latency, recovery and memory figures.
    Engine {
        /// Where the durable benchmarks write their log (default: a fresh temporary folder).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Holds per throughput run.
        #[arg(long, default_value_t = 1_000_000)]
        holds: u64,
        /// Concurrent callers in the durable run.
        #[arg(long, default_value_t = 4096)]
        callers: u64,
        /// Run only the in-memory holds figure, `repeat` times (to profile it, or to see its
        /// spread without the other figures' memory in the process).
        #[arg(long)]
        in_memory_only: Option<u32>,
    },
    /// Durable SQL writes through the Store (SQLite, group commit): concurrent user inserts.
    Store {
        #[arg(long, default_value_t = 20_000)]
        writes: u64,
        #[arg(long, default_value_t = 256)]
        callers: u64,
    },
    /// A national sale day (or a week) through the seat engine in simulated time: memory,
    /// refusals by a limit, stalls, recovery.
    Day(day::DayArgs),
    /// An axum JSON hello-world of the same build (the baseline of `bench/compare.sh`).
    Hello {
        #[arg(long, default_value = "127.0.0.1:18180")]
        listen: String,
    },
    /// Holds through the engine's log on NATS JetStream (a cluster's) against the local log.
    Replicated(replicated::ReplicatedArgs),
    /// The sales statistics query on a day of orders (SQLite, or PostgreSQL with --postgres).
    Stats(stats::StatsArgs),
    /// Allocation quality on real trains: best-fit vs first-fit vs the offline optimum.
    Allocation {
        /// Trains to simulate, with the class to sell: CODE:CLASS,...
        #[arg(long, default_value = "G1371:SECOND,Z40:HARD_SLEEPER")]
        trains: String,
        /// Seeds per (train, OD mix) for the robustness sweep.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
    },
}

pub fn run(bench: Bench, network: Network) -> anyhow::Result<()> {
    match bench {
        Bench::Engine { in_memory_only: Some(repeat), holds, .. } => {
            (0..repeat).for_each(|_| in_memory(holds));
            Ok(())
        }
        Bench::Engine { dir, holds, callers, in_memory_only: None } => engine(dir, holds, callers),
        Bench::Allocation { trains, seeds } => allocation(&network, &trains, seeds),
        Bench::Store { writes, callers } => store(writes, callers),
        Bench::Day(args) => day::day(&network, args),
        Bench::Stats(args) => stats::stats(&network, args),
        Bench::Hello { listen } => hello::hello(&listen),
        Bench::Replicated(args) => replicated::replicated(args),
    }
}

fn engine(dir: Option<std::path::PathBuf>, holds: u64, callers: u64) -> anyhow::Result<()> {
    println!("chepiao bench engine: {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    memory();
    in_memory(holds);
    remaining_all_pairs();
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("chepiao-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir)?;
    durable_and_recovery(&dir, holds, callers)?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Memory for 10,000 materialised runs of a K train (1,376 seats and berths + 200 standing).
fn memory() {
    let mut sm = StateMachine::new(0, bench_limits());
    let spec = RunSpec { train_type: TrainType::K, segments: 19 };
    let before = rss_bytes();
    for n in 0..10_000u64 {
        let run = format!("K{}-20261122", n + 1).parse().expect("valid run id");
        let leg = LegRequest { run, spec, from: 0, to: 19, class: SeatClass::HardSeat, passengers: 1, prefs: vec![] };
        sm.apply(&[Command::Hold { key: u128::from(n), legs: vec![leg], ttl_ms: 600_000 }], 0);
    }
    let after = rss_bytes();
    assert_eq!(sm.size().runs, 10_000);
    let seats = chepiao_domain::Layout::for_type(TrainType::K).seated_total();
    println!(
        "memory: 10,000 runs x {seats} seats (+200 standing), 19 segments: {:.1} MB resident ({:.1} KB per run)",
        (after - before) as f64 / 1e6,
        (after - before) as f64 / 1e4 / 1e3
    );
}

fn in_memory(holds: u64) {
    let mut sm = StateMachine::new(0, bench_limits());
    let mut rng = Rng::new(1);
    let runs = run_ids(10_000);
    let commands: Vec<Command> = (0..holds).map(|k| random_hold(&mut rng, u128::from(k), &runs)).collect();
    let started = Instant::now();
    let mut held = 0;
    for (i, batch) in commands.chunks(8_192).enumerate() {
        held += sm.apply(batch, i as u64).iter().filter(|r| matches!(r, Reply::Held(_))).count();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "in-memory holds, one shard, batches of 8,192 over {} runs: {:.0} holds/s ({held} of {holds} held)",
        runs.len(),
        holds as f64 / secs
    );
}

/// All (from, to) pairs of a 20-stop run (K train: 1,376 seats and berths) for every class,
/// on a run already 60% sold in random pieces.
fn remaining_all_pairs() {
    let mut sm = StateMachine::new(0, bench_limits());
    let spec = RunSpec { train_type: TrainType::K, segments: 19 };
    let run: chepiao_domain::RunId = "K1-20261122".parse().expect("valid run id");
    let mut rng = Rng::new(3);
    for k in 0..3_000u64 {
        let from = rng.below(18) as u8;
        let to = from + 1 + rng.below(u64::from(19 - from)) as u8;
        let class = [SeatClass::SoftSleeper, SeatClass::HardSleeper, SeatClass::HardSeat][rng.below(3) as usize];
        let leg = LegRequest { run: run.clone(), spec, from, to, class, passengers: 1, prefs: vec![] };
        sm.apply(&[Command::Hold { key: u128::from(k), legs: vec![leg], ttl_ms: 600_000 }], 0);
    }
    let rounds = 20_000;
    let started = Instant::now();
    let mut checksum = 0u64;
    for _ in 0..rounds {
        let all = sm.remaining_all(&run).expect("materialised");
        checksum += u64::from(all[0][0]);
    }
    let per = started.elapsed().as_secs_f64() / f64::from(rounds) * 1e6;
    println!("remaining for all 190 pairs x 4 classes of a 20-stop, 1,576-place run: {per:.2} µs ({checksum})");
}

fn durable_and_recovery(dir: &std::path::Path, holds: u64, callers: u64) -> anyhow::Result<()> {
    let config =
        EngineConfig { shards: 2, snapshot_every_ops: u64::MAX, limits: bench_limits(), ..EngineConfig::new(dir) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (engine, _) = Engine::open(config.clone(), system_clock()).map_err(anyhow::Error::msg)?;
    let engine = Arc::new(engine);
    let issued = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(run_ids(10_000));
    let started = Instant::now();
    let held = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..callers {
            let (engine, issued, runs) = (engine.clone(), issued.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(c + 100);
                let mut held = 0u64;
                loop {
                    let k = issued.fetch_add(1, Ordering::Relaxed);
                    if k >= holds {
                        return held;
                    }
                    let Command::Hold { key, legs, ttl_ms } = random_hold(&mut rng, u128::from(k), &runs) else {
                        unreachable!()
                    };
                    if let Ok(Ok(_)) = engine.hold(key, legs, ttl_ms).await {
                        held += 1;
                    }
                }
            }));
        }
        let mut held = 0;
        for t in tasks {
            held += t.await.expect("task ran");
        }
        held
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "durable holds, 2 shards, fdatasync per batch, {callers} concurrent callers: {:.0} holds/s ({held} of {holds} held)",
        holds as f64 / secs
    );
    Arc::into_inner(engine).context("engine still shared")?.shutdown();
    let started = Instant::now();
    let (engine, reports) = Engine::open(config, system_clock()).map_err(anyhow::Error::msg)?;
    let secs = started.elapsed().as_secs_f64();
    let replayed: u64 = reports.iter().map(|r| r.commands_replayed).sum();
    println!("recovery: {replayed} logged commands replayed in {secs:.2} s");
    engine.shutdown();
    Ok(())
}

fn allocation(network: &Network, trains: &str, seeds: u64) -> anyhow::Result<()> {
    println!("| train | class | seats | segments | OD mix | requests | best-fit | first-fit | optimum |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut sweep = Vec::new();
    for spec in trains.split(',') {
        let (code, class) = spec.split_once(':').context("trains are CODE:CLASS")?;
        let class: SeatClass = class.parse().map_err(anyhow::Error::msg)?;
        let idx = network
            .train_idx(&code.parse().map_err(anyhow::Error::msg)?)
            .with_context(|| format!("no train {code}"))?;
        let train = network.train(idx);
        let segment_km: Vec<u32> = train.stops.windows(2).map(|w| w[1].km - w[0].km).collect();
        for od in [OdMix::Uniform, OdMix::LongHaul, OdMix::ShortHaul, OdMix::Hub] {
            let scenario = |seed| Scenario {
                name: code.to_string(),
                train_type: train.train_type(),
                class,
                segment_km: segment_km.clone(),
                od,
                demand_factor: 2.0,
                cancel_share: 0.15,
                seed,
            };
            let r = scenario(1).report();
            let first = network.station_by_code(train.stops[0].telecode).map_or("?", |s| s.name.as_str());
            let last =
                network.station_by_code(train.stops.last().expect("stops").telecode).map_or("?", |s| s.name.as_str());
            println!(
                "| {code} {first}→{last} | {class:?} | {} | {} | {od:?} | {} | {:.1}% | {:.1}% | {:.1}% |",
                chepiao_domain::Layout::for_type(train.train_type()).capacity(class),
                segment_km.len(),
                r.best_fit.requests,
                r.best_fit.load * 100.0,
                r.first_fit.load * 100.0,
                r.optimum.load * 100.0
            );
            let (mut worse, mut worst, mut gain) = (0, 0.0f64, 0.0);
            for seed in 1..=seeds {
                let s = scenario(seed);
                let stream = s.stream();
                let b = s.simulate(&stream, Policy::BestFit).load;
                let f = s.simulate(&stream, Policy::FirstFit).load;
                gain += b - f;
                if b < f {
                    worse += 1;
                    worst = worst.max(f - b);
                }
            }
            sweep.push(format!(
                "{code} {od:?}: best-fit − first-fit averages {:+.2} points over {seeds} seeds; worse in {worse} (by at most {:.2} points)",
                gain / seeds as f64 * 100.0,
                worst * 100.0
            ));
        }
    }
    println!();
    for line in sweep {
        println!("{line}");
    }
    Ok(())
}

fn store(writes: u64, callers: u64) -> anyhow::Result<()> {
    use chepiao_store::UserStore;
    let dir = std::env::temp_dir().join(format!("chepiao-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let secs = rt.block_on(async {
        let path = dir.join("bench.db");
        let store = Arc::new(chepiao_store_sqlite::SqliteStore::open(path.to_str().expect("utf-8 path")).await?);
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let (store, next) = (store.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= writes {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let created = store.create_user(&format!("user{i}"), "$argon2id$bench", i as i64).await?;
                    anyhow::ensure!(created.is_some(), "user{i} not created");
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64())
    })?;
    println!(
        "SQLite (WAL, synchronous=FULL, group commit): {writes} user inserts by {callers} concurrent callers: {:.0} writes/s",
        writes as f64 / secs
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
