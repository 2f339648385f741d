//! chepiao's HTTP layer (axum): HTTP only. The sale itself is `chepiao-flow`; this crate turns
//! requests into calls of it and its answers (and [`chepiao_flow::FlowError`]s, mapped once in
//! [`http::error`]) into the API's JSON.
//!
//! How the parts fit:
//! - [`App::build`] opens the seat engine (recovering its log), loads the network from the
//!   store, and builds the [`chepiao_flow::Flow`] and this layer's own parts ([`state`]);
//! - [`routes`]: one module per resource (the operator's in `routes/admin/`), and the router
//!   that puts them under the middleware;
//! - [`http`]: the error model, request ids, extractors, middleware, metrics, OpenAPI;
//! - [`hotsale`]: hot-sale protection (waiting room, risk checks, IP limits, shedding);
//! - [`security`]: passwords and tokens, passenger PII, secrets, gate and admin keys;
//! - [`search`]: remaining places for train search, from the engine;
//! - [`live`]: the operator's live figures of this node (orders/s, the hottest runs);
//! - [`config`]: the configuration's shape, defaults and checks (the binary reads it);
//! - [`node`]: this node's claim on its database (one seat engine per database, or one
//!   cluster's), and the duties lease of a cluster;
//! - [`start`]: why the server would not start ([`start::StartError`]);
//! - [`fuzzing`]: entry points of the fuzz targets (`fuzz/`) and of their corpora's replay.
//!
//! With `cluster = true` the engine is a replica of a log shared through NATS JetStream
//! (`chepiao-cluster`, docs/CLUSTER.md): [`App::build`] opens it from a snapshot and replays the
//! log before anything is served.
//!
//! [`App::serve`] runs until the shutdown future resolves, then drains in-flight requests and
//! closes the engine. Background tasks: the flow's (expiry sweeper, waitlist matcher, outbox
//! relay, NATS consumer, nonce pruner, sale-window roll; in a cluster the duties among them run
//! on the node holding the duties lease, with sharing the engine's snapshots) and this layer's
//! (waiting-room admission, tidying the rate limiters, reading a cluster's risk lists back).

pub mod config;
pub mod fuzzing;
pub mod hotsale;
pub mod http;
pub mod live;
pub mod node;
pub mod routes;
pub mod search;
pub mod security;
pub mod start;
pub mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chepiao_cluster::{ClusterConfig, ClusterLog};
use chepiao_domain::Network;
use chepiao_engine::{Clock, Engine, ReplicaConfig};
use chepiao_flow::signing::TicketSigner;
use chepiao_flow::{Flow, FlowParts};
use chepiao_store::Store;

pub use config::Config;
pub use http::error::ApiError;
pub use start::StartError;
pub use state::AppState;

use crate::hotsale::limits::IpLimits;
use crate::hotsale::memory::MemoryQueue;
use crate::hotsale::redis::RedisQueue;
use crate::hotsale::risk::{Risk, RiskConfig};
use crate::hotsale::room::{QueueBackend, Sale, WaitingRoom};
use crate::hotsale::shared_lists::SharedLists;
use crate::hotsale::token::QueueTokens;
use crate::security::secrets;
use crate::state::Shared;

fn config_error(e: impl std::fmt::Display) -> StartError {
    StartError::Config(e.to_string())
}

pub struct App {
    state: AppState,
}

impl App {
    /// Build the server over `store`, on the system clock.
    pub async fn build(store: Arc<dyn Store>, config: Config) -> Result<App, StartError> {
        App::build_with_clock(store, config, chepiao_engine::system_clock()).await
    }

    /// Build the server over `store`; every part of it tells time by `clock` (tests move it).
    pub async fn build_with_clock(store: Arc<dyn Store>, config: Config, clock: Clock) -> Result<App, StartError> {
        config.validate().map_err(StartError::Config)?;
        let data = store.load_network().await?;
        if data.trains.is_empty() {
            return Err(StartError::NoNetwork);
        }
        let network = Arc::new(Network::new(data));
        let claim = node::claim(store.as_ref(), &config, clock() as i64).await?;
        let store_backend = store.backend();
        let (engine, cluster) = match config.cluster {
            true => {
                let (engine, log) = open_replica(&config, clock.clone()).await?;
                (engine, Some(log))
            }
            false => (open_engine(&config, clock.clone()).await?, None),
        };
        let flow = Flow::new(FlowParts {
            store,
            engine,
            network,
            clock,
            config: config.flow(),
            signer: Arc::new(ticket_signer(&config)?),
            mockpay_secret: secret_bytes(config.mockpay_secret.as_ref(), &config, "mockpay")?,
            mockpay: config.mockpay.unwrap_or(store_backend == "sqlite"),
            nats: config.nats_url.clone().map(|url| (url, config.nats_stream.clone(), events_replicas(&config))),
        })
        .await?;
        flow.relay.set_paused(config.relay_paused);
        if flow.mockpay.is_some() {
            tracing::warn!("mockpay, a development payment channel, is on (set `mockpay = false` in production)");
        }
        tracing::info!(bus = flow.relay.bus_name(), ticket_key = flow.signer.kid(), "purchase flow ready");
        let shared = shared(flow, config, claim, cluster).await?;
        Ok(App { state: AppState(Arc::new(shared)) })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// Serve on `listener` until `shutdown` resolves, then finish in-flight requests.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let bound = listener.local_addr()?;
        let own = if bound.ip().is_unspecified() {
            std::net::SocketAddr::new([127, 0, 0, 1].into(), bound.port())
        } else {
            bound
        };
        let _ = self.state.self_url.set(format!("http://{own}"));
        let tasks = self.spawn_background();
        // Streams that never end on their own end with the server, so the drain below finishes.
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            let _ = state.shutting_down.send(true);
        };
        let service = self.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
        let result = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
        for t in tasks {
            t.abort();
        }
        // In-flight requests are done: let the engine finish its queue and release its locks.
        let engine = self.state.flow.engine.clone();
        tokio::task::spawn_blocking(move || engine.close()).await.ok();
        result
    }

    /// Start the background tasks (see the crate doc); `serve` aborts them when it returns.
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let state = &self.state;
        let mut tasks = chepiao_flow::background::spawn_everywhere(&state.flow);
        if state.config.cluster {
            let (store, claim, clock) = (state.flow.store.clone(), state.claim.clone(), state.flow.clock.clone());
            let s = state.clone();
            tasks.push(tokio::spawn(node::duties_forever(store, claim, clock, move || cluster_duties(&s))));
        } else {
            tasks.extend(chepiao_flow::background::spawn_duties(&state.flow));
        }
        let admit =
            hotsale::room::admit_forever(state.room.clone(), state.flow.clock.clone(), Duration::from_millis(50));
        tasks.push(tokio::spawn(admit));
        tasks.push(tokio::spawn(tidy_limits(state.clone())));
        tasks.push(tokio::spawn(sync_lists_forever(state.clone())));
        let renew = node::renew_forever(state.flow.store.clone(), state.claim.clone(), state.flow.clock.clone());
        tasks.push(tokio::spawn(renew));
        tasks
    }
}

/// Copies NATS keeps of the event stream: a cluster's, else one (a single NATS server).
fn events_replicas(config: &Config) -> usize {
    if config.cluster { usize::from(config.cluster_replicas) } else { 1 }
}

/// Proposals waiting for the publisher, per shard (each shard has at most
/// `ReplicaConfig::inflight_max` out, and a tick).
const PROPOSALS_PER_SHARD_MAX: usize = 8;

/// Open this node's replica of the cluster's seat engine: the log's streams at `nats_url`, a
/// snapshot to start from (its own, or the shared one), the log after it replayed before the
/// node serves anything.
async fn open_replica(config: &Config, clock: Clock) -> Result<(Arc<Engine>, Arc<ClusterLog>), StartError> {
    let url = config.nats_url.clone().ok_or_else(|| config_error("cluster = true needs nats_url"))?;
    let log = ClusterLog::connect(ClusterConfig {
        prefix: config.engine_stream.clone(),
        replicas: usize::from(config.cluster_replicas),
        log_bytes_max: config.engine_log_bytes_max as i64,
        // A shard's snapshot is smaller than its log's cap: one cap for both.
        snapshots_bytes_max: config.engine_log_bytes_max as i64,
        ..ClusterConfig::new(url, config.engine_shards)
    })
    .await?;
    let dir = config.engine_dir();
    log.prepare(&dir).await?;
    let engine_config = chepiao_engine::EngineConfig {
        shards: config.engine_shards,
        snapshot_every_ops: config.engine_snapshot_every_ops,
        ..chepiao_engine::EngineConfig::new(dir)
    };
    let (tx, rx) = tokio::sync::mpsc::channel(PROPOSALS_PER_SHARD_MAX * usize::from(config.engine_shards));
    let replica = ReplicaConfig::new(chepiao_engine::random_u64() | 1);
    let (engine, feeds) =
        tokio::task::spawn_blocking(move || Engine::open_replicated(engine_config, clock, replica, tx))
            .await
            .map_err(|e| StartError::Config(format!("opening the engine replica panicked: {e}")))??;
    let engine = Arc::new(engine);
    // The publisher and consumers end with the engine (its channels close).
    drop(log.start(feeds, rx));
    log.caught_up(&engine, Duration::from_secs(600)).await?;
    Ok((engine, log))
}

/// How often the duties holder shares the engine's newest snapshots (and purges the log).
const SHARE_SNAPSHOTS_EVERY: Duration = Duration::from_secs(10);

/// The duties of a cluster node holding the lease: the flow's, and sharing snapshots.
fn cluster_duties(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = chepiao_flow::background::spawn_duties(&state.flow);
    if let Some(log) = state.cluster.clone() {
        let dir = state.config.engine_dir();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(SHARE_SNAPSHOTS_EVERY).await;
                if let Err(e) = log.share_snapshots(&dir).await {
                    tracing::warn!(error = %e, "sharing the engine's snapshots failed; retrying later");
                }
            }
        }));
    }
    tasks
}

/// Recover the seat engine from `data_dir/engine` (blocking work, off the async threads).
async fn open_engine(config: &Config, clock: Clock) -> Result<Arc<Engine>, StartError> {
    let engine_config = chepiao_engine::EngineConfig {
        shards: config.engine_shards,
        snapshot_every_ops: config.engine_snapshot_every_ops,
        ..chepiao_engine::EngineConfig::new(config.engine_dir())
    };
    let (engine, reports) = tokio::task::spawn_blocking(move || Engine::open(engine_config, clock))
        .await
        .map_err(|e| StartError::Config(format!("engine recovery panicked: {e}")))??;
    let replayed: u64 = reports.iter().map(|r| r.commands_replayed).sum();
    let truncated: u64 = reports.iter().map(|r| r.bytes_truncated).sum();
    tracing::info!(shards = reports.len(), replayed, truncated, "seat engine recovered");
    Ok(Arc::new(engine))
}

/// 32 key bytes from configuration or a key file under `data_dir/secrets`.
fn key(configured: Option<&secrets::Secret>, config: &Config, name: &str) -> Result<[u8; 32], StartError> {
    secrets::key(configured, &config.data_dir, name).map_err(StartError::Config)
}

/// A secret of any length from configuration, or 32 key-file bytes.
fn secret_bytes(configured: Option<&secrets::Secret>, config: &Config, name: &str) -> Result<Vec<u8>, StartError> {
    match configured {
        Some(s) if !s.0.is_empty() => Ok(s.0.clone().into_bytes()),
        _ => Ok(key(None, config, name)?.to_vec()),
    }
}

fn ticket_signer(config: &Config) -> Result<TicketSigner, StartError> {
    let seed = key(config.ticket_key.as_ref(), config, "ticket-ed25519")?;
    TicketSigner::new(seed, &config.ticket_keys_retired).map_err(StartError::Config)
}

/// This layer's own parts, around the flow.
async fn shared(
    flow: Arc<Flow>,
    config: Config,
    claim: node::NodeClaim,
    cluster: Option<Arc<ClusterLog>>,
) -> Result<Shared, StartError> {
    let jwt_key = key(config.jwt_secret.as_ref(), &config, "jwt")?;
    let pii_key = key(config.pii_key.as_ref(), &config, "pii")?;
    let ttl = config.token_ttl_s;
    // Hashing the dummy password takes a while: off the async threads.
    let store = flow.store.clone();
    let auth = tokio::task::spawn_blocking(move || security::auth::Auth::new(jwt_key, ttl, store))
        .await
        .map_err(|e| StartError::Config(format!("auth setup panicked: {e}")))?;
    let room = Arc::new(waiting_room(&config).await?);
    let risk = Risk::new(RiskConfig {
        rate_per_s: config.risk_rate_per_s,
        burst: config.risk_burst,
        ip_rate_per_s: config.risk_ip_rate_per_s,
        slow_score: config.risk_slow_score,
        refuse: config.risk_refuse,
        refuse_score: config.risk_refuse_score,
    });
    let buy_timeout = Duration::from_millis(config.buy_timeout_ms);
    let (shutting_down, down) = tokio::sync::watch::channel(false);
    let streams = Arc::new(hotsale::streams::Streams::new(config.sse_streams_max, down));
    let trusted = hotsale::limits::trusted_proxies(&config.trusted_proxies);
    let ip_limits = Arc::new(IpLimits::new(config.ip_rate_per_s, config.ip_burst, buy_timeout, trusted));
    let config_search = (config.search_cache_bytes_max, config.search_stale_ms);
    let shared_lists = shared_lists(&config, &risk).await?;
    Ok(Shared {
        flow,
        auth: Arc::new(auth),
        pii: security::pii::Pii::new(pii_key),
        gates: security::gates::Gates::new(&config.gates),
        admin: security::admin::AdminKey::new(config.admin_key.as_ref().map(|k| k.0.as_str())),
        room,
        risk,
        ip_limits,
        config,
        claim,
        cluster,
        shared_lists,
        self_url: Default::default(),
        streams,
        shutting_down,
        live: Default::default(),
        searches: search::SearchCache::new(config_search.0, config_search.1),
    })
}

/// A cluster's risk lists in Redis, read once now (a restarted node starts with them).
async fn shared_lists(config: &Config, risk: &Risk) -> Result<Option<Arc<SharedLists>>, StartError> {
    let (true, Some(url)) = (config.cluster, &config.redis_url) else { return Ok(None) };
    let lists = SharedLists::connect(url, &format!("chepiao:{}", config.engine_stream)).await.map_err(config_error)?;
    risk.replace_lists(lists.load().await.map_err(config_error)?);
    Ok(Some(Arc::new(lists)))
}

/// Read a cluster's risk lists back every few seconds (the other nodes' changes).
async fn sync_lists_forever(state: AppState) {
    let Some(lists) = state.shared_lists.clone() else { return };
    loop {
        tokio::time::sleep(hotsale::shared_lists::SYNC_EVERY).await;
        match lists.load().await {
            Ok(all) => state.risk.replace_lists(all),
            Err(e) => tracing::warn!(error = %e, "reading the shared risk lists failed; keeping the last ones"),
        }
    }
}

/// The waiting room over Redis when `redis_url` is set, else in memory.
async fn waiting_room(config: &Config) -> Result<WaitingRoom, StartError> {
    let backend: Arc<dyn QueueBackend> = match &config.redis_url {
        Some(url) => Arc::new(RedisQueue::connect(url, "chepiao").await.map_err(config_error)?),
        None => Arc::new(MemoryQueue::default()),
    };
    let key = key(config.queue_secret.as_ref(), config, "queue")?;
    let tokens = QueueTokens::new(&key, config.queue_token_ttl_s);
    let sales = config.sales.iter().map(Sale::parse).collect::<Result<Vec<_>, _>>().map_err(StartError::Config)?;
    tracing::info!(backend = backend.name(), sales = sales.len(), "waiting room ready");
    WaitingRoom::new(backend, tokens, sales, config.slow_lane_offset).map_err(StartError::Config)
}

/// Forget the rate state of idle users, devices and IPs now and then.
async fn tidy_limits(state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        state.risk.tidy();
        state.ip_limits.tidy();
        state.auth.tidy();
    }
}
