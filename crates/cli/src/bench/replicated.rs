//! `chepiao bench replicated`: holds through the seat engine's API when its log is a NATS
//! JetStream stream per shard (the cluster's engine), against the same holds on the local,
//! fdatasync'ed log in the same run: throughput, and the latency replication adds (p50, p99).
//!
//! The NATS servers are the caller's (`bench/cluster.sh` starts three, R3). Each run uses
//! streams of its own (`BENCH_<pid>_<n>`), deleted afterwards. `--replicas` replicas of the
//! engine run in this process, all consuming the log (the first one takes the holds), to show
//! what each further node costs a machine that hosts them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chepiao_cluster::{ClusterConfig, ClusterLog};
use chepiao_engine::quality::Rng;
use chepiao_engine::*;

use super::common::{bench_limits, random_hold, run_ids};

#[derive(clap::Args)]
pub struct ReplicatedArgs {
    /// NATS servers, comma separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Copies JetStream keeps of each stream (3: a cluster of three servers).
    #[arg(long, default_value_t = 3)]
    stream_replicas: usize,
    /// Replicas of the engine in this process (every one applies every entry).
    #[arg(long, default_value_t = 1)]
    replicas: u64,
    #[arg(long, default_value_t = 200_000)]
    holds: u64,
    #[arg(long, default_value_t = 4096)]
    callers: u64,
}

/// Holds/s and the per-hold latency percentiles (µs) of one run.
struct Figures {
    holds_per_s: f64,
    held: u64,
    p50_us: u32,
    p99_us: u32,
}

pub fn replicated(args: ReplicatedArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("chepiao-bench-replicated-{}", std::process::id()));
    let config = |sub: &str| EngineConfig {
        shards: 2,
        snapshot_every_ops: u64::MAX,
        limits: bench_limits(),
        ..EngineConfig::new(dir.join(sub))
    };
    let (local, _) = Engine::open(config("local"), system_clock()).map_err(anyhow::Error::msg)?;
    let local = rt.block_on(holds(Arc::new(local), args.holds, args.callers));
    print("local log (fdatasync per batch)", &local, &args);
    let prefix = format!("BENCH_{}", std::process::id());
    let replicated = rt.block_on(async {
        let mut engines = Vec::new();
        for n in 0..args.replicas {
            engines.push(open_replica(&args, &prefix, config(&format!("replica-{n}"))).await?);
        }
        let figures = holds(engines[0].clone(), args.holds, args.callers).await;
        anyhow::Ok(figures)
    })?;
    print("NATS JetStream log", &replicated, &args);
    println!(
        "replication adds: p50 {:+.2} ms, p99 {:+.2} ms; throughput {:.2}x the local log's",
        (f64::from(replicated.p50_us) - f64::from(local.p50_us)) / 1e3,
        (f64::from(replicated.p99_us) - f64::from(local.p99_us)) / 1e3,
        replicated.holds_per_s / local.holds_per_s
    );
    rt.block_on(delete_streams(&args, &prefix))?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn print(what: &str, f: &Figures, args: &ReplicatedArgs) {
    println!(
        "{what}: {:.0} holds/s, {} callers, 2 shards, {} engine replica(s): p50 {:.2} ms, p99 {:.2} ms ({} of {} held)",
        f.holds_per_s,
        args.callers,
        if what.starts_with("local") { 1 } else { args.replicas },
        f64::from(f.p50_us) / 1e3,
        f64::from(f.p99_us) / 1e3,
        f.held,
        args.holds
    );
}

async fn open_replica(args: &ReplicatedArgs, prefix: &str, config: EngineConfig) -> anyhow::Result<Arc<Engine>> {
    let log = ClusterLog::connect(ClusterConfig {
        prefix: prefix.to_string(),
        replicas: args.stream_replicas,
        log_bytes_max: 4 << 30,
        snapshots_bytes_max: 256 << 20,
        ..ClusterConfig::new(args.nats.clone(), config.shards)
    })
    .await?;
    log.prepare(&config.dir).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let node = chepiao_engine::random_u64() | 1;
    let (engine, feeds) =
        Engine::open_replicated(config, system_clock(), ReplicaConfig::new(node), tx).map_err(anyhow::Error::msg)?;
    let engine = Arc::new(engine);
    drop(log.start(feeds, rx));
    log.caught_up(&engine, Duration::from_secs(60)).await?;
    Ok(engine)
}

/// `holds` one-passenger holds from `callers` concurrent callers.
async fn holds(engine: Arc<Engine>, holds: u64, callers: u64) -> Figures {
    let issued = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(run_ids(10_000));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (engine, issued, runs) = (engine.clone(), issued.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(c + 100);
            let (mut held, mut latencies) = (0u64, Vec::new());
            loop {
                let k = issued.fetch_add(1, Ordering::Relaxed);
                if k >= holds {
                    return (held, latencies);
                }
                let Command::Hold { key, legs, ttl_ms } = random_hold(&mut rng, u128::from(k), &runs) else {
                    unreachable!()
                };
                let sent = Instant::now();
                if let Ok(Ok(_)) = engine.hold(key, legs, ttl_ms).await {
                    held += 1;
                }
                latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
        }));
    }
    let (mut held, mut latencies) = (0, Vec::with_capacity(holds as usize));
    for t in tasks {
        let (h, l) = t.await.expect("task ran");
        held += h;
        latencies.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    Figures { holds_per_s: holds as f64 / secs, held, p50_us: pct(0.50), p99_us: pct(0.99) }
}

async fn delete_streams(args: &ReplicatedArgs, prefix: &str) -> anyhow::Result<()> {
    let client = chepiao_cluster::connect_nats(&args.nats).await?;
    let js = async_nats::jetstream::new(client);
    for shard in 0..2 {
        js.delete_stream(format!("{prefix}_{shard}")).await.context("deleting a bench stream")?;
    }
    js.delete_object_store(format!("{prefix}_SNAPSHOTS")).await.context("deleting the bench bucket")?;
    Ok(())
}
