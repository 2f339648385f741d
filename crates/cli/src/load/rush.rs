//! `chepiao load --scenario rush`: the Spring Festival opening. `--users` accounts (100,000 by
//! default) join one sale's waiting room, wait to be admitted, and buy one ticket each with
//! their queue token.
//!
//! Registering 100,000 accounts over HTTP would spend most of the run hashing passwords
//! (argon2 is slow on purpose), so the scenario creates the accounts and one passenger each
//! directly in the server's store and signs their login tokens with the server's own key (it
//! opens the store and the key files with the same flags as `serve`, on the same machine).
//! Everything after that goes over HTTP, as a client would: the join storm (everyone at once,
//! each with a device id and a client address of its own, `X-Real-IP`, which the server trusts
//! from loopback; see `storm`), polls of the queue status paced by the position it reports, and
//! the order with `X-Queue-Token`.
//!
//! The summary reports the joins (throughput, latency), admission fairness (each user's
//! admission rank against its join rank: how far anyone overtook or was overtaken), the orders
//! (tickets sold, refusals by reason, latency), and ends with the invariant audit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use chepiao_api::orders::{LegBody, OrderRequest};
use chepiao_api::queue::QueueStatus;
use chepiao_api::{Client, ClientError, headers};
use chepiao_domain::{Network, SeatClass};
use chepiao_server::Config;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use crate::load::args::LoadArgs;
use crate::load::stats::{self, elapsed_us, pct};
use crate::load::storm::{self, Joined};
use crate::load::users::client_ip;

/// The pause between creating the users and the storm.
const SETTLE: Duration = Duration::from_secs(2);
/// Users created in the store at once.
const CREATE_IN_FLIGHT: usize = 512;

struct Rusher {
    token: String,
    passenger: i64,
}

#[derive(Default)]
struct Outcome {
    order_us: Vec<u32>,
    /// (join rank, admitted at ms)
    admissions: Vec<(u64, i64)>,
    answers: BTreeMap<String, u64>,
    polls: u64,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.order_us.extend(other.order_us);
        self.admissions.extend(other.admissions);
        self.polls += other.polls;
        for (k, v) in other.answers {
            *self.answers.entry(k).or_default() += v;
        }
    }

    fn count(&mut self, key: String) {
        *self.answers.entry(key).or_default() += 1;
    }
}

/// What every rusher buys: the sale's first run, end to end, in its largest seated class.
struct Target {
    sale_id: String,
    run_id: String,
    from: String,
    to: String,
    class: SeatClass,
    capacity: u32,
}

async fn target(client: &Client, network: &Network) -> anyhow::Result<Target> {
    let sales = client.sales().await?;
    let sale = sales.first().context("the server has no sale: configure `sales`")?;
    let run_id = sale.run_ids.first().context("run_ids")?.clone();
    let run: chepiao_domain::RunId = run_id.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let train = network.train(network.train_idx(&run.train).context("the sale's train")?);
    let (from, to) = (train.stops[0].telecode.to_string(), train.stops[train.stops.len() - 1].telecode.to_string());
    // The class with the most places (second class on a G train).
    let class = SeatClass::ALL
        .into_iter()
        .filter(|c| *c != SeatClass::Standing)
        .max_by_key(|c| train.layout().capacity(*c))
        .context("a seated class")?;
    Ok(Target { sale_id: sale.sale_id.clone(), run_id, from, to, class, capacity: train.layout().capacity(class) })
}

/// One user (and one passenger) in the store, with a token signed by the server's own key.
struct Maker {
    store: Arc<dyn chepiao_store::Store>,
    auth: chepiao_server::security::auth::Auth,
    pii: chepiao_server::security::pii::Pii,
    hash: String,
    tag: String,
}

impl Maker {
    async fn make(&self, i: usize, now_s: u64) -> anyhow::Result<Rusher> {
        use chepiao_server::security::pii::{mask_id_no, mask_name};
        let name = format!("rush{}u{i}", self.tag);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let id = self.store.create_user(&name, &self.hash, now_ms).await?.context("username taken")?;
        let id_no = format!("R{}{i:07}", self.tag);
        let p = chepiao_store::NewPassenger {
            user_id: id,
            name_enc: self.pii.encrypt("抢票人"),
            id_type: "PASSPORT".into(),
            id_no_enc: self.pii.encrypt(&id_no),
            id_no_index: self.pii.index(&id_no),
            masked: format!("{} {}", mask_name("抢票人"), mask_id_no(&id_no)),
            created_at_ms: now_ms,
        };
        let passenger = match self.store.add_passenger(&p, 15).await? {
            chepiao_store::AddPassenger::Added(pid) => pid,
            other => bail!("adding a passenger: {other:?}"),
        };
        Ok(Rusher { token: self.auth.issue(id, &name, 0, now_s).0, passenger })
    }
}

async fn make_users(
    store: Arc<dyn chepiao_store::Store>,
    config: &Config,
    n: usize,
    tag: &str,
) -> anyhow::Result<Vec<Rusher>> {
    use chepiao_server::security::{auth::Auth, pii::Pii, secrets::key};
    let jwt = key(config.jwt_secret.as_ref(), &config.data_dir, "jwt").map_err(anyhow::Error::msg)?;
    let pii_key = key(config.pii_key.as_ref(), &config.data_dir, "pii").map_err(anyhow::Error::msg)?;
    let auth_store = store.clone();
    let auth = tokio::task::spawn_blocking(move || Auth::new(jwt, 4 * 3600, auth_store)).await?;
    // Nobody logs in as these users: one hash of a random password serves all of them.
    let hash = auth.hash_password(uuid::Uuid::new_v4().to_string()).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let maker = Arc::new(Maker { store, auth, pii: Pii::new(pii_key), hash, tag: tag.to_string() });
    let bar = ProgressBar::new(n as u64).with_message("creating users");
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec}").expect("valid template"));
    let now_s = chrono::Utc::now().timestamp() as u64;
    let made: Vec<anyhow::Result<Rusher>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (maker, bar) = (maker.clone(), bar.clone());
            async move {
                let r = maker.make(i, now_s).await;
                bar.inc(1);
                r
            }
        })
        .buffer_unordered(CREATE_IN_FLIGHT)
        .collect()
        .await;
    bar.finish();
    made.into_iter().collect()
}

/// When the server admitted the holder of `token` (its expiry less the token lifetime).
fn admitted_at_ms(token: &str, ttl_ms: i64) -> Option<i64> {
    let body = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    Some(v["exp"].as_i64()? - ttl_ms)
}

/// Everyone joins at once: the storm, over lean connections (see `storm`).
async fn join_storm(base: &str, t: &Target, users: &[Rusher], connections: usize) -> anyhow::Result<Vec<Joined>> {
    let authority = storm::authority(base)?;
    let requests = users
        .iter()
        .enumerate()
        .map(|(i, u)| storm::request(&authority, &t.sale_id, &u.token, &client_ip(i), &format!("rush-device-{i}")))
        .collect();
    // Creating the users was setup: let the server finish with it (its store's commits) before
    // the storm, which is the measurement.
    tokio::time::sleep(SETTLE).await;
    let (joins, took) = storm::run(&authority, requests, connections).await?;
    let mut join_us: Vec<u32> = joins.iter().map(|j| j.latency_us).collect();
    let secs = took.as_secs_f64().max(1e-3);
    println!(
        "  joins: {} in {secs:.2} s = {:.0} joins/s; latency ms p50 {:.2}  p99 {:.2}  max {:.2}",
        joins.len(),
        joins.len() as f64 / secs,
        pct(&mut join_us, 0.5),
        pct(&mut join_us, 0.99),
        pct(&mut join_us, 1.0)
    );
    Ok(joins)
}

/// What one rusher does after its join: wait for admission, then buy.
struct Rush {
    target: Target,
    tag: String,
    pay: bool,
    ttl_ms: i64,
    gate: Semaphore,
    bar: ProgressBar,
}

impl Rush {
    /// Poll at a pace the position suggests until admitted; the queue token.
    async fn admission(&self, api: &Client, i: usize, mut status: QueueStatus, o: &mut Outcome) -> String {
        loop {
            if status.admitted == Some(true) {
                return status.queue_token.unwrap_or_default();
            }
            let wait_ms = (status.position.unwrap_or(0) * 1000 / 2000).clamp(200, 10_000);
            tokio::time::sleep(Duration::from_millis(wait_ms + (i as u64 % 97))).await;
            o.polls += 1;
            let _permit = self.gate.acquire().await.expect("never closed");
            match api.queue_status(&self.target.sale_id).await {
                Ok(s) => status = s,
                Err(ClientError::Transport(_)) => o.count("status transport error".into()),
                Err(e) => o.count(format!("status {}", e.status().unwrap_or(0))),
            }
        }
    }

    async fn buy(&self, api: &Client, i: usize, passenger: i64, token: &str, o: &mut Outcome) {
        let t = &self.target;
        let leg = LegBody {
            run_id: t.run_id.clone(),
            from: t.from.clone(),
            to: t.to.clone(),
            class: t.class,
            passenger_ids: vec![passenger],
            seat_prefs: None,
        };
        let req = OrderRequest { idempotency_key: format!("rush-{}-{i}", self.tag), legs: vec![leg] };
        let (answer, took) = {
            let _permit = self.gate.acquire().await.expect("never closed");
            let sent = Instant::now();
            (api.create_order(&req, Some(token)).await, elapsed_us(sent))
        };
        o.order_us.push(took);
        match answer {
            Ok(a) => {
                o.count(format!("order {}", a.status));
                if a.status == 201 && self.pay {
                    let _permit = self.gate.acquire().await.expect("never closed");
                    let ok = crate::load::orders::pay_order(api, &a.body, &crate::load::orders::Payer::PayPage)
                        .await
                        .is_ok();
                    o.count(if ok { "paid".into() } else { "pay failed".into() });
                }
            }
            Err(ClientError::Api { status, body }) => o.count(format!("order {status} {}", body.code)),
            Err(_) => o.count("order transport error".into()),
        }
    }

    async fn after_join(self: Arc<Self>, client: Client, i: usize, u: Rusher, joined: Joined) -> Outcome {
        let mut o = Outcome::default();
        let api = client
            .with_token(&u.token)
            .with_header(headers::REAL_IP, &client_ip(i))
            .with_header(headers::DEVICE_ID, &format!("rush-device-{i}"));
        match joined.answer {
            Ok(status) => {
                let token = self.admission(&api, i, status, &mut o).await;
                if let Some(at) = admitted_at_ms(&token, self.ttl_ms) {
                    o.admissions.push((joined.rank, at));
                }
                self.buy(&api, i, u.passenger, &token, &mut o).await;
            }
            Err(reason) => o.count(reason),
        }
        self.bar.inc(1);
        o
    }
}

pub async fn run(
    args: &LoadArgs,
    config: &Config,
    network: &Network,
    store: Arc<dyn chepiao_store::Store>,
) -> anyhow::Result<()> {
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).timeout(Duration::from_secs(60)).build()?;
    let client = Client::with_http(http, args.url());
    let target = target(&client, network).await?;
    let tag = format!("{:x}", chrono::Utc::now().timestamp_millis() % 0xfffffff);
    let users = make_users(store.clone(), config, args.users, &tag).await?;
    println!(
        "rush: {} users on sale {}, each buying {} {}→{} {} ({} places), {} requests in flight",
        users.len(),
        target.sale_id,
        target.run_id,
        target.from,
        target.to,
        target.class.as_str(),
        target.capacity,
        args.concurrency
    );
    let start = Instant::now();
    let joins = join_storm(client.base(), &target, &users, args.concurrency).await?;
    let bar = ProgressBar::new(users.len() as u64).with_message("admitted and bought");
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec}").expect("valid template"));
    let ttl_ms = config.queue_token_ttl_s as i64 * 1000;
    let gate = Semaphore::new(args.concurrency.max(1));
    let rush = Arc::new(Rush { target, tag, pay: args.pay, ttl_ms, gate, bar: bar.clone() });
    let tasks: Vec<_> = users
        .into_iter()
        .zip(joins)
        .enumerate()
        .map(|(i, (u, joined))| tokio::spawn(rush.clone().after_join(client.clone(), i, u, joined)))
        .collect();
    let mut o = Outcome::default();
    for t in tasks {
        o.merge(t.await?);
    }
    bar.finish();
    report(&mut o, start.elapsed());
    stats::audit(store.as_ref()).await
}

fn report(o: &mut Outcome, took: Duration) {
    let secs = took.as_secs_f64();
    println!("rush over in {secs:.1} s");
    // Fairness: rank users by join (as the client saw its join answered) and by admission
    // time; displacement is how many places a user's admission rank differs from its join rank.
    o.admissions.sort_by_key(|(rank, _)| *rank);
    let mut by_admission: Vec<(i64, usize)> = o.admissions.iter().enumerate().map(|(j, (_, at))| (*at, j)).collect();
    by_admission.sort();
    let mut displacement: Vec<u32> = vec![0; by_admission.len()];
    // Within one admission tick users are sorted by join rank, so a batch adds no displacement.
    for (k, (_, j)) in by_admission.iter().enumerate() {
        displacement[*j] = (k as i64 - *j as i64).unsigned_abs() as u32;
    }
    let admitted = displacement.len();
    let mut d_us: Vec<u32> = displacement.iter().map(|d| d * 1000).collect();
    println!(
        "  admitted: {admitted}; admission rank vs join rank, places: p50 {:.0}  p99 {:.0}  max {:.0}  ({} status polls)",
        pct(&mut d_us, 0.5),
        pct(&mut d_us, 0.99),
        pct(&mut d_us, 1.0),
        o.polls
    );
    let sold = o.answers.get("order 201").copied().unwrap_or(0);
    println!(
        "  orders: {} answered, {sold} tickets held ({:.0}/s over the run); latency ms p50 {:.2}  p99 {:.2}  max {:.2}",
        o.order_us.len(),
        sold as f64 / secs,
        pct(&mut o.order_us, 0.5),
        pct(&mut o.order_us, 0.99),
        pct(&mut o.order_us, 1.0)
    );
    println!("  answers by reason:");
    for (k, v) in &o.answers {
        println!("    {k:<32} {v}");
    }
}
