//! The orders scenario: `--concurrency` workers place `--orders` one-passenger orders, either
//! all on one hot run (`--mode hot`: G1 tomorrow, 北京南→上海虹桥, second class, which sells
//! out) or spread over random journeys on every train that runs the day after tomorrow
//! (`--mode spread`). With `--pay` each created order is paid through mockpay's pay page, and
//! the run waits until every payment is ticketed or refunded: full purchases. `--rate` caps
//! orders per second (for latency at a set load).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use chepiao_api::orders::{LegBody, OrderOut, OrderRequest};
use chepiao_api::{Client, ClientError};
use chepiao_domain::{Network, SeatClass, ServiceDate};
use chepiao_store::{PaymentAudit, Store};
use indicatif::{ProgressBar, ProgressStyle};

use crate::load::args::{LoadArgs, Mode};
use crate::load::stats::{self, Tally, elapsed_us};
use crate::load::users::{self, Buyer};

/// A journey to book: (run id, from, to, class).
pub type Journey = (String, String, String, SeatClass);

/// How long the purchases may take to settle after the last order.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

pub fn journeys(network: &Network, mode: Mode) -> Vec<Journey> {
    let today = ServiceDate::today_in_china(chrono::Utc::now());
    match mode {
        Mode::Hot => {
            let run = format!("G1-{}", today.add_days(1).to_string().replace('-', ""));
            vec![(run, "VNP".into(), "AOH".into(), SeatClass::Second)]
        }
        Mode::Spread => spread_journeys(network, &today.add_days(2).to_string().replace('-', "")),
    }
}

/// Eight random journeys (stops, seated class) on every train that runs on `date`.
fn spread_journeys(network: &Network, date: &str) -> Vec<Journey> {
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
            let (a, b) = (t.stops[from].telecode.to_string(), t.stops[to].telecode.to_string());
            out.push((format!("{}-{date}", t.code), a, b, classes[next(classes.len())]));
        }
    }
    out
}

/// An order of one passenger on `journey`, under idempotency key `key`.
pub fn one_leg((run, from, to, class): &Journey, passenger: i64, key: String) -> OrderRequest {
    let leg = LegBody {
        run_id: run.clone(),
        from: from.clone(),
        to: to.clone(),
        class: *class,
        passenger_ids: vec![passenger],
        seat_prefs: None,
    };
    OrderRequest { idempotency_key: key, legs: vec![leg] }
}

/// How the load pays an order: through mockpay's pay page (the server then sends itself the
/// signed notify), or as the payment provider itself (API.md allows an outside stand-in: it
/// signs the notify with the channel's secret and sends it), which takes the pay page out of the
/// measured path.
#[derive(Clone)]
pub enum Payer {
    PayPage,
    Provider { secret: Arc<[u8]> },
}

impl Payer {
    /// The provider's secret is mockpay's, as the server reads it: `mockpay_secret` from the
    /// configuration, else the key file in the data directory.
    pub fn provider(flags: &crate::config::Flags) -> anyhow::Result<Payer> {
        let config = crate::config::load(flags)?;
        let secret = match &config.mockpay_secret {
            Some(s) if !s.0.is_empty() => s.0.clone().into_bytes(),
            _ => chepiao_server::security::secrets::key(None, &config.data_dir, "mockpay")
                .map_err(anyhow::Error::msg)?
                .to_vec(),
        };
        Ok(Payer::Provider { secret: secret.into() })
    }
}

pub async fn pay_order(user: &Client, order: &OrderOut, payer: &Payer) -> Result<(), ClientError> {
    let started = user.pay(&order.order_no, "mockpay").await?;
    match payer {
        Payer::PayPage => drop(user.press_pay(&started.pay_url, true).await?),
        Payer::Provider { secret } => {
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let body = serde_json::to_vec(&chepiao_api::payments::NotifyBody {
                out_trade_no: started.payment_no.clone(),
                payment_no: started.payment_no,
                amount_fen: started.amount_fen,
                status: "SUCCESS".into(),
                txn_id: format!("T{nonce}"),
                ts: chrono::Utc::now().timestamp(),
                nonce,
            })
            .expect("a notify always serialises");
            let signature = chepiao_flow::channels::sign(secret, &body);
            user.notify("mockpay", &body, &signature).await?;
        }
    }
    Ok(())
}

/// What the workers share.
struct Plan {
    users: Vec<Buyer>,
    journeys: Vec<Journey>,
    tag: String,
    orders: u64,
    rate: u64,
    /// Pay every created order, and how.
    pay: Option<Payer>,
    next: AtomicU64,
    start: Instant,
}

impl Plan {
    /// Order `i`: which user books which journey for which passenger.
    fn order(&self, i: u64) -> (&Buyer, OrderRequest) {
        let user = &self.users[(i % self.users.len() as u64) as usize];
        let journey = &self.journeys[(i.wrapping_mul(2654435761) % self.journeys.len() as u64) as usize];
        let passenger = user.passengers[((i / self.users.len() as u64) % users::PASSENGERS_PER_USER as u64) as usize];
        (user, one_leg(journey, passenger, format!("load-{}-{i}", self.tag)))
    }
}

/// One worker: take the next order number until all are placed.
async fn worker(plan: Arc<Plan>, bar: ProgressBar) -> Tally {
    let mut local = Tally::default();
    loop {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.orders {
            return local;
        }
        if plan.rate > 0 {
            let due = plan.start + Duration::from_secs_f64(i as f64 / plan.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let (user, req) = plan.order(i);
        let sent = Instant::now();
        let answer = user.api.create_order(&req, None).await;
        let took = elapsed_us(sent);
        let (key, shed) = match &answer {
            Ok(a) => (a.status.to_string(), false),
            Err(ClientError::Api { status, body }) => (format!("{status} {}", body.code), matches!(status, 503 | 429)),
            Err(e) => {
                (format!("transport: {}", if e.to_string().contains("timed out") { "timeout" } else { "error" }), false)
            }
        };
        local.answer(key, took, shed);
        if let (Some(payer), Ok(a)) = (&plan.pay, &answer)
            && a.status == 201
        {
            match pay_order(&user.api, &a.body, payer).await {
                Ok(()) => local.paid += 1,
                Err(_) => *local.answers.entry("pay failed".into()).or_default() += 1,
            }
        }
        bar.inc(1);
    }
}

/// Wait until every payment made since `before` is ticketed or refunded; prints the rate of
/// full purchases.
async fn await_settled(store: &dyn Store, before: &PaymentAudit, paid: u64, start: Instant) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let a = store.payment_audit().await?;
        let settled = (a.ticketed + a.refunded).saturating_sub(before.ticketed + before.refunded);
        if settled >= paid && a.in_flight_total == 0 {
            let s = start.elapsed().as_secs_f64();
            println!(
                "full purchases: {paid} paid, all ticketed or refunded {s:.2} s after the start: {:.0} purchases/s",
                paid as f64 / s
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after {SETTLE_TIMEOUT:?}, {} captured payments are neither ticketed nor refunded: {:?}",
                a.in_flight_total,
                a.in_flight
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(args: &LoadArgs, network: &Network, store: Option<Arc<dyn Store>>) -> anyhow::Result<()> {
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).timeout(Duration::from_secs(30)).build()?;
    let client = Client::with_http(http, args.url());
    let before = match &store {
        Some(s) => Some(s.payment_audit().await?),
        None => None,
    };
    let tag = format!("{:x}", chrono::Utc::now().timestamp_millis() % 0xfffffff);
    let mut users = users::setup(&client, args.users.max(1), &tag).await?;
    // Several nodes (a cluster): each user calls one of them, in turn.
    for (i, u) in users.iter_mut().enumerate().filter(|_| args.urls.len() > 1) {
        u.api = u.api.with_base(&args.urls[i % args.urls.len()]);
    }
    let journeys = journeys(network, args.mode);
    let pay = match (args.pay, args.pay_as_provider) {
        (false, _) => None,
        (true, false) => Some(Payer::PayPage),
        (true, true) => Some(Payer::provider(&args.flags)?),
    };
    let paying = match &pay {
        None => "",
        Some(Payer::PayPage) => ", paying through mockpay's pay page",
        Some(Payer::Provider { .. }) => ", paying as the provider (signed notifies)",
    };
    println!(
        "{} users, {} journeys to choose from, {} orders, {} in flight, mode {:?}{paying}",
        users.len(),
        journeys.len(),
        args.orders,
        args.concurrency,
        args.mode
    );
    let bar = ProgressBar::new(args.orders).with_message("ordering");
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}").expect("valid template"),
    );
    let (orders, rate) = (args.orders, args.rate);
    let plan =
        Arc::new(Plan { users, journeys, tag, orders, rate, pay, next: AtomicU64::new(0), start: Instant::now() });
    let workers: Vec<_> =
        (0..args.concurrency.max(1)).map(|_| tokio::spawn(worker(plan.clone(), bar.clone()))).collect();
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await?);
    }
    bar.finish();
    stats::summary(&mut tally, plan.start.elapsed(), args.orders);
    let Some(store) = store else { return Ok(()) };
    if let Some(before) = before.filter(|_| args.pay) {
        await_settled(store.as_ref(), &before, tally.paid, plan.start).await?;
    }
    stats::audit(store.as_ref()).await
}
