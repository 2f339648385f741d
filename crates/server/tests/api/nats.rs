//! The flow over NATS JetStream. Each test runs a nats-server of its own (port and store
//! directory of its own), so it can stop the bus and start it again without touching the
//! machine's shared server: the outbox must hold the events while NATS is down and drain them,
//! with nothing lost, once it is back (I2).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chepiao_domain::SeatClass;

use crate::app::{Backend, TestApp, g1, order_req, spawn_app_with};

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
        eprintln!("skipped flow_over_nats_survives_an_outage: nats-server is not installed");
        return;
    };
    let mut nats = Nats::start(binary);
    let url = nats.url();
    let app: TestApp = spawn_app_with(backend, |c| c.nats_url = Some(url)).await;
    assert_eq!(app.state.flow.relay.bus_name(), "nats-jetstream");
    // A passenger per order: a passenger travels on one journey at a time.
    let alice = app.buyer("alice", 4).await;
    let buy = |key: String, i: usize| order_req(&key, &g1(), "VNP", "AOH", SeatClass::Second, &alice.passengers[i..=i]);

    let first = alice.api.create_order(&buy("n-0".into(), 0), None).await.unwrap().body.order_no;
    app.pay(&alice, &first).await;
    app.wait_status(&alice, &first, "TICKETED").await;

    // NATS goes away: payments still commit, and their events wait in the outbox.
    nats.kill();
    let mut paid = Vec::new();
    for i in 1..=3 {
        let no = alice.api.create_order(&buy(format!("n-{i}"), i), None).await.unwrap().body.order_no;
        app.pay(&alice, &no).await;
        app.wait_status(&alice, &no, "PAID").await;
        paid.push(no);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.store().outbox_due(i64::MAX, 100).await.unwrap().len(), 3, "held in the outbox");

    nats.resume();
    for no in &paid {
        app.wait_status(&alice, no, "TICKETED").await;
    }
    assert!(app.store().outbox_due(i64::MAX, 100).await.unwrap().is_empty());
    let audit = app.store().payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.ticketed, audit.in_flight_total), (4, 4, 0));
}

crate::on_both_backends!(
    flow_over_nats_survives_an_outage,
    flow_over_nats_survives_an_outage_sqlite,
    flow_over_nats_survives_an_outage_postgres
);

/// Over NATS too, an event that always fails goes DEAD after its attempts (recorded in the
/// outbox, not dropped by the consumer), and the good ones behind it are ticketed.
async fn a_failing_event_over_nats_goes_dead_not_lost(backend: Backend) {
    let Some(binary) = nats_binary() else {
        eprintln!("skipped a_failing_event_over_nats_goes_dead_not_lost: nats-server is not installed");
        return;
    };
    let nats = Nats::start(binary);
    let url = nats.url();
    let app: TestApp = spawn_app_with(backend, |c| {
        c.nats_url = Some(url);
        c.event_attempts_max = 3;
        c.event_backoff_ms_min = 20;
        c.event_backoff_ms_max = 50;
    })
    .await;
    app.sql(
        "INSERT INTO outbox (kind, subject, created_at_ms, state, attempts, next_at_ms)
         VALUES ('ticket', 'ENOSUCHORDER', 0, 'PENDING', 0, 0)",
    )
    .await;
    let alice = app.buyer("alice", 3).await;
    for i in 0..3 {
        let no = alice.api.create_order(&buy(&alice, i), None).await.unwrap().body.order_no;
        app.pay(&alice, &no).await;
        app.wait_status(&alice, &no, "TICKETED").await;
    }
    crate::app::wait_until("the poisoned event DEAD", || async {
        let dead = app.api.admin_events(crate::app::ADMIN_KEY, "DEAD", 0).await.unwrap().events;
        dead.iter().any(|e| e.subject == "ENOSUCHORDER" && e.attempts == 3)
    })
    .await;
    drop(nats);
}

crate::on_both_backends!(
    a_failing_event_over_nats_goes_dead_not_lost,
    a_failing_event_over_nats_goes_dead_sqlite,
    a_failing_event_over_nats_goes_dead_postgres
);

/// Order `i` of `b`, for its passenger `i` (a passenger travels on one journey at a time).
fn buy(b: &crate::app::Buyer, i: usize) -> chepiao_api::orders::OrderRequest {
    order_req(&format!("k{i}"), &g1(), "VNP", "AOH", SeatClass::Second, &b.passengers[i..=i])
}

/// A NATS server that loses its store (its directory wiped while it was down): the stream is
/// made again, and events it held are handed over again once their redelivery time passes.
#[tokio::test]
async fn events_a_nats_server_lost_are_handed_over_again() {
    let Some(binary) = nats_binary() else {
        eprintln!("skipped events_a_nats_server_lost_are_handed_over_again: nats-server is not installed");
        return;
    };
    let mut nats = Nats::start(binary);
    let url = nats.url();
    let app: TestApp = spawn_app_with(Backend::Sqlite, |c| {
        c.nats_url = Some(url);
        c.event_redeliver_after_s = 2;
    })
    .await;
    // A buyer per order, paid without waiting (one unpaid order per user).
    let mut paid = Vec::new();
    for i in 0..8 {
        let b = app.buyer(&format!("buyer{i}"), 1).await;
        let no = b.api.create_order(&buy(&b, 0), None).await.unwrap().body.order_no;
        app.pay(&b, &no).await;
        paid.push((b, no));
    }
    // Down at once, with whatever it held unconsumed, and its store gone.
    nats.kill();
    std::fs::remove_dir_all(&nats.dir).ok();
    nats.resume();
    for (b, no) in &paid {
        app.wait_status(b, no, "TICKETED").await;
    }
    let audit = app.store().payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.ticketed, audit.in_flight_total), (8, 8, 0));
}
