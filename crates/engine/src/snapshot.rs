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

use crossbeam_channel::{Receiver, RecvTimeoutError, select};
use tokio::sync::oneshot;

use crate::entry::Entry;
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

/// A replicated shard's snapshotter: fed the log's entries as the shard is (see
/// [`crate::replica`]), it applies them to its replica and writes a snapshot named by the
/// entry's position every `every_ops` commands (or when asked).
pub(crate) struct FedSnapshotter {
    pub dir: PathBuf,
    pub replica: StateMachine,
    pub applied_seq: u64,
    pub progress: Arc<Progress>,
    pub every_ops: u64,
}

impl FedSnapshotter {
    pub fn run(mut self, rx: Receiver<Request>, entries: Receiver<Arc<Entry>>) {
        let mut since: u64 = 0;
        loop {
            select! {
                recv(entries) -> e => match e {
                    Ok(e) => since += self.apply(&e),
                    Err(_) => return,
                },
                recv(rx) -> r => match r {
                    Ok(Request::Now(tx)) => {
                        while let Ok(e) = entries.try_recv() {
                            self.apply(&e);
                        }
                        let done = self.snapshot();
                        since = if done.is_ok() { 0 } else { since };
                        let _ = tx.send(done);
                    }
                    Ok(Request::Stop) | Err(_) => return,
                },
            }
            if since >= self.every_ops {
                match self.snapshot() {
                    Ok(_) => since = 0,
                    Err(e) => tracing::warn!(shard = self.replica.shard(), error = %e, "snapshot failed"),
                }
            }
        }
    }

    /// Apply one entry; the commands it held. The shard itself stops on a gap; this replica
    /// only stops snapshotting (its snapshots would not be the log's state).
    fn apply(&mut self, e: &Entry) -> u64 {
        if e.seq <= self.applied_seq || self.applied_seq == u64::MAX {
            return 0;
        }
        if e.seq != self.applied_seq + 1 {
            tracing::error!(shard = self.replica.shard(), seq = e.seq, "gap in the engine's log; snapshots stop");
            self.applied_seq = u64::MAX;
            return 0;
        }
        if e.batch.commands.is_empty() {
            self.replica.advance(e.time_ms);
        } else {
            self.replica.apply(&e.batch.commands, e.time_ms);
        }
        self.applied_seq = e.seq;
        e.batch.commands.len() as u64
    }

    fn snapshot(&mut self) -> Result<u64, EngineError> {
        let seq = self.applied_seq;
        if seq == u64::MAX {
            return Err(EngineError::Unavailable("snapshot: the replica saw a gap in the log".into()));
        }
        if seq == self.progress.snapshot_lsn.load(Ordering::Acquire) {
            return Ok(seq);
        }
        write_snapshot(&self.dir, seq, &self.replica)
            .map_err(|e| EngineError::Unavailable(format!("snapshot: {e}")))?;
        self.progress.snapshot_lsn.store(seq, Ordering::Release);
        tracing::debug!(shard = self.replica.shard(), seq, "snapshot written");
        Ok(seq)
    }
}
