//! The engine as the rest of chepiao sees it: an async handle over the shard threads.
//!
//! Runs are spread over shards by a hash of the run id. A hold whose legs live in different
//! shards is done as one hold per shard; if any part is refused, the parts that succeeded are
//! released, so the caller sees all legs held or none (the parts' seats are briefly held in the
//! meantime). Part keys are derived from the caller's key, so a retry repeats the same steps
//! with the same answers.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chepiao_domain::{RunId, ServiceDate};
use crossbeam_channel::{Sender, TrySendError, bounded};
use tokio::sync::oneshot;

use crate::command::*;
use crate::entry::{Entry, Feed, Proposal};
use crate::error::EngineError;
use crate::replica::{ReplicaConfig, ReplicaShard};
use crate::shard::{Clock, Envelope, Shard, ShardConfig, ShardStats};
use crate::snapshot::{FedSnapshotter, Progress, Request, Snapshotter};
use crate::state::{Limits, RETIRE_RUNS_MAX, StateMachine};
use crate::wal::{LogReader, RecoveryReport, Wal};

/// Log entries waiting for a replicated shard (or its snapshotter) to take them; past it the
/// log's consumer waits.
pub const FEED_LEN_MAX: usize = 1_024;

/// What the log's side needs to feed one shard of a replicated engine.
pub struct ShardFeed {
    pub shard: u8,
    /// The last entry the replica holds (its snapshot's position): the log is read after it.
    pub applied_seq: u64,
    pub to_shard: Sender<Feed>,
    pub to_snapshotter: Sender<Arc<Entry>>,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Each shard keeps its log and snapshots in `dir/shard-<n>`.
    pub dir: PathBuf,
    pub shards: u8,
    /// Envelopes waiting per shard before callers get `Busy`.
    pub queue_depth_max: usize,
    /// Commands per batch (one log write and sync per batch). It also bounds how long the
    /// first command of a batch waits for the last: 256 holds are at most a few milliseconds.
    pub batch_len_max: usize,
    /// Commands between snapshots (taken by each shard's snapshotter thread).
    pub snapshot_every_ops: u64,
    /// How often an idle shard wakes to expire holds.
    pub tick: Duration,
    /// fdatasync each batch. Off only to measure the state machine without the disk.
    pub sync: bool,
    /// Log segments are closed past this many bytes (snapshots delete whole segments).
    pub segment_len_max: u64,
    pub limits: Limits,
}

impl EngineConfig {
    pub fn new(dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            dir: dir.into(),
            shards: 2,
            queue_depth_max: 65_536,
            batch_len_max: 256,
            snapshot_every_ops: 250_000,
            tick: Duration::from_millis(100),
            sync: true,
            segment_len_max: crate::wal::SEGMENT_LEN_MAX,
            limits: Limits::default(),
        }
    }
}

struct ShardHandle {
    tx: Sender<Envelope>,
    progress: Arc<Progress>,
    thread: Mutex<Option<JoinHandle<()>>>,
    snapshots: Sender<Request>,
    snapshotter: Mutex<Option<JoinHandle<()>>>,
}

impl ShardHandle {
    fn new(
        tx: Sender<Envelope>,
        progress: Arc<Progress>,
        thread: JoinHandle<()>,
        snapshots: Sender<Request>,
        snapshotter: JoinHandle<()>,
    ) -> ShardHandle {
        ShardHandle {
            tx,
            progress,
            thread: Mutex::new(Some(thread)),
            snapshots,
            snapshotter: Mutex::new(Some(snapshotter)),
        }
    }
}

pub struct Engine {
    shards: Vec<ShardHandle>,
}

/// One leg's outcome: the hold that carries it and the seat index of each passenger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLeg {
    pub hold: HoldId,
    pub seats: LegSeats,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldOutcome {
    pub legs: Vec<HeldLeg>,
    /// The earliest deadline of the holds: the seats are the order's until then.
    pub expires_at_ms: u64,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

/// A part key derived from the caller's key, distinct per shard and purpose.
fn derive_key(key: IdemKey, shard: usize, purpose: u8) -> IdemKey {
    let mut bytes = key.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[shard as u8, purpose]);
    u128::from(fnv(&bytes)) << 64 | u128::from(fnv(&[&bytes[..], b"chepiao"].concat()))
}

impl Engine {
    /// Recover every shard from its directory and start the shard and snapshotter threads.
    pub fn open(config: EngineConfig, clock: Clock) -> Result<(Engine, Vec<RecoveryReport>), EngineError> {
        assert!(config.shards >= 1 && config.batch_len_max >= 1 && config.queue_depth_max >= 1);
        check_shard_count(&config)?;
        let mut shards = Vec::new();
        let mut reports = Vec::new();
        for i in 0..config.shards {
            let (handle, report) = open_shard(&config, i, clock.clone())?;
            shards.push(handle);
            reports.push(report);
        }
        Ok((Engine { shards }, reports))
    }

    /// Open a replica of an engine whose log is shared by several nodes (see
    /// [`crate::replica`]): each shard starts from the newest snapshot in its directory (or
    /// empty) and waits for the log's entries after it, which the caller feeds through the
    /// returned [`ShardFeed`]s. Commands go out as proposals on `proposals`.
    pub fn open_replicated(
        config: EngineConfig,
        clock: Clock,
        replica: ReplicaConfig,
        proposals: tokio::sync::mpsc::Sender<Proposal>,
    ) -> Result<(Engine, Vec<ShardFeed>), EngineError> {
        assert!(config.shards >= 1 && config.batch_len_max >= 1 && config.queue_depth_max >= 1);
        check_shard_count(&config)?;
        let mut shards = Vec::new();
        let mut feeds = Vec::new();
        for i in 0..config.shards {
            let (handle, feed) = open_replica_shard(&config, i, clock.clone(), &replica, proposals.clone())?;
            shards.push(handle);
            feeds.push(feed);
        }
        Ok((Engine { shards }, feeds))
    }

    /// Each shard's last applied log position (durable: in the local log, or in the shared
    /// log and applied here).
    pub fn applied(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.progress.durable_lsn.load(Ordering::Acquire)).collect()
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `run`: a hash of its train code and day number (no allocation: this
    /// runs for every hold and every journey of every search).
    pub fn shard_of(&self, run: &RunId) -> usize {
        let code = fnv(run.train.as_str().as_bytes());
        let h = fnv(&[code.to_le_bytes(), u64::from(run.date.days_from_ce() as u32).to_le_bytes()].concat());
        (h % self.shards.len() as u64) as usize
    }

    /// A number that grows whenever the state of any shard changes (the sum of their durable
    /// log positions; each only grows): two equal readings mean nothing changed in between, so
    /// an answer computed after the first reading is still true. An atomic load per shard.
    ///
    /// Read it *before* asking: a shard logs a change before it answers any query that sees
    /// it, so an answer is never older than the version read before it.
    pub fn version(&self) -> u64 {
        self.shards.iter().map(|s| s.progress.durable_lsn.load(Ordering::Acquire)).sum()
    }

    fn send(&self, shard: usize, e: Envelope) -> Result<(), EngineError> {
        self.shards[shard].tx.try_send(e).map_err(|e| match e {
            TrySendError::Full(_) => EngineError::Busy,
            TrySendError::Disconnected(_) => EngineError::Unavailable("shard stopped".into()),
        })
    }

    /// Run one command on one shard; resolves once the command is durable.
    pub async fn execute(&self, shard: usize, cmd: Command) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(shard, Envelope::Command(cmd, tx))?;
        rx.await.map_err(|_| EngineError::Unavailable("shard stopped".into()))?
    }

    /// Hold seats on every leg or none. `Err(Reject)` inside `Ok` is a refusal (no seats held).
    pub async fn hold(
        &self,
        key: IdemKey,
        legs: Vec<LegRequest>,
        ttl_ms: u64,
    ) -> Result<Result<HoldOutcome, Reject>, EngineError> {
        let shards: Vec<usize> = legs.iter().map(|l| self.shard_of(&l.run)).collect();
        let mut parts: Vec<usize> = shards.clone();
        parts.sort_unstable();
        parts.dedup();
        let mut replies = Vec::new();
        let mut failure: Option<EngineError> = None;
        for &s in &parts {
            let part_legs: Vec<LegRequest> =
                legs.iter().zip(&shards).filter(|(_, x)| **x == s).map(|(l, _)| l.clone()).collect();
            let part_key = if parts.len() == 1 { key } else { derive_key(key, s, 0) };
            let (tx, rx) = oneshot::channel();
            if let Err(e) =
                self.send(s, Envelope::Command(Command::Hold { key: part_key, legs: part_legs, ttl_ms }, tx))
            {
                failure = Some(e);
                break;
            }
            replies.push((s, rx));
        }
        let mut held = Vec::new();
        let mut refusal = None;
        for (s, rx) in replies {
            match rx.await {
                Ok(Ok(Reply::Held(h))) => held.push((s, h)),
                Ok(Ok(Reply::Rejected(r))) => refusal = refusal.or(Some(map_leg(r, &shards, s))),
                Ok(Ok(other)) => failure = Some(EngineError::Unavailable(format!("unexpected reply {other:?}"))),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(EngineError::Unavailable("shard stopped".into())),
            }
        }
        if refusal.is_some() || failure.is_some() {
            // All or nothing: give back the parts that were held.
            for (s, h) in held {
                let run = legs.iter().zip(&shards).find(|(_, x)| **x == s).expect("the part has legs").0.run.clone();
                self.execute(s, Command::Release { hold: h.hold, run }).await?;
            }
            return match failure {
                Some(e) => Err(e),
                None => Ok(Err(refusal.expect("checked above"))),
            };
        }
        let expires_at_ms = held.iter().map(|(_, h)| h.expires_at_ms).min().unwrap_or(0);
        let mut cursor: Vec<(usize, Held, usize)> = held.into_iter().map(|(s, h)| (s, h, 0)).collect();
        let legs = shards
            .iter()
            .map(|s| {
                let (_, h, next) = cursor.iter_mut().find(|(x, _, _)| x == s).expect("every shard replied");
                *next += 1;
                HeldLeg { hold: h.hold, seats: h.legs[*next - 1].clone() }
            })
            .collect();
        Ok(Ok(HoldOutcome { legs, expires_at_ms }))
    }

    fn shard_of_hold(&self, hold: HoldId) -> usize {
        hold_shard(hold) % self.shards.len()
    }

    /// Sell a held hold; `run` is the run of its first leg.
    pub async fn confirm(&self, hold: HoldId, run: RunId) -> Result<Reply, EngineError> {
        self.execute(self.shard_of_hold(hold), Command::Confirm { hold, run }).await
    }

    /// Give a held hold's seats back; `run` is the run of its first leg.
    pub async fn release(&self, hold: HoldId, run: RunId) -> Result<Reply, EngineError> {
        self.execute(self.shard_of_hold(hold), Command::Release { hold, run }).await
    }

    /// Put one passenger's seat of a sold hold back on sale; `run` is that leg's run.
    pub async fn return_seat(&self, hold: HoldId, run: RunId, leg: u8, passenger: u8) -> Result<Reply, EngineError> {
        self.execute(self.shard_of_hold(hold), Command::Return { hold, run, leg, passenger }).await
    }

    /// Retire, on every shard, the runs dated before `before` and those of `runs` (which have
    /// arrived). Returns how many runs left the engine.
    pub async fn retire(&self, before: ServiceDate, runs: &[RunId]) -> Result<u32, EngineError> {
        let mut per_shard: Vec<Vec<RunId>> = vec![Vec::new(); self.shards.len()];
        for r in runs {
            per_shard[self.shard_of(r)].push(r.clone());
        }
        let mut retired = 0;
        for (s, runs) in per_shard.into_iter().enumerate() {
            let mut chunks: Vec<Vec<RunId>> = runs.chunks(RETIRE_RUNS_MAX).map(<[RunId]>::to_vec).collect();
            if chunks.is_empty() {
                chunks.push(Vec::new());
            }
            for runs in chunks {
                match self.execute(s, Command::Retire { before, runs }).await? {
                    Reply::Retired { runs } => retired += runs,
                    other => return Err(EngineError::Unavailable(format!("retire answered {other:?}"))),
                }
            }
        }
        Ok(retired)
    }

    /// Make every shard hand out hold sequence numbers from `next_seq` on (at least).
    pub async fn fence(&self, next_seq: u64) -> Result<(), EngineError> {
        for s in 0..self.shards.len() {
            match self.execute(s, Command::Fence { next_seq }).await? {
                Reply::Fenced => {}
                other => return Err(EngineError::Unavailable(format!("fence answered {other:?}"))),
            }
        }
        Ok(())
    }

    /// Held holds made before `made_before_ms`, on every shard, oldest first per shard, at
    /// most `limit` ([`LIVE_HOLDS_PAGE_MAX`]) per shard after `after[shard]`.
    pub async fn live_holds(
        &self,
        made_before_ms: u64,
        after: &[HoldId],
        limit: u32,
    ) -> Result<Vec<LiveHold>, EngineError> {
        let mut out = Vec::new();
        for s in 0..self.shards.len() {
            let query = Query::LiveHolds { made_before_ms, after: after.get(s).copied().unwrap_or(0), limit };
            let (tx, rx) = oneshot::channel();
            self.send(s, Envelope::Queries(vec![query], tx))?;
            match rx.await.map_err(|_| EngineError::Unavailable("shard stopped".into()))?.pop() {
                Some(Answer::LiveHolds(holds)) => out.extend(holds),
                other => return Err(EngineError::Unavailable(format!("live holds answered {other:?}"))),
            }
        }
        Ok(out)
    }

    /// Answer queries, grouped per shard (one message per shard), in the order asked.
    pub async fn query(&self, queries: Vec<Query>) -> Result<Vec<Answer>, EngineError> {
        let shard_of = |q: &Query| match q {
            Query::Remaining { run, .. } | Query::SeatMap { run, .. } => self.shard_of(run),
            Query::Hold { hold, .. } => self.shard_of_hold(*hold),
            // A page of one shard's held holds: the shard of the hold it continues after.
            Query::LiveHolds { after, .. } => self.shard_of_hold(*after),
            Query::Digest { shard } => usize::from(*shard) % self.shards.len(),
        };
        let owners: Vec<usize> = queries.iter().map(shard_of).collect();
        let mut per_shard: Vec<Vec<Query>> = vec![Vec::new(); self.shards.len()];
        for (q, &s) in queries.into_iter().zip(&owners) {
            per_shard[s].push(q);
        }
        let mut pending = Vec::new();
        for (s, qs) in per_shard.into_iter().enumerate().filter(|(_, qs)| !qs.is_empty()) {
            let (tx, rx) = oneshot::channel();
            self.send(s, Envelope::Queries(qs, tx))?;
            pending.push((s, rx));
        }
        let mut answers: Vec<std::vec::IntoIter<Answer>> =
            (0..self.shards.len()).map(|_| Vec::new().into_iter()).collect();
        for (s, rx) in pending {
            answers[s] = rx.await.map_err(|_| EngineError::Unavailable("shard stopped".into()))?.into_iter();
        }
        Ok(owners.iter().map(|&s| answers[s].next().expect("one answer per query")).collect())
    }

    /// Each shard's (log position, state digest), read together on the shard's thread.
    pub async fn digests(&self) -> Result<Vec<(u64, u64)>, EngineError> {
        let queries = (0..self.shards.len()).map(|s| Query::Digest { shard: s as u8 }).collect();
        let answers = self.query(queries).await?;
        answers
            .into_iter()
            .map(|a| match a {
                Answer::Digest { lsn, digest } => Ok((lsn, digest)),
                other => Err(EngineError::Unavailable(format!("digest answered {other:?}"))),
            })
            .collect()
    }

    /// Snapshot every shard now (each up to its last durable batch); each snapshot's lsn.
    pub async fn snapshot(&self) -> Result<Vec<u64>, EngineError> {
        let mut out = Vec::new();
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            s.snapshots.send(Request::Now(tx)).map_err(|_| EngineError::Unavailable("snapshotter stopped".into()))?;
            out.push(rx.await.map_err(|_| EngineError::Unavailable("snapshotter stopped".into()))??);
        }
        Ok(out)
    }

    /// Each shard's stats.
    pub async fn stats(&self) -> Result<Vec<ShardStats>, EngineError> {
        let mut out = Vec::new();
        for s in 0..self.shards.len() {
            let (tx, rx) = oneshot::channel();
            self.send(s, Envelope::Stats(tx))?;
            out.push(rx.await.map_err(|_| EngineError::Unavailable("shard stopped".into()))?);
        }
        Ok(out)
    }

    /// Stop the shard threads after they finish what is queued, and wait for them (their
    /// directory locks are released when this returns). Later calls get `Unavailable`.
    pub fn close(&self) {
        for s in &self.shards {
            // A blocking send: the stop must get in even behind a full queue.
            let _ = s.tx.send(Envelope::Stop);
            let _ = s.snapshots.send(Request::Stop);
        }
        for s in &self.shards {
            for thread in [&s.thread, &s.snapshotter] {
                if let Some(t) = thread.lock().expect("not poisoned").take() {
                    let _ = t.join();
                }
            }
        }
    }

    /// `close`, consuming the handle.
    pub fn shutdown(self) {
        self.close();
    }
}

/// Recover shard `i` and start its thread and its snapshotter's.
fn open_shard(config: &EngineConfig, i: u8, clock: Clock) -> Result<(ShardHandle, RecoveryReport), EngineError> {
    let (dir, lock) = shard_dir(config, i)?;
    let unavailable = |e: &dyn std::fmt::Display| EngineError::Unavailable(format!("{}: {e}", dir.display()));
    let limits = config.limits.clone();
    let (sm, mut wal, report) = Wal::recover(&dir, config.sync, || StateMachine::new(i, limits))
        .map_err(|e| unavailable(&format!("recovering: {e}")))?;
    wal.set_segment_len_max(config.segment_len_max);
    assert_eq!(sm.shard(), i, "shard directory holds another shard's state");
    let progress = Arc::new(Progress::default());
    let last_lsn = wal.next_lsn() - 1;
    progress.durable_lsn.store(last_lsn, Ordering::Release);
    progress.snapshot_lsn.store(report.snapshot_lsn, Ordering::Release);
    let snapshotter = Snapshotter {
        dir: dir.clone(),
        replica: sm.clone(),
        reader: LogReader::new(&dir, last_lsn),
        progress: progress.clone(),
        every_ops: config.snapshot_every_ops,
        poll: config.tick,
    };
    let (snapshots, requests) = bounded(16);
    let snapshotter = spawn(format!("engine-snap-{i}"), move || snapshotter.run(requests), &dir)?;
    let (tx, rx) = bounded(config.queue_depth_max);
    let shard_config = ShardConfig { batch_len_max: config.batch_len_max, tick: config.tick };
    let shard =
        Shard { sm, wal, config: shard_config, clock, progress: progress.clone(), lock, stats: ShardStats::default() };
    let thread = spawn(format!("engine-shard-{i}"), move || shard.run(rx), &dir)?;
    Ok((ShardHandle::new(tx, progress, thread, snapshots, snapshotter), report))
}

/// Open shard `i` of a replica from its newest snapshot and start its threads.
fn open_replica_shard(
    config: &EngineConfig,
    i: u8,
    clock: Clock,
    replica: &ReplicaConfig,
    proposals: tokio::sync::mpsc::Sender<Proposal>,
) -> Result<(ShardHandle, ShardFeed), EngineError> {
    let (dir, lock) = shard_dir(config, i)?;
    let unavailable = |e: &dyn std::fmt::Display| EngineError::Unavailable(format!("{}: {e}", dir.display()));
    let (seq, sm) = match crate::wal::newest_snapshot(&dir).map_err(|e| unavailable(&e))? {
        Some((seq, path)) => (seq, crate::wal::load_snapshot(&path).map_err(|e| unavailable(&e))?),
        None => (0, StateMachine::new(i, config.limits.clone())),
    };
    assert_eq!(sm.shard(), i, "shard directory holds another shard's state");
    let progress = Arc::new(Progress::default());
    progress.durable_lsn.store(seq, Ordering::Release);
    progress.snapshot_lsn.store(seq, Ordering::Release);
    let snapshotter = FedSnapshotter {
        dir: dir.clone(),
        replica: sm.clone(),
        applied_seq: seq,
        progress: progress.clone(),
        every_ops: config.snapshot_every_ops,
    };
    let (to_snapshotter, entries) = bounded(FEED_LEN_MAX);
    let (snapshots, requests) = bounded(16);
    let snapshotter = spawn(format!("engine-snap-{i}"), move || snapshotter.run(requests, entries), &dir)?;
    let (to_shard, feed) = bounded(FEED_LEN_MAX);
    let (tx, rx) = bounded(config.queue_depth_max);
    let shard = ReplicaShard {
        sm,
        applied_seq: seq,
        config: replica.clone(),
        batch_len_max: config.batch_len_max,
        queue_depth_max: config.queue_depth_max,
        proposals,
        clock,
        progress: progress.clone(),
        lock,
        stats: ShardStats::default(),
        next_id: 0,
        inflight: Default::default(),
        queued: Default::default(),
        last_entry: std::time::Instant::now(),
        last_tick_s: 0,
    };
    let thread = spawn(format!("engine-shard-{i}"), move || shard.run(rx, feed), &dir)?;
    let handle = ShardHandle::new(tx, progress, thread, snapshots, snapshotter);
    Ok((handle, ShardFeed { shard: i, applied_seq: seq, to_shard, to_snapshotter }))
}

/// Shard `i`'s directory, made if missing, and its lock (held while the shard runs).
fn shard_dir(config: &EngineConfig, i: u8) -> Result<(PathBuf, std::fs::File), EngineError> {
    let dir = config.dir.join(format!("shard-{i}"));
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::Unavailable(format!("{}: {e}", dir.display())))?;
    let lock = lock_dir(&dir)?;
    Ok((dir, lock))
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static, dir: &Path) -> Result<JoinHandle<()>, EngineError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| EngineError::Unavailable(format!("{}: starting a thread: {e}", dir.display())))
}

/// The id of the engine whose logs live in `dir` (made on first use and kept in `dir/ENGINE_ID`,
/// so it moves with the directory). A database records which engine it belongs to by it.
pub fn engine_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("ENGINE_ID");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let id = format!("engine-{:016x}{:016x}", random_u64(), random_u64());
    let tmp = dir.join("ENGINE_ID.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(id)
}

/// 64 random bits: the standard library's hasher keys are random per instance (no crate). For
/// ids (an engine's, a node's in its proposals), not for secrets.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Refuse a directory written with more shards than configured: runs map to shards by hash, so
/// the extra shards' holds would silently vanish (and fewer would re-map every run).
fn check_shard_count(config: &EngineConfig) -> Result<(), EngineError> {
    let Ok(entries) = std::fs::read_dir(&config.dir) else { return Ok(()) };
    let found = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("shard-")?.parse::<u32>().ok())
        .max()
        .map_or(0, |n| n + 1);
    if found > 0 && found != u32::from(config.shards) {
        return Err(EngineError::Unavailable(format!(
            "{} holds {found} shards but {} are configured; runs map to shards by hash, so the shard count of an engine directory cannot change",
            config.dir.display(),
            config.shards
        )));
    }
    Ok(())
}

/// Take the shard directory's lock, so that two engines never write one log.
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, EngineError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| EngineError::Unavailable(format!("{}: {e}", path.display())))?;
    file.try_lock().map_err(|_| {
        EngineError::Unavailable(format!("{} is in use by another engine (lock {})", dir.display(), path.display()))
    })?;
    Ok(file)
}

/// A part's refusal names its leg within the part; map it to the caller's leg index.
fn map_leg(r: Reject, shards: &[usize], shard: usize) -> Reject {
    let global = |leg: u8| {
        shards.iter().enumerate().filter(|(_, s)| **s == shard).nth(leg as usize).map_or(leg, |(i, _)| i as u8)
    };
    match r {
        Reject::NotEnoughSeats { leg } => Reject::NotEnoughSeats { leg: global(leg) },
        Reject::StandingNotOnSale { leg } => Reject::StandingNotOnSale { leg: global(leg) },
        other => other,
    }
}
