//! chepiao's HTTP layer (axum), meilisearch-style: thin handlers over in-memory indexes and
//! the stores, with a stable error model.
//!
//! How the parts fit:
//! - [`App::build`] reads the network from the [`Store`], indexes it ([`Network`]), makes sure
//!   the runs of the sale window exist and loads them into a [`RunCalendar`].
//! - [`App::router`] wires the routes ([`routes`]) under the middleware ([`middleware`]):
//!   request ids, body and time limits, panic capture, per-route metrics.
//! - The seat engine (`chepiao-engine`) is opened from `data_dir/engine`, recovering its log;
//!   search asks it for remaining places through the [`Inventory`] trait, and the seat map
//!   comes from it too.
//! - The purchase flow ([`flow`]): orders hold seats in the engine and are recorded in the
//!   store; payment notifies write the payment, the order and an outbox row in one
//!   transaction; a relay publishes the outbox to the event bus (in-process, or NATS
//!   JetStream when `nats_url` is set) and the issuer confirms seats and signs tickets.
//! - [`App::serve`] runs until the shutdown future resolves, then drains in-flight requests.
//!   Background tasks: the sale-window roll at midnight (China time), the order-expiry
//!   sweeper, the outbox relay, the NATS consumer, and the nonce pruner.

pub mod auth;
pub mod config;
pub mod error;
pub mod flow;
pub mod gate;
pub mod inventory;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pii;
pub mod queue;
pub mod risk;
pub mod routes;
pub mod secrets;

use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use chepiao_domain::{Network, ServiceDate};
use chepiao_store::Store;
use tower_http::catch_panic::CatchPanicLayer;

pub use config::Config;
pub use error::ApiError;
pub use inventory::{EngineInventory, Inventory, RunCalendar};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub network: Arc<Network>,
    pub store: Arc<dyn Store>,
    pub engine: Arc<chepiao_engine::Engine>,
    pub inventory: Arc<dyn Inventory>,
    pub auth: auth::Auth,
    pub pii: pii::Pii,
    pub config: Config,
    pub channels: flow::payments::Channels,
    pub mockpay: Arc<flow::payments::Mockpay>,
    pub signer: Arc<flow::signing::TicketSigner>,
    pub issuer: Arc<flow::issuer::Issuer>,
    pub relay: Arc<flow::relay::Relay>,
    pub nats: Option<Arc<flow::bus::NatsBus>>,
    /// gate_id → SHA-256 of its secret.
    pub gates: std::collections::HashMap<String, Vec<u8>>,
    pub passengers: flow::orders::PassengerCache,
    /// The waiting rooms of the configured sales.
    pub room: Arc<queue::WaitingRoom>,
    pub risk: risk::Risk,
    /// SHA-256 of the admin key; None: admin endpoints are closed.
    pub admin_key: Option<Vec<u8>>,
    pub ip_limits: middleware::IpLimits,
    /// New orders, recorded many per INSERT.
    pub order_batcher: flow::batch::Batcher<chepiao_store::NewOrder, chepiao_store::CreateOrder>,
    /// New payments, recorded many per INSERT.
    pub payment_batcher: flow::batch::Batcher<chepiao_store::NewPayment, ()>,
    /// Verified notifies, applied many per transaction.
    pub notify_batcher: flow::batch::Batcher<chepiao_store::Notify, chepiao_store::NotifyOutcome>,
    calendar: RwLock<Arc<RunCalendar>>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    /// The current run calendar (replaced at midnight).
    pub fn calendar(&self) -> Arc<RunCalendar> {
        self.calendar.read().expect("calendar lock is never poisoned").clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the store holds no rail network: run `chepiao import` first")]
    NoNetwork,
    #[error(transparent)]
    Store(#[from] chepiao_store::StoreError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("seat engine: {0}")]
    Engine(#[from] chepiao_engine::EngineError),
}

pub struct App {
    state: AppState,
}

impl App {
    /// Load the network and the run calendar from `store`.
    pub async fn build(store: Arc<dyn Store>, config: Config) -> Result<App, StartError> {
        config.validate().map_err(StartError::Config)?;
        let data = store.load_network().await?;
        if data.trains.is_empty() {
            return Err(StartError::NoNetwork);
        }
        let network = Arc::new(Network::new(data));
        let today = ServiceDate::today_in_china(chrono::Utc::now());
        let calendar = RunCalendar::load(store.as_ref(), &network, today, config.sale_window_days).await?;
        let engine_config = chepiao_engine::EngineConfig {
            shards: config.engine_shards,
            ..chepiao_engine::EngineConfig::new(config.engine_dir())
        };
        // Recovery reads and replays the log: blocking work, off the async threads.
        let (engine, reports) = tokio::task::spawn_blocking(move || {
            chepiao_engine::Engine::open(engine_config, chepiao_engine::system_clock())
        })
        .await
        .map_err(|e| StartError::Config(format!("engine recovery panicked: {e}")))??;
        let replayed: u64 = reports.iter().map(|r| r.commands_replayed).sum();
        let truncated: u64 = reports.iter().map(|r| r.bytes_truncated).sum();
        tracing::info!(shards = reports.len(), replayed, truncated, "seat engine recovered");
        let engine = Arc::new(engine);
        let inventory = Arc::new(EngineInventory { network: network.clone(), engine: engine.clone() });
        let jwt_key = secrets::key(config.jwt_secret.as_ref(), &config.data_dir, "jwt").map_err(StartError::Config)?;
        let pii_key = secrets::key(config.pii_key.as_ref(), &config.data_dir, "pii").map_err(StartError::Config)?;
        let auth = tokio::task::spawn_blocking({
            let ttl = config.token_ttl_s;
            move || auth::Auth::new(jwt_key, ttl)
        })
        .await
        .map_err(|e| StartError::Config(format!("auth setup panicked: {e}")))?;
        let mockpay_secret =
            match std::env::var("CHEPIAO_MOCKPAY_SECRET").ok().or(config.mockpay_secret.clone().map(|s| s.0)) {
                Some(s) if !s.is_empty() => s.into_bytes(),
                _ => secrets::key(None, &config.data_dir, "mockpay").map_err(StartError::Config)?.to_vec(),
            };
        let mockpay = Arc::new(flow::payments::Mockpay::new(mockpay_secret));
        let channels = flow::payments::Channels::default().with(mockpay.clone());
        let ticket_seed =
            secrets::key(config.ticket_key.as_ref(), &config.data_dir, "ticket-ed25519").map_err(StartError::Config)?;
        let signer = Arc::new(
            flow::signing::TicketSigner::new(ticket_seed, &config.ticket_keys_retired).map_err(StartError::Config)?,
        );
        let issuer = Arc::new(flow::issuer::Issuer {
            store: store.clone(),
            engine: engine.clone(),
            signer: signer.clone(),
            pii: pii::Pii::new(pii_key),
            channels: channels.clone(),
            valid_before_s: config.ticket_valid_before_s as i64,
            seats_back: Arc::new(tokio::sync::Notify::new()),
        });
        let (bus, nats): (Arc<dyn flow::bus::EventBus>, _) = match &config.nats_url {
            Some(url) => {
                let nats = Arc::new(
                    flow::bus::NatsBus::connect(url, &config.nats_stream)
                        .await
                        .map_err(|e| StartError::Config(e.to_string()))?,
                );
                (nats.clone(), Some(nats))
            }
            None => (Arc::new(flow::bus::InProcessBus { issuer: issuer.clone() }), None),
        };
        let relay = Arc::new(flow::relay::Relay::new(store.clone(), bus));
        relay.set_paused(config.relay_paused);
        tracing::info!(bus = relay.bus_name(), ticket_key = signer.kid(), "purchase flow ready");
        use flow::batch::store_batcher;
        let order_batcher = store_batcher(&store, |s, orders| s.create_orders(orders));
        let payment_batcher = store_batcher(&store, |s, payments| {
            let n = payments.len();
            Box::pin(async move { s.create_payments(payments).await.map(|()| vec![(); n]) })
        });
        let notify_batcher = store_batcher(&store, |s, notifies| s.apply_notifies(notifies));
        let gates = routes::checkin::gate_keys(&config.gates, std::env::var("CHEPIAO_GATE_KEYS").ok().as_deref());
        let room = Arc::new(waiting_room(&config).await?);
        let risk = risk::Risk::new(risk::RiskConfig {
            rate_per_s: config.risk_rate_per_s,
            burst: config.risk_burst,
            slow_score: config.risk_slow_score,
            refuse_score: config.risk_refuse_score,
        });
        let admin_key = std::env::var("CHEPIAO_ADMIN_KEY")
            .ok()
            .or(config.admin_key.clone().map(|s| s.0))
            .filter(|k| !k.is_empty())
            .map(|k| <sha2::Sha256 as sha2::Digest>::digest(k.as_bytes()).to_vec());
        let ip_limits = middleware::IpLimits::new(config.ip_rate_per_s, config.ip_burst);
        let shared = Shared {
            room,
            risk,
            admin_key,
            ip_limits,
            network,
            store,
            engine,
            inventory,
            auth,
            pii: pii::Pii::new(pii_key),
            config,
            channels,
            mockpay,
            signer,
            issuer,
            relay,
            nats,
            gates,
            passengers: Default::default(),
            order_batcher,
            payment_batcher,
            notify_batcher,
            calendar: RwLock::new(Arc::new(calendar)),
        };
        Ok(App { state: AppState(Arc::new(shared)) })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> Router {
        // The recorder first: the route metrics keep the handles they register.
        crate::metrics::handle();
        use axum::routing::{post, put};
        use routes::{checkin, health, network, orders, payments, queue, tickets, users, waitlist, web};
        let limits = middleware::Limits {
            body_len_max: self.state.config.body_len_max,
            request_timeout: Duration::from_millis(self.state.config.request_timeout_ms),
        };
        // The buy path: the per-IP limit and a tighter time limit, in one layer.
        let buy = Router::new()
            .route("/api/v1/orders", get(orders::list).post(orders::create))
            .route("/api/v1/orders/{order_no}/payments", post(orders::pay))
            .route("/api/v1/queue/{sale_id}/join", post(queue::join))
            .route_layer(axum::middleware::from_fn_with_state(self.state.clone(), middleware::buy_guard));
        // The API: a per-IP rate limit in front of every route (the buy path's is its own).
        let api = Router::new()
            .route("/api/v1/stations", get(network::stations))
            .route("/api/v1/trains", get(network::trains))
            .route("/api/v1/runs/{run_id}", get(network::run))
            .route("/api/v1/runs/{run_id}/seats", get(network::seats))
            .route("/api/v1/auth/register", post(users::register))
            .route("/api/v1/auth/login", post(users::login))
            .route("/api/v1/passengers", get(users::passengers).post(users::add_passenger))
            .route("/api/v1/orders/{order_no}", get(orders::get))
            .route("/api/v1/orders/{order_no}/cancel", post(orders::cancel))
            .route("/api/v1/payments/notify/{channel}", post(payments::notify))
            .route("/mockpay/pay/{payment_no}", post(payments::mockpay_pay))
            .route("/api/v1/tickets/{ticket_sn}", get(tickets::get))
            .route("/api/v1/tickets/{ticket_sn}/qr.svg", get(tickets::qr_svg))
            .route("/api/v1/checkin/keys", get(tickets::keys))
            .route("/api/v1/checkin", post(checkin::check_in))
            .route("/api/v1/checkin/revocations", get(checkin::revocations))
            .route("/api/v1/tickets/{ticket_sn}/refund", post(tickets::refund))
            .route("/api/v1/tickets/{ticket_sn}/rebook", post(tickets::rebook))
            .route("/api/v1/checkin/uploads", post(checkin::upload))
            .route("/api/v1/waitlist", post(waitlist::join))
            .route("/api/v1/waitlist/{waitlist_id}", get(waitlist::get))
            .route("/api/v1/waitlist/{waitlist_id}/payments", post(waitlist::pay))
            .route("/api/v1/waitlist/{waitlist_id}/cancel", post(waitlist::cancel))
            .route("/api/v1/notifications", get(waitlist::notifications))
            .route("/api/v1/sales", get(queue::sales))
            .route("/api/v1/queue/{sale_id}/status", get(queue::status))
            .route("/api/v1/queue/{sale_id}/events", get(queue::events))
            .route("/api/v1/admin/risk/{list}/{kind}", get(queue::risk_list))
            .route("/api/v1/admin/risk/{list}/{kind}/{value}", put(queue::risk_put).delete(queue::risk_delete))
            .route_layer(axum::middleware::from_fn_with_state(self.state.clone(), middleware::ip_rate_limit))
            .merge(buy);
        // Bounded concurrency: beyond `concurrency_max` in flight, 503 at once.
        let shed = tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(middleware::overloaded))
            .layer(tower::load_shed::LoadShedLayer::new())
            .layer(tower::limit::ConcurrencyLimitLayer::new(self.state.config.concurrency_max));
        Router::new()
            .route("/", get(web::index))
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(health::metrics))
            .route("/openapi.json", get(health::openapi))
            .merge(api)
            .route_layer(axum::middleware::from_fn(middleware::track_metrics))
            .fallback(|| async { ApiError::not_found("no such route") })
            .method_not_allowed_fallback(|| async { ApiError::method_not_allowed("method not allowed on this route") })
            .with_state(self.state.clone())
            .layer(DefaultBodyLimit::max(limits.body_len_max))
            .layer(shed)
            .layer(CatchPanicLayer::custom(middleware::panic_response))
            .layer(axum::middleware::from_fn_with_state(limits, middleware::request_context))
    }

    /// Serve on `listener` until `shutdown` resolves, then finish in-flight requests.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tasks = self.spawn_background();
        let service = self.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
        let result = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
        for t in tasks {
            t.abort();
        }
        // In-flight requests are done: let the engine finish its queue and release its locks.
        let engine = self.state.engine.clone();
        tokio::task::spawn_blocking(move || engine.close()).await.ok();
        result
    }
}

/// The waiting room over Redis when `redis_url` is set, else in memory.
async fn waiting_room(config: &Config) -> Result<queue::WaitingRoom, StartError> {
    let backend: Arc<dyn queue::QueueBackend> = match &config.redis_url {
        Some(url) => Arc::new(
            queue::redis::RedisQueue::connect(url, "chepiao").await.map_err(|e| StartError::Config(e.to_string()))?,
        ),
        None => Arc::new(queue::memory::MemoryQueue::default()),
    };
    let key = secrets::key(config.queue_secret.as_ref(), &config.data_dir, "queue").map_err(StartError::Config)?;
    let tokens = queue::QueueTokens::new(&key, config.queue_token_ttl_s);
    let sales =
        config.sales.iter().map(queue::Sale::parse).collect::<Result<Vec<_>, _>>().map_err(StartError::Config)?;
    tracing::info!(backend = backend.name(), sales = sales.len(), "waiting room ready");
    queue::WaitingRoom::new(backend, tokens, sales, config.slow_lane_offset).map_err(StartError::Config)
}

/// Forget the rate state of idle users, devices and IPs now and then.
async fn tidy_limits(state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        state.risk.tidy();
        state.ip_limits.tidy();
    }
}

impl App {
    /// Start the background tasks (see the crate doc); `serve` aborts them when it returns.
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let state = self.state.clone();
        let mut tasks = vec![
            tokio::spawn(roll_sale_window(state.clone())),
            tokio::spawn(flow::orders::sweep_forever(state.clone(), Duration::from_millis(500))),
            tokio::spawn(flow::waitlist::match_forever(state.clone())),
            tokio::spawn(state.relay.clone().run_forever(Duration::from_millis(200))),
            tokio::spawn(prune_nonces(state.clone())),
            tokio::spawn(queue::admit_forever(state.room.clone(), Duration::from_millis(50))),
            tokio::spawn(tidy_limits(state.clone())),
        ];
        if let Some(nats) = &state.nats {
            tasks.push(tokio::spawn(nats.clone().consume_forever(state.issuer.clone())));
        }
        tasks
    }
}

/// Forget notify nonces older than the notify time window (older notifies fail the `ts` check).
async fn prune_nonces(state: AppState) {
    loop {
        let horizon_ms = flow::orders::now_ms() - 2 * flow::payments::NOTIFY_SKEW_S * 1000;
        if let Err(e) = state.store.prune_nonces(horizon_ms).await {
            tracing::warn!(error = %e, "pruning notify nonces failed");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// At each midnight (China time) create the runs of the new last sale day and swap in a fresh
/// calendar. A failure is logged and retried a minute later; search keeps the old calendar.
async fn roll_sale_window(state: AppState) {
    loop {
        let now = chrono::Utc::now();
        let today = ServiceDate::today_in_china(now);
        let next_midnight = today.add_days(1).at_minutes(0).with_timezone(&chrono::Utc);
        let wait = (next_midnight - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_secs(1)).await;
        loop {
            let today = ServiceDate::today_in_china(chrono::Utc::now());
            match RunCalendar::load(state.store.as_ref(), &state.network, today, state.config.sale_window_days).await {
                Ok(cal) => {
                    *state.calendar.write().expect("calendar lock is never poisoned") = Arc::new(cal);
                    tracing::info!(%today, "sale window rolled forward");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "rolling the sale window failed; retrying in a minute");
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        }
    }
}
