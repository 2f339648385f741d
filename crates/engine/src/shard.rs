//! One shard: a thread that owns a state machine and its log, fed by a bounded channel.
//!
//! The loop: wait for work (or a tick, so holds expire on time when nothing else happens),
//! drain up to `batch_len_max` envelopes, apply the commands as one batch, append the batch
//! to the log and sync it, and only then send the replies. Queries are answered from memory in
//! the same pass and never logged. Every `snapshot_every_ops` commands the state is snapshotted.
//!
//! If the log cannot be written, the shard replies `Unavailable` to the batch and stops: its
//! memory is now ahead of its disk, and nothing it says could be trusted.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use crate::command::{Answer, Command, Query, Reply};
use crate::error::EngineError;
use crate::state::StateMachine;
use crate::wal::Wal;

/// The engine's source of time, in ms since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

pub(crate) enum Envelope {
    Command(Command, oneshot::Sender<Result<Reply, EngineError>>),
    Queries(Vec<Query>, oneshot::Sender<Vec<Answer>>),
    Snapshot(oneshot::Sender<Result<u64, EngineError>>),
    /// Stats for benchmarks and metrics: (materialised runs, holds made).
    Stats(oneshot::Sender<(usize, usize)>),
    /// Finish what is queued before this, then stop.
    Stop,
}

#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub batch_len_max: usize,
    pub snapshot_every_ops: u64,
    pub tick: Duration,
}

/// `_lock` is the shard directory's lock file; it is held as long as the loop runs.
pub(crate) fn run(
    mut sm: StateMachine,
    mut wal: Wal,
    rx: Receiver<Envelope>,
    config: ShardConfig,
    clock: Clock,
    _lock: std::fs::File,
) {
    let mut commands: Vec<Command> = Vec::with_capacity(config.batch_len_max);
    let mut waiters = Vec::with_capacity(config.batch_len_max);
    let mut others: Vec<Envelope> = Vec::new();
    let mut since_snapshot = 0u64;
    let mut stopping = false;
    while !stopping {
        let first = match rx.recv_timeout(config.tick) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for e in first.into_iter().chain(rx.try_iter().take(config.batch_len_max - 1)) {
            match e {
                Envelope::Command(c, tx) => {
                    commands.push(c);
                    waiters.push(tx);
                }
                other => others.push(other),
            }
        }
        let now = clock();
        let replies = sm.apply(&commands, now);
        if !commands.is_empty() {
            if let Err(e) = wal.append(sm.now_ms(), &commands) {
                for tx in waiters.drain(..) {
                    let _ = tx.send(Err(EngineError::Unavailable(format!("log write failed: {e}"))));
                }
                return;
            }
            since_snapshot += commands.len() as u64;
        }
        for (tx, reply) in waiters.drain(..).zip(replies) {
            let _ = tx.send(Ok(reply));
        }
        commands.clear();
        for e in others.drain(..) {
            match e {
                Envelope::Queries(qs, tx) => {
                    let _ = tx.send(qs.iter().map(|q| sm.query(q)).collect());
                }
                Envelope::Snapshot(tx) => {
                    let r = wal.snapshot(&sm).map_err(|e| EngineError::Unavailable(e.to_string()));
                    since_snapshot = 0;
                    let _ = tx.send(r);
                }
                Envelope::Stats(tx) => {
                    let _ = tx.send((sm.materialised_runs(), sm.holds_made()));
                }
                Envelope::Stop => stopping = true,
                Envelope::Command(..) => unreachable!("commands are batched above"),
            }
        }
        if since_snapshot >= config.snapshot_every_ops {
            since_snapshot = 0;
            if let Err(e) = wal.snapshot(&sm) {
                // Not fatal: the log still has everything; try again after more work.
                tracing::warn!(shard = sm.shard(), error = %e, "snapshot failed");
            }
        }
    }
}
