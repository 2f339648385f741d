//! A whole sale day's failure modes, over HTTP: one event that always fails never holds up the
//! others (it goes DEAD, an operator sees and retries it); a second node on a database that
//! belongs to another seat engine refuses to start; PostgreSQL writers heal after their
//! connections are cut and after PostgreSQL restarts, with nothing acknowledged lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chepiao_api::orders::OrderRequest;
use chepiao_domain::SeatClass;
use chepiao_server::{App, StartError};
use chepiao_store::OutboxState;

use crate::app::{ADMIN_KEY, Backend, Buyer, TestApp, code, order_req, spawn_app_with, test_config, wait_until};

fn quick_retries(c: &mut chepiao_server::Config) {
    c.event_attempts_max = 3;
    c.event_backoff_ms_min = 20;
    c.event_backoff_ms_max = 50;
}

async fn events_fail_alone(backend: Backend) {
    let app = spawn_app_with(backend, quick_retries).await;
    // A ticket event for an order that does not exist: it fails every time.
    app.sql(
        "INSERT INTO outbox (kind, subject, created_at_ms, state, attempts, next_at_ms)
         VALUES ('ticket', 'ENOSUCHORDER', 0, 'PENDING', 0, 0)",
    )
    .await;
    let mut buyers = Vec::new();
    for i in 0..6 {
        buyers.push(app.buyer(&format!("good{i}"), 1).await);
    }
    // Every good order is ticketed, the poisoned event before them notwithstanding.
    let keys: Vec<String> = (0..buyers.len()).map(|i| format!("k{i}")).collect();
    let buys = buyers.iter().zip(&keys).map(|(b, k)| app.buy(b, k, SeatClass::Second, 1));
    for done in futures_util::future::join_all(buys).await {
        assert_eq!(done.status, "TICKETED");
    }
    let dead = wait_dead(&app).await;
    assert_eq!((dead.subject.as_str(), dead.attempts), ("ENOSUCHORDER", 3), "{dead:?}");
    assert!(dead.last_error.as_deref().unwrap_or_default().contains("unknown order"), "{dead:?}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("chepiao_events_dead_total"), "the DEAD event shows in /metrics");
    // The operator retries it: due now, attempts from zero; it fails alone again.
    let retried = app.api.admin_retry_event(ADMIN_KEY, dead.id).await.unwrap();
    assert_eq!((retried.state.as_str(), retried.attempts), ("PENDING", 0), "{retried:?}");
    let again = wait_dead(&app).await;
    assert_eq!((again.id, again.attempts), (dead.id, 3));
    assert_eq!(code(app.api.admin_retry_event(ADMIN_KEY, dead.id + 1000).await), (404, 40411));
    assert_eq!(code(app.api.admin_retry_event("wrong", dead.id).await).0, 401);
    assert_eq!(app.store().payment_audit().await.unwrap().in_flight_total, 0, "I2: every payment settled");
}

/// The first DEAD event, once there is one.
async fn wait_dead(app: &TestApp) -> chepiao_api::ops::EventView {
    let dead = || async { app.api.admin_events(ADMIN_KEY, OutboxState::Dead.as_str(), 0).await.unwrap().events };
    wait_until("an event goes DEAD", || async { !dead().await.is_empty() }).await;
    dead().await.remove(0)
}

crate::on_both_backends!(events_fail_alone, events_fail_alone_sqlite, events_fail_alone_postgres);

async fn a_second_node_on_the_database_refuses_to_start(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let other_dir = std::env::temp_dir().join(format!("chepiao-test-{}", uuid::Uuid::new_v4().simple()));
    let store = app.open_store_again().await;
    let err = App::build(store, test_config(&other_dir)).await.err().expect("the second node refuses");
    assert!(matches!(err, StartError::OtherEngine { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("sell every seat twice") && message.contains("docs/DEPLOY.md"), "{message}");
    // The first node goes on selling.
    let b = app.buyer("alice", 1).await;
    assert_eq!(app.buy(&b, "k", SeatClass::Second, 1).await.status, "TICKETED");
    std::fs::remove_dir_all(&other_dir).ok();
}

crate::on_both_backends!(
    a_second_node_on_the_database_refuses_to_start,
    a_second_node_refuses_sqlite,
    a_second_node_refuses_postgres
);

/// What buyers were told during a load: orders acknowledged (201) and paid (pay page 202).
#[derive(Default)]
struct Acknowledged {
    orders: HashSet<String>,
    paid: HashSet<String>,
    refused: u64,
}

type Acks = Arc<Mutex<Acknowledged>>;

/// Buyers buying until `stop`, spread over every train from 北京南 to 上海虹桥 tomorrow (so no
/// run sells out): order, payment, pay page; errors (503 while a store is down) are counted,
/// not fatal.
async fn load(app: &TestApp, buyers: Vec<Buyer>, stop: Arc<AtomicBool>) -> (Vec<tokio::task::JoinHandle<()>>, Acks) {
    let trains = app.api.trains("VNP", "AOH", &crate::app::tomorrow().to_string()).await.unwrap();
    let runs: Arc<Vec<String>> = Arc::new(trains.iter().map(|t| t.run_id.to_string()).collect());
    assert!(runs.len() > 10, "{} runs", runs.len());
    let acked = Acks::default();
    let mut tasks = Vec::new();
    for (i, b) in buyers.into_iter().enumerate() {
        let (stop, acked, runs) = (stop.clone(), acked.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let run = &runs[(i + n * 7) % runs.len()];
                let req = order_req(&format!("b{i}-{n}"), run, "VNP", "AOH", SeatClass::Second, &b.passengers);
                buy_once(&b, &req, &acked).await;
                n += 1;
            }
        }));
    }
    (tasks, acked)
}

async fn buy_once(b: &Buyer, req: &OrderRequest, acked: &Acks) {
    let order = match b.api.create_order(req, None).await {
        Ok(o) if o.status == 201 => o.body,
        _ => return acked.lock().unwrap().refused += 1,
    };
    acked.lock().unwrap().orders.insert(order.order_no.clone());
    let Ok(started) = b.api.pay(&order.order_no, "mockpay").await else {
        return acked.lock().unwrap().refused += 1;
    };
    if b.api.press_pay(&started.pay_url, true).await.is_ok() {
        acked.lock().unwrap().paid.insert(order.order_no);
    }
}

/// After a load through an outage: ready again; every order acknowledged is there; every
/// one paid is ticketed; no seat is held twice (I1) and every payment is settled (I2).
async fn check_after_outage(app: &TestApp, acked: &Acks) {
    wait_until("ready again", || async { app.get("/readyz").await.status() == 200 }).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.orders.len() >= 10, "the load placed orders: {}", acked.orders.len());
    for no in &acked.orders {
        assert!(app.store().order(no).await.unwrap().is_some(), "acknowledged order {no} lost");
    }
    for no in &acked.paid {
        wait_until(&format!("paid order {no} ticketed"), || async {
            let o = app.store().order(no).await.unwrap().unwrap();
            o.status == chepiao_store::OrderStatus::Ticketed
        })
        .await;
    }
    wait_until("every payment settled", || async { app.store().payment_audit().await.unwrap().in_flight_total == 0 })
        .await;
    let seats = chepiao_flow::audit::audit_seats(app.store()).await.unwrap();
    assert!(seats.problems.is_empty(), "{:?}", seats.problems);
    eprintln!("outage load: {} orders, {} paid, {} refused", acked.orders.len(), acked.paid.len(), acked.refused);
}

/// Retries sized for a short outage in a test: quick, many, and a short redelivery delay.
fn outage_config(c: &mut chepiao_server::Config) {
    c.event_attempts_max = 1_000;
    c.event_backoff_ms_min = 20;
    c.event_backoff_ms_max = 200;
    c.event_redeliver_after_s = 2;
}

async fn buyers(app: &TestApp, n: usize) -> Vec<Buyer> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(app.buyer(&format!("buyer{i}"), 1).await);
    }
    out
}

/// Every connection of the app cut twice during a load: writers reconnect, /readyz says 503
/// while they cannot write and 200 when they can, nothing acknowledged is lost.
#[tokio::test]
async fn postgres_writers_heal_after_their_connections_are_cut() {
    if !crate::app::available(Backend::Postgres, "postgres_writers_heal_after_their_connections_are_cut") {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, outage_config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, acked) = load(&app, buyers(&app, 8).await, stop.clone()).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(app.terminate_pg_backends().await > 0, "the app's connections were found");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    futures_util::future::join_all(tasks).await;
    check_after_outage(&app, &acked).await;
}

/// PostgreSQL stopped and started again under load (a server of the test's own): /readyz
/// answers 503 while it is down, writers reconnect when it is back, nothing acknowledged is lost.
#[tokio::test]
async fn postgres_writers_heal_after_a_restart() {
    let Some(pg) = crate::private_pg::PrivatePostgres::start("postgres_writers_heal_after_a_restart") else { return };
    let pg = Arc::new(pg);
    let app = crate::app::spawn_app_on_postgres(&pg.url(), outage_config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, acked) = load(&app, buyers(&app, 8).await, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let down = pg.clone();
    tokio::task::spawn_blocking(move || down.stop()).await.unwrap();
    wait_until("/readyz says 503 while PostgreSQL is down", || async { app.get("/readyz").await.status() == 503 })
        .await;
    let up = pg.clone();
    tokio::task::spawn_blocking(move || up.start_again()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    futures_util::future::join_all(tasks).await;
    check_after_outage(&app, &acked).await;
}
