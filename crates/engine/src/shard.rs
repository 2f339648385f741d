//! One shard: a thread that owns a state machine and its log, fed by a bounded channel.
//!
//! The loop: wait for work (or a tick, so holds expire on time when nothing else happens),
//! drain up to `batch_len_max` envelopes, apply the commands as one batch, append the batch
//! to the log and sync it, and only then send the replies. A tick that changed the state (it
//! ended holds or forgot keys) is logged too, as a batch with no commands, so a replay goes
//! through the same states. Queries are answered from memory in the same pass and never
//! logged. Snapshots are not taken here: the snapshotter thread (`crate::snapshot`) follows
//! the log, and this loop only publishes how far the log is durable.
//!
//! If the log cannot be written, the shard replies `Unavailable` to the batch and stops: its
//! memory is now ahead of its disk, and nothing it says could be trusted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use crate::command::{Answer, Command, Query, Reply};
use crate::error::EngineError;
use crate::reads::StateSize;
use crate::snapshot::Progress;
use crate::state::{Advanced, StateMachine};
use crate::wal::Wal;

/// The engine's source of time, in ms since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// Core time this thread has used, µs: told apart from wall time, it says whether a slow batch
/// was the shard's own work or a wait (for a core, or for the disk).
#[cfg(unix)]
fn thread_cpu_us() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write into; the clock id is a constant Linux and the
    // BSDs define; the call has no other effect.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    if ok { t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000 } else { 0 }
}

#[cfg(not(unix))]
fn thread_cpu_us() -> u64 {
    0
}

/// What one shard reports about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub size: StateSize,
    /// Batches logged (commands, or a tick that changed the state).
    pub batches: u64,
    pub commands: u64,
    /// The longest time from a batch's start to its replies (apply, append, sync), µs.
    pub longest_batch_us: u64,
    /// The longest time the state machine took over one batch (no disk), µs.
    pub longest_apply_us: u64,
    /// Batches that took longer than 10 ms from start to replies.
    pub batches_over_10ms: u64,
    /// Of those, the batches in which the shard's own thread was on a core for 10 ms or more
    /// (its work); the others waited (for the core, or for the disk's sync).
    pub batches_over_10ms_on_cpu: u64,
    /// The most core time the shard's thread spent on one batch (apply, append, sync), µs.
    pub longest_batch_cpu_us: u64,
    /// The most core time the state machine alone spent on one batch, µs.
    pub longest_apply_cpu_us: u64,
    /// Batches whose state-machine work alone took 10 ms or more of core time (each is also
    /// logged, with what it held).
    pub applies_over_10ms_on_cpu: u64,
    /// The longest log append (write and sync) of one batch, µs.
    pub longest_append_us: u64,
    /// Log appends (write and sync) that took longer than 10 ms: the disk's share of the
    /// slow batches.
    pub appends_over_10ms: u64,
    pub durable_lsn: u64,
    pub snapshot_lsn: u64,
}

pub(crate) enum Envelope {
    Command(Command, oneshot::Sender<Result<Reply, EngineError>>),
    Queries(Vec<Query>, oneshot::Sender<Vec<Answer>>),
    Stats(oneshot::Sender<ShardStats>),
    /// Finish what is queued before this, then stop.
    Stop,
}

#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub batch_len_max: usize,
    pub tick: Duration,
}

/// Everything the shard thread owns. `lock` is the shard directory's lock file; it is held as
/// long as the loop runs.
pub(crate) struct Shard {
    pub sm: StateMachine,
    pub wal: Wal,
    pub config: ShardConfig,
    pub clock: Clock,
    pub progress: Arc<Progress>,
    pub lock: std::fs::File,
    pub stats: ShardStats,
}

impl Shard {
    pub fn run(mut self, rx: Receiver<Envelope>) {
        let _lock = &self.lock;
        let mut commands: Vec<Command> = Vec::with_capacity(self.config.batch_len_max);
        let mut waiters = Vec::with_capacity(self.config.batch_len_max);
        let mut others: Vec<Envelope> = Vec::new();
        let mut stopping = false;
        while !stopping {
            let first = match rx.recv_timeout(self.config.tick) {
                Ok(e) => Some(e),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            for e in first.into_iter().chain(rx.try_iter().take(self.config.batch_len_max - 1)) {
                match e {
                    Envelope::Command(c, tx) => {
                        commands.push(c);
                        waiters.push(tx);
                    }
                    other => others.push(other),
                }
            }
            if !self.batch(&mut commands, &mut waiters) {
                return;
            }
            for e in others.drain(..) {
                stopping |= self.answer(e);
            }
        }
    }

    /// Apply and log one batch, then reply. False when the log failed and the shard stops.
    fn batch(
        &mut self,
        commands: &mut Vec<Command>,
        waiters: &mut Vec<oneshot::Sender<Result<Reply, EngineError>>>,
    ) -> bool {
        let started = Instant::now();
        let cpu_started = thread_cpu_us();
        let now = (self.clock)();
        let (replies, advanced) =
            if commands.is_empty() { (Vec::new(), self.sm.advance(now)) } else { self.sm.apply_counted(commands, now) };
        let changed = !commands.is_empty() || advanced.changed();
        let applied_us = started.elapsed().as_micros() as u64;
        let apply_cpu_us = thread_cpu_us().saturating_sub(cpu_started);
        self.stats.longest_apply_us = self.stats.longest_apply_us.max(applied_us);
        self.note_apply_cpu(apply_cpu_us, commands, advanced);
        if changed {
            let appending = Instant::now();
            let appended = self.wal.append(self.sm.now_ms(), commands);
            let append_us = appending.elapsed().as_micros() as u64;
            self.stats.longest_append_us = self.stats.longest_append_us.max(append_us);
            self.stats.appends_over_10ms += u64::from(append_us > 10_000);
            if let Err(e) = appended {
                for tx in waiters.drain(..) {
                    let _ = tx.send(Err(EngineError::Unavailable(format!("log write failed: {e}"))));
                }
                tracing::error!(shard = self.sm.shard(), error = %e, "engine log write failed; shard stopped");
                return false;
            }
            let lsn = self.wal.next_lsn() - 1;
            self.progress.durable_commands.fetch_add(commands.len() as u64, Ordering::Release);
            self.progress.durable_lsn.store(lsn, Ordering::Release);
            self.stats.batches += 1;
            self.stats.commands += commands.len() as u64;
        }
        for (tx, reply) in waiters.drain(..).zip(replies) {
            let _ = tx.send(Ok(reply));
        }
        commands.clear();
        let us = started.elapsed().as_micros() as u64;
        let cpu_us = thread_cpu_us().saturating_sub(cpu_started);
        self.stats.longest_batch_us = self.stats.longest_batch_us.max(us);
        self.stats.longest_batch_cpu_us = self.stats.longest_batch_cpu_us.max(cpu_us);
        self.stats.batches_over_10ms += u64::from(us > 10_000);
        self.stats.batches_over_10ms_on_cpu += u64::from(us > 10_000 && cpu_us >= 10_000);
        true
    }

    /// Count a batch whose state-machine work alone kept the thread on a core for 10 ms or
    /// more, and say what it held: such a batch delays every caller in it, and what it held is
    /// what to look at.
    fn note_apply_cpu(&mut self, apply_cpu_us: u64, commands: &[Command], advanced: Advanced) {
        self.stats.longest_apply_cpu_us = self.stats.longest_apply_cpu_us.max(apply_cpu_us);
        if apply_cpu_us < 10_000 {
            return;
        }
        self.stats.applies_over_10ms_on_cpu += 1;
        let mut kinds = [0u32; Command::KINDS.len()];
        for c in commands {
            kinds[c.kind_index()] += 1;
        }
        tracing::warn!(
            shard = self.sm.shard(),
            apply_cpu_us,
            commands = commands.len(),
            holds = kinds[0],
            confirms = kinds[1],
            releases = kinds[2],
            returns = kinds[3],
            retires = kinds[4],
            expired = advanced.expired,
            keys_forgotten = advanced.forgotten,
            // Not `size()`: it walks every run to count sold legs, on a batch already slow.
            live_holds = self.sm.live.len(),
            keys = self.sm.keys.len(),
            "engine batch slow on the core"
        );
    }

    /// Answer a query or stats request; true on `Stop`.
    fn answer(&mut self, e: Envelope) -> bool {
        match e {
            Envelope::Queries(qs, tx) => {
                let lsn = self.progress.durable_lsn.load(Ordering::Acquire);
                let _ = tx.send(qs.iter().map(|q| at_lsn(self.sm.query(q), lsn)).collect());
            }
            Envelope::Stats(tx) => {
                self.stats.size = self.sm.size();
                self.stats.durable_lsn = self.progress.durable_lsn.load(Ordering::Acquire);
                self.stats.snapshot_lsn = self.progress.snapshot_lsn.load(Ordering::Acquire);
                let _ = tx.send(self.stats);
            }
            Envelope::Stop => return true,
            Envelope::Command(..) => unreachable!("commands are batched"),
        }
        false
    }
}

/// A digest answer names the log position it was taken at (the shard's, not the state's).
pub(crate) fn at_lsn(answer: Answer, lsn: u64) -> Answer {
    match answer {
        Answer::Digest { digest, .. } => Answer::Digest { lsn, digest },
        other => other,
    }
}
