//! `chepiao load`: virtual users buying tickets over HTTP against a running server, then an
//! invariant audit read from the server's store.
//!
//! Setup registers `--users` accounts with five passengers each. Then `--concurrency` workers
//! place `--orders` one-passenger orders, either all on one hot run (`--mode hot`: G1 tomorrow,
//! 北京南→上海虹桥, second class, which sells out) or spread over random journeys on every
//! train that runs the day after tomorrow (`--mode spread`). With `--pay` each created order is
//! paid through mockpay's pay page, and the run waits until every payment is ticketed or
//! refunded: full purchases. `--rate` caps orders per second (for latency at a set load).
//!
//! The summary gives throughput, order latency percentiles and answers by status and code. The
//! audit (unless `--no-audit`) opens the store with the same flags as `serve` and checks I1 (no
//! seat segment in two live orders, one ticket per seat of every ticketed order) and I2 (every
//! captured payment ticketed or refunded).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chepiao_domain::{Network, SeatClass, ServiceDate};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    Hot,
    Spread,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Orders (and with `--pay`, purchases) as fast as the server answers or at `--rate`.
    Orders,
    /// The sale opens: `--users` join its waiting room, are admitted and buy (see `rush`).
    Rush,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value = "orders")]
    pub scenario: Scenario,
    /// The server to load.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Accounts (virtual users), five passengers each.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Orders to place in all.
    #[arg(long, default_value_t = 20_000)]
    pub orders: u64,
    #[arg(long, value_enum, default_value = "spread")]
    pub mode: Mode,
    /// Pay every created order (mockpay) and wait for its tickets.
    #[arg(long)]
    pub pay: bool,
    /// Orders per second at most (0: as fast as the server answers).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Skip the closing audit (when the server's store is not reachable from here).
    #[arg(long)]
    pub no_audit: bool,
    /// How the audit opens the server's store (same flags as `serve`).
    #[command(flatten)]
    pub flags: config::Flags,
}

/// Most latency samples kept (one per order).
const SAMPLES_MAX: u64 = 10_000_000;

struct User {
    token: String,
    passengers: Vec<i64>,
    /// Each virtual user has a device and a client address of its own (`X-Device-Id`,
    /// `X-Real-IP`, trusted from loopback), as real buyers do: the risk checks see many
    /// people, not one machine.
    device: String,
    ip: String,
}

/// A journey to book: (run id, from, to, class).
type Journey = (String, String, String, SeatClass);

fn journeys(network: &Network, mode: Mode) -> Vec<Journey> {
    let today = ServiceDate::today_in_china(chrono::Utc::now());
    match mode {
        Mode::Hot => {
            let run = format!("G1-{}", today.add_days(1).to_string().replace('-', ""));
            vec![(run, "VNP".into(), "AOH".into(), SeatClass::Second)]
        }
        Mode::Spread => {
            let date = today.add_days(2).to_string().replace('-', "");
            let mut out = Vec::new();
            let mut rng = 0x9e3779b97f4a7c15u64;
            let mut next = |n: usize| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n as u64) as usize
            };
            for t in network.trains().iter().filter(|t| t.stops.len() >= 2) {
                let classes: Vec<SeatClass> = t
                    .layout()
                    .classes()
                    .into_iter()
                    .filter(|(c, n)| *c != SeatClass::Standing && *n > 0)
                    .map(|(c, _)| c)
                    .collect();
                if classes.is_empty() {
                    continue;
                }
                for _ in 0..8 {
                    let from = next(t.stops.len() - 1);
                    let to = from + 1 + next(t.stops.len() - 1 - from);
                    let class = classes[next(classes.len())];
                    out.push((
                        format!("{}-{date}", t.code),
                        t.stops[from].telecode.to_string(),
                        t.stops[to].telecode.to_string(),
                        class,
                    ));
                }
            }
            out
        }
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// A private address per virtual user.
pub(crate) fn client_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

async fn setup_users(http: &reqwest::Client, base: &str, n: usize, tag: &str) -> anyhow::Result<Vec<User>> {
    let bar = ProgressBar::new(n as u64).with_message("registering users");
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}").expect("valid template"));
    let mut users = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let bar = &bar;
        let made = futures_util::future::try_join_all(chunk.iter().map(|i| async move {
            let creds = json!({"username": format!("load{tag}u{i}"), "password": "load-test-password"});
            let (s, b) =
                call(http, reqwest::Method::POST, format!("{base}/api/v1/auth/register"), None, Some(&creds)).await?;
            anyhow::ensure!(s == 201, "register: {s} {b}");
            let (s, b) =
                call(http, reqwest::Method::POST, format!("{base}/api/v1/auth/login"), None, Some(&creds)).await?;
            anyhow::ensure!(s == 200, "login: {s} {b}");
            let token = b["token"].as_str().context("token")?.to_string();
            let mut passengers = Vec::new();
            for p in 0..5 {
                let body =
                    json!({"name": format!("旅客{p}"), "id_type": "PASSPORT", "id_no": format!("L{tag}{i:05}{p}")});
                let (s, b) =
                    call(http, reqwest::Method::POST, format!("{base}/api/v1/passengers"), Some(&token), Some(&body))
                        .await?;
                anyhow::ensure!(s == 201, "passenger: {s} {b}");
                passengers.push(b["passenger_id"].as_i64().context("passenger_id")?);
            }
            bar.inc(1);
            Ok(User { token, passengers, device: format!("load-device-{tag}-{i}"), ip: client_ip(*i) })
        }))
        .await?;
        users.extend(made);
    }
    bar.finish();
    Ok(users)
}

#[derive(Default)]
struct Tally {
    /// Answers that were served (anything but a shed 503/429).
    latencies_us: Vec<u32>,
    /// Shed answers (503, 429): how fast the server said no.
    shed_us: Vec<u32>,
    answers: BTreeMap<String, u64>,
    paid: u64,
}

pub async fn run(args: LoadArgs, network: Network) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).timeout(Duration::from_secs(30)).build()?;
    let store = if args.no_audit {
        None
    } else {
        let config = config::load(&args.flags)?;
        Some(crate::open_store(&config).await?)
    };
    let baseline = match &store {
        Some(s) => Some(s.payment_audit().await?),
        None => None,
    };
    if args.scenario == Scenario::Rush {
        let config = config::load(&args.flags)?;
        let store = store.context("the rush creates its users in the server's store: drop --no-audit")?;
        return crate::rush::run(&args, &config, &network, store).await;
    }
    let tag = format!("{:x}", chrono::Utc::now().timestamp_millis() % 0xfffffff);
    let users = Arc::new(setup_users(&http, &base, args.users.max(1), &tag).await?);
    let journeys = Arc::new(journeys(&network, args.mode));
    println!(
        "{} users, {} journeys to choose from, {} orders, {} in flight, mode {:?}{}",
        users.len(),
        journeys.len(),
        args.orders,
        args.concurrency,
        args.mode,
        if args.pay { ", paying" } else { "" }
    );

    let bar = ProgressBar::new(args.orders).with_message("ordering");
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}").expect("valid template"),
    );
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (http, base, users, journeys, next, tally, bar) =
            (http.clone(), base.clone(), users.clone(), journeys.clone(), next.clone(), tally.clone(), bar.clone());
        let (orders, rate, pay, tag) = (args.orders, args.rate, args.pay, tag.clone());
        workers.push(tokio::spawn(async move {
            let mut local = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= orders {
                    break;
                }
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let user = &users[(i % users.len() as u64) as usize];
                let (run, from, to, class) = &journeys[(i.wrapping_mul(2654435761) % journeys.len() as u64) as usize];
                let passenger = user.passengers[((i / users.len() as u64) % 5) as usize];
                let body = json!({"idempotency_key": format!("load-{tag}-{i}"), "legs": [
                    {"run_id": run, "from": from, "to": to, "class": class, "passenger_ids": [passenger]}]});
                let sent = Instant::now();
                let answer = async {
                    let r = http
                        .post(format!("{base}/api/v1/orders"))
                        .bearer_auth(&user.token)
                        .header("x-device-id", &user.device)
                        .header("x-real-ip", &user.ip)
                        .json(&body)
                        .send()
                        .await?;
                    let status = r.status().as_u16();
                    anyhow::Ok((status, r.json::<Value>().await.unwrap_or(Value::Null)))
                }
                .await;
                let took = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let shed = matches!(&answer, Ok((503 | 429, _)));
                let sink = if shed { &mut local.shed_us } else { &mut local.latencies_us };
                if (sink.len() as u64) < SAMPLES_MAX {
                    sink.push(took);
                }
                let key = match &answer {
                    Ok((s, b)) if *s >= 400 => format!("{s} {}", b["code"]),
                    Ok((s, _)) => s.to_string(),
                    Err(e) => {
                        format!("transport: {}", if e.to_string().contains("timed out") { "timeout" } else { "error" })
                    }
                };
                *local.answers.entry(key).or_default() += 1;
                if let (true, Ok((201, order))) = (pay, &answer) {
                    if pay_order(&http, &base, &user.token, order).await.is_ok() {
                        local.paid += 1;
                    } else {
                        *local.answers.entry("pay failed".into()).or_default() += 1;
                    }
                }
                bar.inc(1);
            }
            let mut t = tally.lock().await;
            t.latencies_us.extend(local.latencies_us);
            t.shed_us.extend(local.shed_us);
            t.paid += local.paid;
            for (k, v) in local.answers {
                *t.answers.entry(k).or_default() += v;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let ordering = start.elapsed();
    bar.finish();
    let mut tally = Arc::try_unwrap(tally).map_err(|_| anyhow::anyhow!("workers still running"))?.into_inner();
    summary(&mut tally, ordering, args.orders);

    let Some(store) = store else { return Ok(()) };
    if args.pay {
        let base_audit = baseline.expect("read with the store");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let a = store.payment_audit().await?;
            let settled = (a.ticketed + a.refunded).saturating_sub(base_audit.ticketed + base_audit.refunded);
            if settled >= tally.paid && a.in_flight_total == 0 {
                let total = start.elapsed();
                println!(
                    "full purchases: {} paid, all ticketed or refunded {:.2} s after the start: {:.0} purchases/s",
                    tally.paid,
                    total.as_secs_f64(),
                    tally.paid as f64 / total.as_secs_f64()
                );
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "after 120 s, {} captured payments are neither ticketed nor refunded: {:?}",
                    a.in_flight_total,
                    a.in_flight
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    audit(store.as_ref()).await
}

pub(crate) async fn pay_order(http: &reqwest::Client, base: &str, token: &str, order: &Value) -> anyhow::Result<()> {
    let no = order["order_no"].as_str().context("order_no")?;
    let body = json!({"channel": "mockpay"});
    let (s, started) =
        call(http, reqwest::Method::POST, format!("{base}/api/v1/orders/{no}/payments"), Some(token), Some(&body))
            .await?;
    anyhow::ensure!(s == 201, "payment: {s} {started}");
    let url = started["pay_url"].as_str().context("pay_url")?.to_string();
    let (s, pressed) = call(http, reqwest::Method::POST, url, None, None).await?;
    anyhow::ensure!(s == 202, "pay page: {s} {pressed}");
    Ok(())
}

/// The `p` quantile (0 to 1) of latencies in µs, sorted, in ms; 0 for none.
pub(crate) fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[i]) / 1000.0
}

fn summary(t: &mut Tally, took: Duration, orders: u64) {
    t.latencies_us.sort_unstable();
    t.shed_us.sort_unstable();
    let pct = |p: f64| percentile_ms(&t.latencies_us, p);
    println!(
        "orders: {orders} in {:.2} s = {:.0} orders/s (HTTP answers of any kind)",
        took.as_secs_f64(),
        orders as f64 / took.as_secs_f64()
    );
    let created = t.answers.get("201").copied().unwrap_or(0);
    println!("  created {created} = {:.0} orders/s", created as f64 / took.as_secs_f64());
    println!(
        "  order latency ms (served answers): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    if !t.shed_us.is_empty() {
        println!(
            "  shed (503/429): {} answers = {:.0}/s; latency ms p50 {:.2}  p99 {:.2}",
            t.shed_us.len(),
            t.shed_us.len() as f64 / took.as_secs_f64(),
            percentile_ms(&t.shed_us, 0.5),
            percentile_ms(&t.shed_us, 0.99)
        );
    }
    println!("  answers:");
    for (k, v) in &t.answers {
        println!("    {k:<24} {v}");
    }
}

pub(crate) async fn audit(store: &dyn chepiao_store::Store) -> anyhow::Result<()> {
    let seats = chepiao_server::flow::audit::audit_seats(store).await?;
    let pay = store.payment_audit().await?;
    println!(
        "audit: {} orders ({} live), {} seat-segment holds, {} tickets; payments captured {}, ticketed {}, refunded {}, in flight {}",
        seats.orders,
        seats.live_orders,
        seats.seat_segments,
        seats.tickets,
        pay.captured,
        pay.ticketed,
        pay.refunded,
        pay.in_flight_total
    );
    if !seats.problems.is_empty() || pay.in_flight_total > 0 {
        for p in &seats.problems {
            println!("  VIOLATION {p}");
        }
        if pay.in_flight_total > 0 {
            println!("  VIOLATION I2: captured but neither ticketed nor refunded: {:?}", pay.in_flight);
        }
        bail!("the invariant audit failed");
    }
    println!("audit: I1 (no seat segment sold twice) and I2 (every captured payment ticketed or refunded) hold");
    Ok(())
}
