//! `spawn_app`: a real server on port 0 over a fresh store (SQLite file or a PostgreSQL schema),
//! loaded with the real network from data/rail.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use chepiao_domain::NetworkData;
use chepiao_domain::import::{parse_network, read_dir};
use chepiao_server::{App, Config};
use chepiao_store::Store;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: chepiao_server::AppState,
    /// The data directory (SQLite file and engine log).
    pub dir: std::path::PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The PostgreSQL (url, schema) to drop when the test ends.
    pg_schema: Option<(String, String)>,
}

impl TestApp {
    /// Shut the server down as SIGTERM would and wait until it has (engine closed).
    pub async fn stop(mut self) -> std::path::PathBuf {
        self.shutdown.take().map(|tx| tx.send(()));
        self.served.take().unwrap().await.unwrap().unwrap();
        self.dir.clone()
    }
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

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    /// GET and parse JSON, returning the status too.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }
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

pub fn postgres_url() -> Option<String> {
    std::env::var("CHEPIAO_TEST_POSTGRES_URL").ok()
}

async fn fresh_store(backend: Backend, dir: &std::path::Path) -> (Arc<dyn Store>, Option<(String, String)>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    match backend {
        Backend::Sqlite => {
            let url = dir.join("chepiao.db");
            (Arc::new(chepiao_store_sqlite::SqliteStore::open(url.to_str().unwrap()).await.unwrap()), None)
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let url = postgres_url().expect("CHEPIAO_TEST_POSTGRES_URL");
            let schema = format!("t_{id}");
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
            let options = chepiao_store_postgres::ConnectOptions::from_str(&url)
                .unwrap()
                .options([("search_path", schema.as_str())]);
            let store = chepiao_store_postgres::PgStore::connect_with(options).await.unwrap();
            (Arc::new(store), Some((url, schema)))
        }
    }
}

/// Start a server with a short sale window (runs for 3 days; tests stay quick) over a fresh
/// store and a fresh data directory.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// The secret the test servers' mockpay signs with (tests sign notifies of their own).
pub const MOCKPAY_SECRET: &str = "test-mockpay-secret";

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
    let url = dir.join("chepiao.db");
    let store: Arc<dyn Store> = Arc::new(chepiao_store_sqlite::SqliteStore::open(url.to_str().unwrap()).await.unwrap());
    start(store, dir, None, |_| {}).await
}

async fn start(
    store: Arc<dyn Store>,
    dir: std::path::PathBuf,
    pg_schema: Option<(String, String)>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        sale_window_days: 2,
        data_dir: dir.clone(),
        mockpay_secret: Some(chepiao_server::secrets::Secret(MOCKPAY_SECRET.into())),
        // Tests of the flow send bursts from one user and one IP; the risk and rate tests
        // set these back to what a real sale would use.
        risk_rate_per_s: 100_000,
        risk_burst: 100_000,
        ip_rate_per_s: 1_000_000,
        ip_burst: 1_000_000,
        ..Config::default()
    };
    tweak(&mut config);
    let app = App::build(store, config).await.unwrap();
    let state = app.state().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.serve(listener, async {
        rx.await.ok();
    }));
    TestApp { addr, client: reqwest::Client::new(), state, dir, shutdown: Some(tx), served: Some(served), pg_schema }
}

/// Tomorrow in China time, always inside the sale window.
pub fn tomorrow() -> chepiao_domain::ServiceDate {
    chepiao_domain::ServiceDate::today_in_china(chrono::Utc::now()).add_days(1)
}
