//! The seat engine's log when several nodes share one inventory: one NATS JetStream stream
//! per shard, replicated by the NATS cluster (R3), and every chepiao node a replica of the
//! engine's state machine (`chepiao_engine::replica`). No consensus is written here: JetStream
//! orders and stores the batches; each node applies all of them in that order.
//!
//! How the parts fit:
//! - [`ClusterLog::connect`] makes sure the streams (`<prefix>_<shard>`, subject
//!   `<prefix>.<shard>`, file storage, `discard: new` past `log_bytes_max` so nothing unsnapshotted
//!   is ever dropped) and the snapshot bucket (`<prefix>_SNAPSHOTS`) exist;
//! - [`ClusterLog::prepare`] picks each shard's starting point before the engine opens: its own
//!   newest snapshot, or the shared one when that is newer or the log after its own was purged
//!   (a new or wiped node), downloading it again if a download fails or stalls;
//! - [`ClusterLog::start`]: a publisher that sends each shard's proposals with their message id
//!   (a retry, or the same second's tick from another node, is stored once), retrying across
//!   NATS servers until `publish_timeout`; and per shard a consumer that delivers every entry
//!   in order, with the stream's own timestamp, to the shard and its snapshotter;
//! - [`ClusterLog::caught_up`]: wait until this replica has applied what the log held at start
//!   (a node serves nothing older than the log it joined);
//! - [`ClusterLog::share_snapshots`]: upload each shard's newest local snapshot to the bucket
//!   when it is newer than the shared one, then purge the log up to the snapshot shared before
//!   it: the log keeps everything after the older of the two, so a node whose own snapshot is
//!   at least that new still starts from its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, object_store, stream};
use chepiao_engine::{Batch, Engine, Entry, Feed, Proposal, ShardFeed};
use crossbeam_channel::{Sender, TrySendError};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);

type Result<T> = std::result::Result<T, ClusterError>;

fn err(what: impl std::fmt::Display) -> impl FnOnce(&dyn std::fmt::Display) -> ClusterError {
    move |e| ClusterError(format!("{what}: {e}"))
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// NATS servers, comma separated (the client finds the rest of the cluster itself).
    pub nats_url: String,
    /// Stream names start with it (`CHEPIAO_ENGINE_0`, ...).
    pub prefix: String,
    pub shards: u8,
    /// Copies JetStream keeps of each stream and snapshot (3 in production: any one NATS
    /// server may be lost).
    pub replicas: usize,
    /// Bytes one shard's log may hold; past it proposals are refused (never old entries dropped).
    pub log_bytes_max: i64,
    /// Bytes the snapshot bucket may hold.
    pub snapshots_bytes_max: i64,
    /// How long a proposal is retried (across NATS servers) before its callers are told.
    pub publish_timeout: Duration,
}

impl ClusterConfig {
    pub fn new(nats_url: impl Into<String>, shards: u8) -> ClusterConfig {
        ClusterConfig {
            nats_url: nats_url.into(),
            prefix: "CHEPIAO_ENGINE".into(),
            shards,
            replicas: 3,
            log_bytes_max: 64 << 30,
            snapshots_bytes_max: 16 << 30,
            publish_timeout: Duration::from_secs(10),
        }
    }
}

pub struct ClusterLog {
    js: jetstream::Context,
    config: ClusterConfig,
    snapshots: object_store::ObjectStore,
}

/// Connect to NATS at a comma-separated list of servers, waiting for the first one to answer.
pub async fn connect_nats(urls: &str) -> std::result::Result<async_nats::Client, ClusterError> {
    let servers: Vec<&str> = urls.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|e| ClusterError(format!("connecting to NATS at {urls}: {e}")))
}

impl ClusterLog {
    /// Connect, and make sure every shard's stream and the snapshot bucket exist.
    pub async fn connect(config: ClusterConfig) -> Result<Arc<ClusterLog>> {
        let client = tokio::time::timeout(Duration::from_secs(30), connect_nats(&config.nats_url))
            .await
            .map_err(|_| ClusterError(format!("no NATS server answered at {} in 30 s", config.nats_url)))??;
        let js = jetstream::new(client);
        // A NATS cluster that just started elects its JetStream leader first: retry a while.
        let started = Instant::now();
        loop {
            match ClusterLog::open(js.clone(), config.clone()).await {
                Ok(log) => return Ok(Arc::new(log)),
                Err(e) if started.elapsed() < Duration::from_secs(60) => {
                    tracing::info!(error = %e, "waiting for NATS JetStream");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The snapshot bucket and every shard's stream, made if missing.
    async fn open(js: jetstream::Context, config: ClusterConfig) -> Result<ClusterLog> {
        let bucket = format!("{}_SNAPSHOTS", config.prefix);
        let snapshots = match js.get_object_store(&bucket).await {
            Ok(s) => s,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    num_replicas: config.replicas,
                    max_bytes: config.snapshots_bytes_max,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(format!("snapshot bucket {bucket}"))(&e))?,
        };
        let log = ClusterLog { js, config, snapshots };
        for shard in 0..log.config.shards {
            log.stream(shard).await?;
        }
        Ok(log)
    }

    fn stream_name(&self, shard: u8) -> String {
        format!("{}_{shard}", self.config.prefix)
    }

    fn subject(&self, shard: u8) -> String {
        format!("{}.{shard}", self.config.prefix.to_lowercase())
    }

    fn object_name(shard: u8) -> String {
        format!("shard-{shard}")
    }

    /// Shard `shard`'s stream, made if missing.
    async fn stream(&self, shard: u8) -> Result<stream::Stream> {
        let config = stream::Config {
            name: self.stream_name(shard),
            subjects: vec![self.subject(shard)],
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            max_bytes: self.config.log_bytes_max,
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        self.js.get_or_create_stream(config).await.map_err(|e| err(format!("stream {}", self.stream_name(shard)))(&e))
    }

    /// (first, last) position the shard's log holds now; first is last + 1 when it is empty.
    async fn bounds(&self, shard: u8) -> Result<(u64, u64)> {
        let info = self.stream(shard).await?.get_info().await.map_err(|e| err("stream info")(&e))?;
        Ok((info.state.first_sequence.max(1), info.state.last_sequence))
    }

    /// The position of the shared snapshot of `shard`, if there is one.
    async fn shared_seq(&self, shard: u8) -> Result<Option<u64>> {
        match self.snapshots.info(Self::object_name(shard)).await {
            Ok(info) if !info.deleted => Ok(info.description.and_then(|d| d.parse().ok())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("snapshot info")(&e)),
        }
    }
}

mod snapshots;

/// Hand `item` to an engine thread's channel, waiting (off the thread) while it is full: the
/// log's consumer slows to the engine's pace instead of dropping anything. False when the
/// engine stopped.
pub async fn send_feed<T>(tx: &Sender<T>, mut item: T) -> bool {
    loop {
        match tx.try_send(item) {
            Ok(()) => return true,
            Err(TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
}

impl ClusterLog {
    /// Start the publisher and one consumer per shard; they stop when the engine does.
    pub fn start(
        self: &Arc<Self>,
        feeds: Vec<ShardFeed>,
        proposals: tokio::sync::mpsc::Receiver<Proposal>,
    ) -> Vec<JoinHandle<()>> {
        let to_shards = feeds.iter().map(|f| f.to_shard.clone()).collect();
        let mut tasks = vec![tokio::spawn(self.clone().publish_forever(proposals, to_shards))];
        for feed in feeds {
            tasks.push(tokio::spawn(self.clone().consume_forever(feed)));
        }
        tasks
    }

    /// Wait until this replica has applied everything the log held when this was called.
    pub async fn caught_up(&self, engine: &Engine, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut targets = Vec::new();
        for shard in 0..self.config.shards {
            targets.push(self.bounds(shard).await?.1);
        }
        loop {
            let applied = engine.applied();
            if applied.iter().zip(&targets).all(|(a, t)| a >= t) {
                tracing::info!(?applied, ms = started.elapsed().as_millis() as u64, "engine replica caught up");
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(ClusterError(format!("the replica applied {applied:?} of {targets:?} in {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn publish_forever(
        self: Arc<Self>,
        mut proposals: tokio::sync::mpsc::Receiver<Proposal>,
        to_shards: Vec<Sender<Feed>>,
    ) {
        while let Some(p) = proposals.recv().await {
            let log = self.clone();
            let to_shard = to_shards[p.shard as usize].clone();
            tokio::spawn(async move { log.publish(p, to_shard).await });
        }
    }

    /// Publish one proposal, retrying until `publish_timeout`; a proposal that never got in
    /// is reported to its shard (its callers get `Unavailable`).
    async fn publish(&self, p: Proposal, to_shard: Sender<Feed>) {
        let deadline = Instant::now() + self.config.publish_timeout;
        let subject = self.subject(p.shard);
        let error = loop {
            let msg =
                jetstream::message::PublishMessage::build().payload(p.payload.clone().into()).message_id(&p.msg_id);
            let error = match self.js.send_publish(subject.clone(), msg).await {
                Ok(ack) => match ack.await {
                    Ok(_) => return,
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if p.is_tick || Instant::now() >= deadline {
                break error;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !p.is_tick {
            tracing::warn!(shard = p.shard, error, "a batch of seat commands could not be put in the engine's log");
            send_feed(&to_shard, Feed::Failed { id: p.id, error }).await;
        }
    }

    /// Feed one shard every entry of its log after its starting point, in order, for as long
    /// as the engine runs; a consumer that fails is made again after the last entry fed.
    async fn consume_forever(self: Arc<Self>, feed: ShardFeed) {
        let mut after = feed.applied_seq;
        loop {
            match self.consume(&feed, &mut after).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(shard = feed.shard, after, error = %e, "engine log consumer restarts"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Ok when the engine stopped taking entries. Not JetStream's ordered consumer: its idle
    /// heartbeat is fixed at 15 s, so losing the NATS server that holds it would stall the
    /// shard for half a minute. This one asks for a heartbeat every 500 ms, fails after two
    /// missed, and keeps the order itself (a gap makes it start again after the last entry fed).
    async fn consume(&self, feed: &ShardFeed, after: &mut u64) -> Result<()> {
        let stream = self.stream(feed.shard).await?;
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: self.subject(feed.shard),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: *after + 1 },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| err("log consumer")(&e))?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(1_024)
            .expires(Duration::from_secs(5))
            .heartbeat(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| err("log consumer")(&e))?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| err("reading the log")(&e))?;
            let info = m.info().map_err(|e| err("entry info")(&e))?;
            let (seq, time_ms) = (info.stream_sequence, (info.published.unix_timestamp_nanos() / 1_000_000) as u64);
            if seq <= *after {
                continue;
            }
            if seq != *after + 1 {
                return Err(ClusterError(format!("entry {seq} came after {after}: reading again")));
            }
            let batch = Batch::decode(&m.payload).unwrap_or_else(|| {
                tracing::error!(shard = feed.shard, seq, "an engine log entry does not decode; applied as a tick");
                Batch { origin: 0, id: 0, commands: Vec::new() }
            });
            let entry = Arc::new(Entry { seq, time_ms, batch });
            if !send_feed(&feed.to_shard, Feed::Entry(entry.clone())).await {
                return Ok(());
            }
            send_feed(&feed.to_snapshotter, entry).await;
            *after = seq;
        }
        Err(ClusterError("the log's consumer ended".into()))
    }
}
