//! `spawn_app`: a real server on port 0 over a fresh store (SQLite file or a PostgreSQL schema),
//! loaded with the real network from data/rail, and a [`TestApp`] whose methods are the API
//! (through `chepiao_api::Client`). Time is a clock the test can move ([`TestApp::advance`]).
//!
//! Every helper the HTTP tests share lives here.

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chepiao_api::orders::{LegBody, OrderOut, OrderRequest};
use chepiao_api::{Client, ClientError};
use chepiao_domain::import::{parse_network, read_dir};
use chepiao_domain::{NetworkData, SeatClass, ServiceDate};
use chepiao_server::security::secrets::Secret;
use chepiao_server::{App, AppState, Config};
use chepiao_store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The secret the test servers' mockpay signs with (tests sign notifies of their own).
pub const MOCKPAY_SECRET: &str = "test-mockpay-secret-0123";
/// The gates every test server knows, and their keys.
pub const GATE: &str = "g1";
pub const GATE_KEY: &str = "gate-secret-0123456789";
pub const GATE_TWO: &str = "g2";
pub const GATE_TWO_KEY: &str = "gate-two-0123456789";
pub const ADMIN_KEY: &str = "admin-secret-0123456789";
/// The password of every test user.
const PASSWORD: &str = "correct horse";

pub struct TestApp {
    /// An anonymous client; `as_user` gives one that calls as a user.
    pub api: Client,
    pub state: AppState,
    /// The data directory (SQLite file and engine log).
    pub dir: std::path::PathBuf,
    /// How far the app's clock is ahead of the real one, ms.
    offset_ms: Arc<AtomicI64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The PostgreSQL (url, schema) to drop when the test ends.
    pg_schema: Option<(String, String)>,
}

/// A registered user with passengers, and a client that calls as them.
pub struct Buyer {
    pub api: Client,
    pub name: String,
    pub user_id: i64,
    pub passengers: Vec<i64>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let Some((url, schema)) = self.pg_schema.take() else { return };
        // Drop runs inside the test's runtime: do the async clean-up on a thread of its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.ok();
            });
        })
        .join()
        .ok();
    }
}

/// G1 tomorrow (北京南 → 济南西 → 南京南 → 上海虹桥).
pub fn g1() -> String {
    run_on("G1", tomorrow())
}

/// `train`'s run on `date`.
pub fn run_on(train: &str, date: ServiceDate) -> String {
    format!("{train}-{}", date.to_string().replace('-', ""))
}

/// Tomorrow in China time, always inside the sale window.
pub fn tomorrow() -> ServiceDate {
    ServiceDate::today_in_china(chrono::Utc::now()).add_days(1)
}

/// One leg of `passengers` on `run` from `from` to `to` in `class`.
pub fn leg(run: &str, from: &str, to: &str, class: SeatClass, passengers: &[i64]) -> LegBody {
    LegBody {
        run_id: run.into(),
        from: from.into(),
        to: to.into(),
        class,
        passenger_ids: passengers.to_vec(),
        seat_prefs: None,
    }
}

/// An order of one leg.
pub fn order_req(key: &str, run: &str, from: &str, to: &str, class: SeatClass, passengers: &[i64]) -> OrderRequest {
    OrderRequest { idempotency_key: key.into(), legs: vec![leg(run, from, to, class, passengers)] }
}

/// The error code of a refusal (panics on success).
pub fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, u32) {
    let e = r.expect_err("a refusal");
    (e.status().unwrap_or(0), e.code().unwrap_or(0))
}

/// Poll `check` until it holds (panics after 15 s naming `what`).
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

pub fn postgres_url() -> Option<String> {
    std::env::var("CHEPIAO_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

pub fn redis_url() -> Option<String> {
    std::env::var("CHEPIAO_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

/// Whether `backend` can run here; says why not when it cannot.
pub fn available(backend: Backend, test: &str) -> bool {
    if backend == Backend::Postgres && postgres_url().is_none() {
        eprintln!("skipped {test}: CHEPIAO_TEST_POSTGRES_URL is not set, so there is no PostgreSQL to test against");
        return false;
    }
    true
}

/// The real network, parsed once per test process.
pub fn network() -> &'static NetworkData {
    static DATA: OnceLock<NetworkData> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/rail");
        let (stations, timetable) = read_dir(&dir).expect("data/rail is in the repository");
        parse_network(&stations, &timetable, &mut |_, _| {}).expect("data parses").0
    })
}

async fn fresh_store(backend: Backend, dir: &std::path::Path) -> (Arc<dyn Store>, Option<(String, String)>) {
    match backend {
        Backend::Sqlite => {
            let url = dir.join("chepiao.db");
            (Arc::new(chepiao_store_sqlite::SqliteStore::open(url.to_str().unwrap()).await.unwrap()), None)
        }
        Backend::Postgres => fresh_pg_store(&postgres_url().expect("CHEPIAO_TEST_POSTGRES_URL")).await,
    }
}

/// A store in a fresh schema of the PostgreSQL at `url`.
async fn fresh_pg_store(url: &str) -> (Arc<dyn Store>, Option<(String, String)>) {
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
    // Named after the schema, so a test can find (and terminate) its own connections.
    let options = chepiao_store_postgres::ConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema.as_str())])
        .application_name(&schema);
    let store = chepiao_store_postgres::PgStore::connect_with(options).await.unwrap();
    (Arc::new(store), Some((url.to_string(), schema)))
}

/// `spawn_app_with` on the PostgreSQL at `url` (a private server a test can restart).
pub async fn spawn_app_on_postgres(url: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = std::env::temp_dir().join(format!("chepiao-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (store, pg_schema) = fresh_pg_store(url).await;
    store.save_network(network()).await.unwrap();
    start(store, dir, pg_schema, tweak).await
}

/// Start a server with a short sale window (runs for 3 days; tests stay quick) over a fresh
/// store and a fresh data directory.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// `spawn_app` with configuration changes.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = std::env::temp_dir().join(format!("chepiao-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (store, pg_schema) = fresh_store(backend, &dir).await;
    store.save_network(network()).await.unwrap();
    start(store, dir, pg_schema, tweak).await
}

/// Start a server again on the data directory of a stopped one (SQLite backend).
pub async fn restart_app(dir: std::path::PathBuf) -> TestApp {
    restart_app_with(dir, |_| {}).await
}

/// [`restart_app`] with a configuration of its own (a sale added, say).
pub async fn restart_app_with(dir: std::path::PathBuf, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let url = dir.join("chepiao.db");
    let store: Arc<dyn Store> = Arc::new(chepiao_store_sqlite::SqliteStore::open(url.to_str().unwrap()).await.unwrap());
    start(store, dir, None, tweak).await
}

/// The refund fee tier of the after-sale servers: one flat tier keeps the expected fee
/// independent of the hour the test runs at.
pub const REFUND_TIER: chepiao_flow::FeeTier = chepiao_flow::FeeTier { hours_before: 0, percent: 10 };

/// What the after-sale tests change: tickets valid from three days before departure (so the
/// gates take them today), [`REFUND_TIER`], wishes with deadlines a second away.
pub fn after_sale(c: &mut Config) {
    c.ticket_valid_before_s = 3 * 24 * 3600;
    c.refund_fee_tiers = vec![REFUND_TIER];
    c.wish_deadline_min_s = 1;
}

/// A server for the after-sale tests ([`after_sale`]).
pub async fn spawn_after_sale(backend: Backend) -> TestApp {
    spawn_app_with(backend, after_sale).await
}

/// A gate's online check-in of ticket code `qr` at `station`.
pub fn scan(qr: &str, station: &str) -> chepiao_api::checkin::CheckInRequest {
    chepiao_api::checkin::CheckInRequest { qr: qr.into(), station: station.into(), gate_id: GATE.into() }
}

/// The configuration every test server starts from.
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        sale_window_days: 2,
        data_dir: dir.to_path_buf(),
        mockpay_secret: Some(Secret(MOCKPAY_SECRET.into())),
        gates: vec![Secret(format!("{GATE}={GATE_KEY}")), Secret(format!("{GATE_TWO}={GATE_TWO_KEY}"))],
        admin_key: Some(Secret(ADMIN_KEY.into())),
        // Tests of the flow send bursts from one user and one IP; the risk and rate tests
        // set these back to what a real sale would use.
        risk_rate_per_s: 100_000,
        risk_burst: 100_000,
        ip_rate_per_s: 1_000_000,
        ip_burst: 1_000_000,
        // The load tool and these tests give each virtual user an address of its own.
        trusted_proxies: vec!["127.0.0.1".into()],
        // PostgreSQL turns the development channel off by default; these tests pay through it.
        mockpay: Some(true),
        // Searches see every change at once (the kept-answer window has its own test).
        search_stale_ms: 0,
        ..Config::default()
    }
}

async fn start(
    store: Arc<dyn Store>,
    dir: std::path::PathBuf,
    pg_schema: Option<(String, String)>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(&dir);
    tweak(&mut config);
    let offset_ms = Arc::new(AtomicI64::new(0));
    let offset = offset_ms.clone();
    let clock: chepiao_engine::Clock =
        Arc::new(move || (chrono::Utc::now().timestamp_millis() + offset.load(Ordering::SeqCst)) as u64);
    let app = App::build_with_clock(store, config, clock).await.unwrap();
    let state = app.state().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.serve(listener, async {
        rx.await.ok();
    }));
    let api = Client::new(&format!("http://{addr}"));
    TestApp { api, state, dir, offset_ms, shutdown: Some(tx), served: Some(served), pg_schema }
}

impl TestApp {
    /// Shut the server down as SIGTERM would and wait until it has (engine closed).
    pub async fn stop(mut self) -> std::path::PathBuf {
        self.shutdown.take().map(|tx| tx.send(()));
        self.served.take().unwrap().await.unwrap().unwrap();
        self.dir.clone()
    }

    /// Move the app's clock forward (orders expire, tokens lapse, the engine's holds end).
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// Run `sql` on the app's database directly, beside the server (tests break rows with it).
    pub async fn sql(&self, sql: &str) {
        match &self.pg_schema {
            None => {
                let c = rusqlite::Connection::open(self.dir.join("chepiao.db")).unwrap();
                c.busy_timeout(Duration::from_secs(5)).unwrap();
                c.execute_batch(sql).unwrap();
            }
            Some((url, schema)) => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(&format!("SET search_path = {schema}")).execute(&mut c).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
        }
    }

    /// Terminate every PostgreSQL backend of this app (its pool and its writers); how many.
    pub async fn terminate_pg_backends(&self) -> i64 {
        use sqlx::Connection;
        let (url, schema) = self.pg_schema.as_ref().expect("a PostgreSQL app");
        let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
        let killed: Vec<bool> =
            sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
                .bind(schema)
                .fetch_all(&mut admin)
                .await
                .unwrap();
        killed.into_iter().filter(|k| *k).count() as i64
    }

    /// The same store the app runs on, opened again (as a second node would).
    pub async fn open_store_again(&self) -> Arc<dyn Store> {
        match &self.pg_schema {
            None => {
                let path = self.dir.join("chepiao.db");
                Arc::new(chepiao_store_sqlite::SqliteStore::open(path.to_str().unwrap()).await.unwrap())
            }
            Some((url, schema)) => {
                let options = chepiao_store_postgres::ConnectOptions::from_str(url)
                    .unwrap()
                    .options([("search_path", schema.as_str())])
                    .application_name(schema);
                Arc::new(chepiao_store_postgres::PgStore::connect_with(options).await.unwrap())
            }
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.state.flow.store.as_ref()
    }

    /// A plain GET, for what is not JSON or must be looked at raw.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.api.request(reqwest::Method::GET, path).send().await.expect("request sent")
    }

    /// `b`, who registered on an earlier server on this data directory, logged in to this one.
    pub async fn again(&self, b: &Buyer) -> Buyer {
        let api = self.api.with_token(&self.api.login(&b.name, PASSWORD).await.unwrap().token);
        Buyer { api, name: b.name.clone(), user_id: b.user_id, passengers: b.passengers.clone() }
    }

    /// Register `name` and log in; a client calling as them.
    pub async fn user(&self, name: &str) -> (Client, String, i64) {
        let registered = self.api.register(name, PASSWORD).await.unwrap();
        let token = self.api.login(name, PASSWORD).await.unwrap().token;
        (self.api.with_token(&token), token, registered.user_id)
    }

    /// A new user with `n` passengers, each a person of their own (a passport number no other
    /// buyer of the process has: the purchase rules follow people across accounts).
    pub async fn buyer(&self, name: &str, n: usize) -> Buyer {
        static PASSPORTS: AtomicI64 = AtomicI64::new(1);
        let (api, _, user_id) = self.user(name).await;
        let mut passengers = Vec::new();
        for i in 0..n {
            let number = PASSPORTS.fetch_add(1, Ordering::Relaxed);
            let p = api.add_passenger(&format!("旅客{i}"), "PASSPORT", &format!("E{number:07}")).await.unwrap();
            passengers.push(p.passenger_id);
        }
        Buyer { api, name: name.to_string(), user_id, passengers }
    }

    /// Free seats of `class` on G1 tomorrow from 北京南 to 上海虹桥.
    pub async fn free_seats(&self, class: SeatClass) -> u32 {
        self.api.seats(&g1(), "VNP", "AOH", class).await.unwrap().free
    }

    /// Remaining places of `class` on G1 tomorrow from `from` to `to`, as search shows them.
    pub async fn g1_remaining(&self, from: &str, to: &str, class: SeatClass) -> u32 {
        let trains = self.api.trains(from, to, &tomorrow().to_string()).await.unwrap();
        let g1 = trains.iter().find(|t| t.train_code == "G1").expect("G1 runs tomorrow");
        g1.classes.iter().find(|c| c.class == class).map_or(0, |c| c.remaining)
    }

    /// Pay an order through mockpay's pay page; the payment number.
    pub async fn pay(&self, b: &Buyer, order_no: &str) -> String {
        let started = b.api.pay(order_no, "mockpay").await.unwrap();
        b.api.press_pay(&started.pay_url, true).await.unwrap();
        started.payment_no
    }

    /// Poll an order until `want` (panics after 10 s).
    pub async fn wait_status(&self, b: &Buyer, order_no: &str, want: &str) -> OrderOut {
        for _ in 0..200 {
            let order = b.api.order(order_no).await.unwrap();
            if order.status == want {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("order {order_no} never reached {want}");
    }

    /// Order `n` places of `class` on G1 (VNP → AOH) for `b`, pay and wait for the tickets.
    pub async fn buy(&self, b: &Buyer, key: &str, class: SeatClass, n: usize) -> OrderOut {
        let req = order_req(key, &g1(), "VNP", "AOH", class, &b.passengers[..n]);
        let order = b.api.create_order(&req, None).await.unwrap();
        assert_eq!(order.status, 201, "{:?}", order.body);
        self.pay(b, &order.body.order_no).await;
        self.wait_status(b, &order.body.order_no, "TICKETED").await
    }

    /// `n` passengers of a new user with tickets on G1 tomorrow (北京南 → 上海虹桥, second
    /// class): the buyer and the TICKETED order.
    pub async fn ticketed(&self, name: &str, n: usize) -> (Buyer, OrderOut) {
        let b = self.buyer(name, n).await;
        let done = self.buy(&b, "ticketed", SeatClass::Second, n).await;
        (b, done)
    }

    /// A notify `body` signed with `secret`, as a channel would send it.
    pub async fn notify(&self, body: &str, secret: &str) -> Result<chepiao_api::payments::NotifyAck, ClientError> {
        let signature = chepiao_flow::channels::sign(secret.as_bytes(), body.as_bytes());
        self.api.notify("mockpay", body.as_bytes(), &signature).await
    }
}

/// A provider's notify body for `payment_no` (sign it with [`TestApp::notify`]).
pub fn notify_body(payment_no: &str, amount_fen: i64, status: &str, nonce: &str, ts: i64) -> String {
    let body = chepiao_api::payments::NotifyBody {
        out_trade_no: payment_no.into(),
        payment_no: payment_no.into(),
        amount_fen,
        status: status.into(),
        txn_id: format!("T{nonce}"),
        ts,
        nonce: nonce.into(),
    };
    serde_json::to_string(&body).unwrap()
}
