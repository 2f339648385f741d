//! The soak: `--duration` of orders at `--rate` per second with a sale day's mix, to see that
//! nothing drifts. Each created order is paid (70%), cancelled (10%) or left to expire at the
//! end of its pay window (20%); 5% of the paid orders are refunded once ticketed. Orders are
//! spread over every train two days out (`--mode spread`), so runs do not sell out.
//!
//! It reports, per `--window` (5 minutes): orders answered, their p50 and p99, and the server's
//! resident memory (`chepiao_process_resident_bytes` from `/metrics`); then the audit, and that
//! every order the server acknowledged (201) is in the store.
//!
//! With several `--url`s (a cluster's nodes), order `i` goes to node `i mod n`, and so do its
//! payment, cancellation and refund; a request no node answered (a node down: a transport
//! error) is sent again to the next node with the same idempotency key, as a load balancer
//! would. An answer with an error code is kept as it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chepiao_api::Client;
use chepiao_domain::Network;
use chepiao_store::Store;
use tokio::sync::Semaphore;

use crate::load::args::{LoadArgs, Mode};
use crate::load::orders::{Journey, Payer, journeys, one_leg, pay_order};
use crate::load::stats::{self, elapsed_us, pct};
use crate::load::users::{self, Buyer};

/// Latencies of one window, µs (all answers, and the refusals alone), and its answers that
/// were not 201 by what they were (an error code, `replay`, `transport`).
#[derive(Default)]
struct Window {
    latencies_us: Vec<u32>,
    refused_us: Vec<u32>,
    refused: std::collections::BTreeMap<String, u64>,
}

/// What a create-order answer was, when it was not a new order.
fn refusal<T>(answer: &Result<chepiao_api::client::Answered<T>, chepiao_api::ClientError>) -> Option<String> {
    match answer {
        Ok(a) if a.status == 201 => None,
        Ok(_) => Some("replay".into()),
        Err(e) => Some(e.code().map_or_else(|| "transport".into(), |c| c.to_string())),
    }
}

struct Soak {
    users: Vec<Buyer>,
    journeys: Vec<Journey>,
    tag: String,
    start: Instant,
    window: Duration,
    windows: Mutex<Vec<Window>>,
    /// Orders not sent because `--concurrency` were already in flight (the server fell behind).
    skipped: AtomicU64,
    refunds: AtomicU64,
    /// Windows printed so far (they are printed in order).
    printed: std::sync::atomic::AtomicUsize,
    urls: Vec<String>,
    payer: Payer,
    /// Order numbers the server acknowledged (at most `--rate` x `--duration`).
    acknowledged: Mutex<Vec<String>>,
    /// Requests sent again to another node after a transport error.
    resent: AtomicU64,
}

pub async fn run(args: &LoadArgs, network: &Network, store: Option<Arc<dyn Store>>) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0 && args.duration_s > 0, "the soak needs --rate and --duration");
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).timeout(Duration::from_secs(30)).build()?;
    let client = Client::with_http(http, args.url());
    let tag = format!("{:x}", chrono::Utc::now().timestamp_millis() % 0xfffffff);
    let soak = Arc::new(Soak {
        users: users::setup(&client, args.users.max(1), &tag).await?,
        journeys: journeys(network, Mode::Spread),
        tag,
        start: Instant::now(),
        window: Duration::from_secs(args.window_s.max(1)),
        windows: Mutex::new(Vec::new()),
        skipped: AtomicU64::new(0),
        refunds: AtomicU64::new(0),
        printed: Default::default(),
        urls: args.urls.clone(),
        payer: if args.pay_as_provider { Payer::provider(&args.flags)? } else { Payer::PayPage },
        acknowledged: Mutex::new(Vec::new()),
        resent: AtomicU64::new(0),
    });
    let total = args.rate * args.duration_s;
    println!("soak: {total} orders at {}/s for {} s, windows of {} s", args.rate, args.duration_s, args.window_s);
    println!("server memory at the start: {:.0} MB", server_rss_mb(&client).await);
    let in_flight = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let reporter = tokio::spawn(report_windows(soak.clone(), client.clone()));
    for i in 0..total {
        tokio::time::sleep_until((soak.start + Duration::from_secs_f64(i as f64 / args.rate as f64)).into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            soak.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let soak = soak.clone();
        tokio::spawn(async move {
            soak.order(i).await;
            drop(permit);
        });
    }
    let _ = in_flight.acquire_many(args.concurrency.max(1) as u32).await;
    reporter.abort();
    // The windows the reporter had not printed yet (the last whole one ends as the run does).
    let windows = soak.windows.lock().expect("not poisoned").len();
    for w in soak.printed.load(Ordering::Relaxed)..windows {
        soak.print_window(w, &client).await;
    }
    println!(
        "server memory at the end: {:.0} MB; orders not sent (client at its concurrency): {}; refunds: {}; \
         requests sent again to another node: {}",
        server_rss_mb(&client).await,
        soak.skipped.load(Ordering::Relaxed),
        soak.refunds.load(Ordering::Relaxed),
        soak.resent.load(Ordering::Relaxed)
    );
    let Some(store) = store else { return Ok(()) };
    soak.check_acknowledged(store.as_ref()).await?;
    stats::audit(store.as_ref()).await
}

/// A request that reached no server (refused, reset, timed out): worth sending to another node.
fn unanswered<T>(answer: &Result<T, chepiao_api::ClientError>) -> bool {
    matches!(answer, Err(e) if e.status().is_none())
}

impl Soak {
    /// Order `i`, then what its buyer does with it.
    async fn order(&self, i: u64) {
        let user = &self.users[(i % self.users.len() as u64) as usize];
        let journey = &self.journeys[(i.wrapping_mul(2654435761) % self.journeys.len() as u64) as usize];
        let passenger = user.passengers[((i / self.users.len() as u64) % user.passengers.len() as u64) as usize];
        let req = one_leg(journey, passenger, format!("soak-{}-{i}", self.tag));
        let sent = Instant::now();
        let mut node = i as usize;
        let mut answer = self.api(user, node).create_order(&req, None).await;
        while unanswered(&answer) && node < i as usize + self.urls.len() - 1 {
            node += 1;
            self.resent.fetch_add(1, Ordering::Relaxed);
            answer = self.api(user, node).create_order(&req, None).await;
        }
        self.record(sent, elapsed_us(sent), refusal(&answer));
        let Ok(order) = answer else { return };
        self.acknowledged.lock().expect("not poisoned").push(order.body.order_no.clone());
        let api = self.api(user, node);
        match i % 20 {
            0..=13 if pay_order(&api, &order.body, &self.payer).await.is_ok() && i % 100 < 5 => {
                self.refund_when_ticketed(&api, &order.body.order_no).await;
            }
            0..=13 => {}
            14 | 15 => drop(api.cancel(&order.body.order_no).await),
            _ => {} // left to expire
        }
    }

    /// The user's client pointed at node `node` (mod the nodes).
    fn api(&self, user: &Buyer, node: usize) -> Client {
        if self.urls.len() == 1 { user.api.clone() } else { user.api.with_base(&self.urls[node % self.urls.len()]) }
    }

    /// I4 seen from outside: every order answered 201 is in the store.
    async fn check_acknowledged(&self, store: &dyn Store) -> anyhow::Result<()> {
        let acknowledged = self.acknowledged.lock().expect("not poisoned").clone();
        let mut missing = Vec::new();
        for no in &acknowledged {
            if store.order(no).await?.is_none() {
                missing.push(no.clone());
            }
        }
        anyhow::ensure!(missing.is_empty(), "acknowledged orders missing from the store: {missing:?}");
        println!("acknowledged orders: {}, all in the store", acknowledged.len());
        Ok(())
    }

    fn record(&self, sent: Instant, took_us: u32, refused: Option<String>) {
        let w = ((sent - self.start).as_secs_f64() / self.window.as_secs_f64()) as usize;
        let mut windows = self.windows.lock().expect("not poisoned");
        if windows.len() <= w {
            windows.resize_with(w + 1, Window::default);
        }
        windows[w].latencies_us.push(took_us);
        if let Some(what) = refused {
            windows[w].refused_us.push(took_us);
            *windows[w].refused.entry(what).or_default() += 1;
        }
    }

    async fn refund_when_ticketed(&self, api: &Client, order_no: &str) {
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Ok(o) = api.order(order_no).await else { continue };
            if let Some(t) = o.tickets.as_ref().and_then(|t| t.first()).filter(|_| o.status == "TICKETED") {
                if api.refund(&t.ticket_sn).await.is_ok() {
                    self.refunds.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
    }

    async fn print_window(&self, w: usize, client: &Client) {
        let (mut lat, mut refused_lat, refused) = {
            let windows = self.windows.lock().expect("not poisoned");
            let Some(win) = windows.get(w) else { return };
            (win.latencies_us.clone(), win.refused_us.clone(), win.refused.clone())
        };
        let n = lat.len();
        let (p50, p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
        let refused_p99 = pct(&mut refused_lat, 0.99);
        let mb = server_rss_mb(client).await;
        let from = w as u64 * self.window.as_secs();
        let not_created: u64 = refused.values().sum();
        let by: Vec<String> = refused.iter().map(|(what, k)| format!("{what}: {k}")).collect();
        println!(
            "window {from:>5} s: {n:>8} orders ({not_created} not created [{}], their p99 {refused_p99:.1} ms), p50 {p50:.1} ms, p99 {p99:.1} ms, server {mb:.0} MB",
            by.join(", ")
        );
    }
}

/// Print each window once it is over.
async fn report_windows(soak: Arc<Soak>, client: Client) {
    for w in 0.. {
        tokio::time::sleep_until((soak.start + soak.window * (w as u32 + 1) + Duration::from_secs(1)).into()).await;
        soak.print_window(w, &client).await;
        soak.printed.store(w + 1, Ordering::Relaxed);
    }
}

/// The server's resident memory from its `/metrics`, MB (0 when it does not say).
async fn server_rss_mb(client: &Client) -> f64 {
    let Ok(r) = client.request(reqwest::Method::GET, "/metrics").send().await else { return 0.0 };
    let text = r.text().await.unwrap_or_default();
    let bytes: f64 = text
        .lines()
        .find(|l| l.starts_with("chepiao_process_resident_bytes"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0);
    bytes / 1e6
}
