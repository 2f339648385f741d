//! The engine as one replica of a shared, ordered log (several nodes; `chepiao-cluster` puts
//! the log on a NATS JetStream stream per shard). No consensus here: the log orders batches,
//! and every replica applies the same batches in the same order at the same times.
//!
//! One shard's loop, on every node:
//! - callers' commands are queued and sent out as [`Proposal`]s: at most `batch_len_max`
//!   commands each and `inflight_max` proposals in flight (group commit, as the local log does);
//! - the log's entries come back as [`Feed::Entry`], every node's in one order. Each is applied
//!   at the log's own time for it (kept monotonic by the state machine), so every replica ends
//!   in the same state and hands out the same hold ids: ids come from a sequence the log
//!   advances, so they are unique across nodes;
//! - when an entry is one of this node's proposals, its callers get their replies: a hold is
//!   acknowledged only once the log has it (it survives this node) and this replica applied it;
//! - an idle shard proposes a tick once a second, named by the second, so the log drops the
//!   copies other nodes propose and time moves (holds expire) when no one buys;
//! - queries are answered from this replica's memory.
//!
//! The snapshotter gets the same entries ([`crate::snapshot`]) and writes snapshots named by
//! the log position they hold; a node starts from its newest snapshot (or a shared one) and
//! the log after it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::command::{Command, Reply};
use crate::entry::{Batch, Entry, Feed, Proposal};
use crate::error::EngineError;
use crate::shard::{Clock, Envelope, ShardStats, at_lsn};
use crate::snapshot::Progress;
use crate::state::StateMachine;

/// The replicated mode's own settings.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This node's id in proposals (random per process start, never 0).
    pub node: u64,
    /// Proposals of one shard in the log's hands at once.
    pub inflight_max: usize,
    /// How long a proposal may take to come back applied before its callers get `Unavailable`.
    pub proposal_timeout: Duration,
    /// How often an idle shard proposes a tick.
    pub tick_every: Duration,
}

impl ReplicaConfig {
    pub fn new(node: u64) -> ReplicaConfig {
        assert_ne!(node, 0, "node 0 names ticks");
        ReplicaConfig {
            node,
            inflight_max: 4,
            proposal_timeout: Duration::from_secs(15),
            tick_every: Duration::from_secs(1),
        }
    }
}

type Waiter = oneshot::Sender<Result<Reply, EngineError>>;

pub(crate) struct Inflight {
    waiters: Vec<Waiter>,
    deadline: Instant,
}

/// One shard of a replica: the state machine, fed by the log.
pub(crate) struct ReplicaShard {
    pub sm: StateMachine,
    /// The last entry applied (the snapshot's position at start).
    pub applied_seq: u64,
    pub config: ReplicaConfig,
    pub batch_len_max: usize,
    pub queue_depth_max: usize,
    pub proposals: tokio::sync::mpsc::Sender<Proposal>,
    pub clock: Clock,
    pub progress: Arc<Progress>,
    pub lock: std::fs::File,
    pub stats: ShardStats,
    pub(crate) next_id: u64,
    pub(crate) inflight: FxHashMap<u64, Inflight>,
    pub(crate) queued: VecDeque<(Command, Waiter)>,
    pub(crate) last_entry: Instant,
    pub(crate) last_tick_s: u64,
}

impl ReplicaShard {
    pub fn run(mut self, commands: Receiver<Envelope>, feed: Receiver<Feed>) {
        let _lock = &self.lock;
        let poll = Duration::from_millis(100);
        loop {
            let stop = select! {
                recv(feed) -> f => match f {
                    Ok(f) => !self.on_feed(f),
                    Err(_) => true,
                },
                recv(commands) -> e => match e {
                    Ok(e) => self.on_envelope(e),
                    Err(_) => true,
                },
                default(poll) => false,
            };
            if stop || !self.drain(&commands, &feed) {
                return self.stop(&feed);
            }
            self.propose();
            self.tick_if_idle();
            self.fail_overdue();
        }
    }

    /// Take what else is ready: the log first, so replies go out before new proposals. False
    /// when the shard must stop.
    fn drain(&mut self, commands: &Receiver<Envelope>, feed: &Receiver<Feed>) -> bool {
        while let Ok(f) = feed.try_recv() {
            if !self.on_feed(f) {
                return false;
            }
        }
        while self.queued.len() < self.queue_depth_max {
            let Ok(e) = commands.try_recv() else { break };
            if self.on_envelope(e) {
                return false;
            }
        }
        true
    }

    /// A caller's message; true on `Stop`.
    fn on_envelope(&mut self, e: Envelope) -> bool {
        match e {
            Envelope::Command(c, tx) => self.queued.push_back((c, tx)),
            Envelope::Queries(qs, tx) => {
                let _ = tx.send(qs.iter().map(|q| at_lsn(self.sm.query(q), self.applied_seq)).collect());
            }
            Envelope::Stats(tx) => {
                self.stats.size = self.sm.size();
                self.stats.durable_lsn = self.applied_seq;
                self.stats.snapshot_lsn = self.progress.snapshot_lsn.load(Ordering::Acquire);
                let _ = tx.send(self.stats);
            }
            Envelope::Stop => return true,
        }
        false
    }

    /// Apply one entry (or fail a proposal). False when the log broke its promise of order.
    fn on_feed(&mut self, f: Feed) -> bool {
        let e = match f {
            Feed::Entry(e) => e,
            Feed::Failed { id, error } => {
                if let Some(i) = self.inflight.remove(&id) {
                    reply_all(i.waiters, || EngineError::Unavailable(format!("the engine's log: {error}")));
                }
                return true;
            }
        };
        if e.seq <= self.applied_seq {
            return true; // delivered again (a consumer that restarted): applied already
        }
        if e.seq != self.applied_seq + 1 {
            tracing::error!(
                shard = self.sm.shard(),
                seq = e.seq,
                applied = self.applied_seq,
                "gap in the engine's log"
            );
            return false;
        }
        self.apply(&e);
        true
    }

    fn apply(&mut self, e: &Entry) {
        let started = Instant::now();
        let commands = &e.batch.commands;
        let replies = if commands.is_empty() {
            self.sm.advance(e.time_ms);
            Vec::new()
        } else {
            self.sm.apply(commands, e.time_ms)
        };
        let us = started.elapsed().as_micros() as u64;
        self.applied_seq = e.seq;
        self.progress.durable_commands.fetch_add(commands.len() as u64, Ordering::Release);
        self.progress.durable_lsn.store(e.seq, Ordering::Release);
        self.stats.batches += 1;
        self.stats.commands += commands.len() as u64;
        self.stats.longest_apply_us = self.stats.longest_apply_us.max(us);
        self.last_entry = Instant::now();
        if e.batch.origin == self.config.node
            && let Some(i) = self.inflight.remove(&e.batch.id)
        {
            assert_eq!(i.waiters.len(), replies.len(), "one reply per command");
            for (tx, reply) in i.waiters.into_iter().zip(replies) {
                let _ = tx.send(Ok(reply));
            }
        }
    }

    /// Send queued commands to the log, `batch_len_max` per proposal, while fewer than
    /// `inflight_max` proposals are out.
    fn propose(&mut self) {
        while self.inflight.len() < self.config.inflight_max && !self.queued.is_empty() {
            let n = self.queued.len().min(self.batch_len_max);
            let (commands, waiters): (Vec<Command>, Vec<Waiter>) = self.queued.drain(..n).unzip();
            self.next_id += 1;
            let id = self.next_id;
            let batch = Batch { origin: self.config.node, id, commands };
            let shard = self.sm.shard();
            let msg_id = format!("{:016x}-{shard}-{id}", self.config.node);
            let proposal = Proposal { shard, id, msg_id, payload: batch.encode(), is_tick: false };
            match self.proposals.try_send(proposal) {
                Ok(()) => {
                    let deadline = Instant::now() + self.config.proposal_timeout;
                    self.inflight.insert(id, Inflight { waiters, deadline });
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => reply_all(waiters, || EngineError::Busy),
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    reply_all(waiters, || EngineError::Unavailable("the engine's log is closed".into()))
                }
            }
        }
    }

    /// Once a second with nothing applied, propose a tick named by the second.
    fn tick_if_idle(&mut self) {
        if self.last_entry.elapsed() < self.config.tick_every {
            return;
        }
        let now_s = (self.clock)() / 1000;
        if now_s == self.last_tick_s {
            return;
        }
        self.last_tick_s = now_s;
        let shard = self.sm.shard();
        let batch = Batch { origin: 0, id: now_s, commands: Vec::new() };
        let msg_id = format!("tick-{shard}-{now_s}");
        let _ = self.proposals.try_send(Proposal { shard, id: 0, msg_id, payload: batch.encode(), is_tick: true });
    }

    /// Proposals that did not come back in time: their callers get `Unavailable` (if the
    /// entry arrives later it is applied all the same; its holds expire unpaid).
    fn fail_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u64> = self.inflight.iter().filter(|(_, i)| i.deadline <= now).map(|(id, _)| *id).collect();
        for id in overdue {
            let i = self.inflight.remove(&id).expect("listed above");
            reply_all(i.waiters, || EngineError::Unavailable("the engine's log did not answer in time".into()));
        }
    }

    /// Stop: what is in flight gets a few seconds to come back, the rest `Unavailable`.
    fn stop(mut self, feed: &Receiver<Feed>) {
        reply_all(self.queued.drain(..).map(|(_, tx)| tx).collect(), || {
            EngineError::Unavailable("shard stopped".into())
        });
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.inflight.is_empty() && Instant::now() < deadline {
            match feed.recv_timeout(Duration::from_millis(100)) {
                Ok(f) => {
                    if !self.on_feed(f) {
                        break;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        for (_, i) in self.inflight.drain() {
            reply_all(i.waiters, || EngineError::Unavailable("shard stopped".into()));
        }
    }
}

fn reply_all(waiters: Vec<Waiter>, error: impl Fn() -> EngineError) {
    for tx in waiters {
        let _ = tx.send(Err(error()));
    }
}
