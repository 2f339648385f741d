//! The flow over NATS JetStream. Each test runs a nats-server of its own (port and store
//! directory of its own), so it can stop the bus and start it again without touching the
//! machine's shared server: the outbox must hold the events while NATS is down and drain them,
//! with nothing lost, once it is back (I2).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Backend, TestApp, postgres_url, spawn_app_with};
use crate::orders::{buyer, g1, order_body, pay, send, wait_status};

/// `nats-server` from PATH or the Debian location; None when it is not installed.
fn nats_binary() -> Option<String> {
    ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()))
        .map(String::from)
}

struct Nats {
    binary: String,
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Nats {
    fn start(binary: String) -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("chepiao-nats-{}", uuid::Uuid::new_v4().simple()));
        let mut n = Nats { binary, port, dir, child: None };
        n.resume();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd", self.dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not start");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn flow_over_nats_survives_an_outage(backend: Backend) {
    let Some(binary) = nats_binary() else {
        eprintln!("nats-server not installed: skipped");
        return;
    };
    let mut nats = Nats::start(binary);
    let url = nats.url();
    let app: TestApp = spawn_app_with(backend, |c| c.nats_url = Some(url)).await;
    assert_eq!(app.state.relay.bus_name(), "nats-jetstream");
    let alice = buyer(&app, "alice", 1).await;
    let buy = |key: String| order_body(&key, &g1(), "VNP", "AOH", "SECOND", &alice.passengers);

    let (_, order) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(buy("n-0".into()))).await;
    let first = order["order_no"].as_str().unwrap().to_string();
    pay(&app, &alice.token, &first).await;
    wait_status(&app, &alice.token, &first, "TICKETED").await;

    // NATS goes away: payments still commit, and their events wait in the outbox.
    nats.kill();
    let mut paid = Vec::new();
    for i in 1..=3 {
        let (status, order) =
            send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(buy(format!("n-{i}")))).await;
        assert_eq!(status, 201, "{order}");
        let no = order["order_no"].as_str().unwrap().to_string();
        pay(&app, &alice.token, &no).await;
        wait_status(&app, &alice.token, &no, "PAID").await;
        paid.push(no);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.state.store.outbox_pending(100).await.unwrap().len(), 3, "held in the outbox");

    nats.resume();
    for no in &paid {
        wait_status(&app, &alice.token, no, "TICKETED").await;
    }
    assert!(app.state.store.outbox_pending(100).await.unwrap().is_empty());
    let audit = app.state.store.payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.ticketed, audit.in_flight_total), (4, 4, 0));
}

#[tokio::test]
async fn flow_over_nats_survives_an_outage_sqlite() {
    flow_over_nats_survives_an_outage(Backend::Sqlite).await;
}

#[tokio::test]
async fn flow_over_nats_survives_an_outage_postgres() {
    if postgres_url().is_none() {
        return;
    }
    flow_over_nats_survives_an_outage(Backend::Postgres).await;
}
