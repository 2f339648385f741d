//! The snapshotter: one thread per shard that writes snapshots without stalling the shard.
//!
//! It keeps a replica of the shard's state machine of its own. When `snapshot_every_ops`
//! commands have been made durable since its last snapshot (or when asked), it reads the log
//! from where it stopped up to the last durable record (`wal::LogReader`), applies it to the
//! replica (the state machine is deterministic, so the replica equals the shard's state at
//! that lsn), and streams the replica to a snapshot file. The shard thread only publishes
//! how far its log is durable ([`Progress`]); its buyers never wait for a snapshot. The price
//! is a second copy of the state in memory and a second application of every command, on
//! another core.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use crate::error::EngineError;
use crate::state::StateMachine;
use crate::wal::{LogReader, write_snapshot};

/// What the shard thread publishes and the snapshotter reads (and reports back).
#[derive(Debug, Default)]
pub struct Progress {
    /// The last lsn written and synced.
    pub durable_lsn: AtomicU64,
    /// Commands made durable since the shard started.
    pub durable_commands: AtomicU64,
    /// The lsn of the newest snapshot.
    pub snapshot_lsn: AtomicU64,
}

pub(crate) enum Request {
    /// Snapshot now (up to the last durable record); answers the snapshot's lsn.
    Now(oneshot::Sender<Result<u64, EngineError>>),
    Stop,
}

pub(crate) struct Snapshotter {
    pub dir: PathBuf,
    pub replica: StateMachine,
    pub reader: LogReader,
    pub progress: Arc<Progress>,
    pub every_ops: u64,
    pub poll: Duration,
}

impl Snapshotter {
    pub fn run(mut self, rx: Receiver<Request>) {
        let mut commands_at_last = 0;
        loop {
            match rx.recv_timeout(self.poll) {
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Request::Now(tx)) => {
                    let commands = self.progress.durable_commands.load(Ordering::Acquire);
                    let done = self.snapshot();
                    if done.is_ok() {
                        commands_at_last = commands;
                    }
                    let _ = tx.send(done);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let commands = self.progress.durable_commands.load(Ordering::Acquire);
                    if commands - commands_at_last < self.every_ops {
                        continue;
                    }
                    match self.snapshot() {
                        Ok(_) => commands_at_last = commands,
                        // Not fatal: the log still has everything; try again after more work.
                        Err(e) => tracing::warn!(shard = self.replica.shard(), error = %e, "snapshot failed"),
                    }
                }
            }
        }
    }

    /// Catch the replica up with the durable log and write it out.
    fn snapshot(&mut self) -> Result<u64, EngineError> {
        let unavailable = |e: std::io::Error| EngineError::Unavailable(format!("snapshot: {e}"));
        let target = self.progress.durable_lsn.load(Ordering::Acquire);
        if target == self.progress.snapshot_lsn.load(Ordering::Acquire) {
            return Ok(target);
        }
        let started = std::time::Instant::now();
        self.reader.apply_until(target, &mut self.replica).map_err(unavailable)?;
        write_snapshot(&self.dir, target, &self.replica).map_err(unavailable)?;
        self.progress.snapshot_lsn.store(target, Ordering::Release);
        let ms = started.elapsed().as_millis() as u64;
        tracing::debug!(shard = self.replica.shard(), lsn = target, ms, "snapshot written");
        Ok(target)
    }
}
