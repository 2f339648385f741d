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
use chepiao_domain::Network;
use chepiao_server::Config;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::load::LoadArgs;

/// The pause between creating the users and the storm.
const SETTLE: Duration = Duration::from_secs(2);

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
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    v.sort_unstable();
    crate::load::percentile_ms(v, p)
}

async fn make_users(
    store: Arc<dyn chepiao_store::Store>,
    config: &Config,
    n: usize,
    tag: &str,
) -> anyhow::Result<Vec<Rusher>> {
    let jwt = chepiao_server::secrets::key(config.jwt_secret.as_ref(), &config.data_dir, "jwt")
        .map_err(anyhow::Error::msg)?;
    let pii_key =
        chepiao_server::secrets::key(config.pii_key.as_ref(), &config.data_dir, "pii").map_err(anyhow::Error::msg)?;
    let auth = Arc::new(tokio::task::spawn_blocking(move || chepiao_server::auth::Auth::new(jwt, 4 * 3600)).await?);
    let pii = Arc::new(chepiao_server::pii::Pii::new(pii_key));
    // Nobody logs in as these users: one hash of a random password serves all of them.
    let hash = auth.hash_password(uuid::Uuid::new_v4().to_string()).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let bar = ProgressBar::new(n as u64).with_message("creating users");
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec}").expect("valid template"));
    let now_s = chrono::Utc::now().timestamp() as u64;
    let made: Vec<anyhow::Result<Rusher>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (store, auth, pii, hash, bar) = (store.clone(), auth.clone(), pii.clone(), hash.clone(), bar.clone());
            let name = format!("rush{tag}u{i}");
            async move {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let id = store.create_user(&name, &hash, now_ms).await?.context("username taken")?;
                let id_no = format!("R{tag}{i:07}");
                let p = chepiao_store::NewPassenger {
                    user_id: id,
                    name_enc: pii.encrypt("抢票人"),
                    id_type: "PASSPORT".into(),
                    id_no_enc: pii.encrypt(&id_no),
                    id_no_index: pii.index(&id_no),
                    created_at_ms: now_ms,
                };
                let passenger = match store.add_passenger(&p, 15).await? {
                    chepiao_store::AddPassenger::Added(pid) => pid,
                    other => bail!("adding a passenger: {other:?}"),
                };
                bar.inc(1);
                Ok(Rusher { token: auth.issue(id, &name, now_s).0, passenger })
            }
        })
        .buffer_unordered(512)
        .collect()
        .await;
    bar.finish();
    made.into_iter().collect()
}

/// When the server admitted the holder of `token` (its expiry less the token lifetime).
fn admitted_at_ms(token: &str, ttl_ms: i64) -> Option<i64> {
    let body = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).ok()?;
    let v: Value = serde_json::from_slice(&json).ok()?;
    Some(v["exp"].as_i64()? - ttl_ms)
}

pub async fn run(
    args: &LoadArgs,
    config: &Config,
    network: &Network,
    store: Arc<dyn chepiao_store::Store>,
) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).timeout(Duration::from_secs(60)).build()?;
    let sales: Value = http.get(format!("{base}/api/v1/sales")).send().await?.json().await?;
    let sale = sales.as_array().and_then(|s| s.first()).context("the server has no sale: configure `sales`")?;
    let sale_id = sale["sale_id"].as_str().context("sale_id")?.to_string();
    let run_id = sale["run_ids"][0].as_str().context("run_ids")?.to_string();
    let run: chepiao_domain::RunId = run_id.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let train = network.train(network.train_idx(&run.train).context("the sale's train")?);
    let (from, to) = (train.stops[0].telecode.to_string(), train.stops[train.stops.len() - 1].telecode.to_string());
    // The class with the most places (second class on a G train).
    let class = chepiao_domain::SeatClass::ALL
        .into_iter()
        .filter(|c| *c != chepiao_domain::SeatClass::Standing)
        .max_by_key(|c| train.layout().capacity(*c))
        .context("a seated class")?;
    let tag = format!("{:x}", chrono::Utc::now().timestamp_millis() % 0xfffffff);
    let users = make_users(store.clone(), config, args.users, &tag).await?;
    println!(
        "rush: {} users on sale {sale_id}, each buying {run_id} {from}→{to} {} ({} places), {} requests in flight",
        users.len(),
        class.as_str(),
        train.layout().capacity(class),
        args.concurrency
    );
    let ttl_ms = config.queue_token_ttl_s as i64 * 1000;
    // Everyone joins at once (the storm), then each user waits for admission and buys.
    let authority = crate::storm::authority(&base)?;
    let requests = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            crate::storm::request(
                &authority,
                &sale_id,
                &u.token,
                &crate::load::client_ip(i),
                &format!("rush-device-{i}"),
            )
        })
        .collect();
    // Creating the users was setup: let the server finish with it (its store's commits) before
    // the storm, which is the measurement.
    tokio::time::sleep(SETTLE).await;
    let start = Instant::now();
    let (joins, join_took) = crate::storm::run(&authority, requests, args.concurrency).await?;
    let mut join_us: Vec<u32> = joins.iter().map(|j| j.latency_us).collect();
    let join_s = join_took.as_secs_f64().max(1e-3);
    println!(
        "  joins: {} in {join_s:.2} s = {:.0} joins/s; latency ms p50 {:.2}  p99 {:.2}  max {:.2}",
        joins.len(),
        joins.len() as f64 / join_s,
        pct(&mut join_us, 0.5),
        pct(&mut join_us, 0.99),
        pct(&mut join_us, 1.0)
    );
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let bar = ProgressBar::new(users.len() as u64).with_message("admitted and bought");
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec}").expect("valid template"));
    let mut tasks = Vec::with_capacity(users.len());
    for (i, (u, joined)) in users.into_iter().zip(joins).enumerate() {
        let (http, base, gate, bar) = (http.clone(), base.clone(), gate.clone(), bar.clone());
        let (sale_id, run_id, from, to, tag, pay) =
            (sale_id.clone(), run_id.clone(), from.clone(), to.clone(), tag.clone(), args.pay);
        tasks.push(tokio::spawn(async move {
            let ip = crate::load::client_ip(i);
            let device = format!("rush-device-{i}");
            let req = |method: reqwest::Method, path: String| {
                http.request(method, format!("{base}{path}"))
                    .bearer_auth(&u.token)
                    .header("x-real-ip", &ip)
                    .header("x-device-id", &device)
            };
            let mut local = Outcome::default();
            let count = |local: &mut Outcome, key: String| *local.answers.entry(key).or_default() += 1;
            let rank = joined.rank;
            let mut status = match joined.answer {
                Ok(status) => status,
                Err(reason) => {
                    count(&mut local, reason);
                    bar.inc(1);
                    return local;
                }
            };
            // Wait for admission, polling at a pace the position suggests.
            let token = loop {
                if status["admitted"] == true {
                    break status["queue_token"].as_str().unwrap_or_default().to_string();
                }
                let position = status["position"].as_u64().unwrap_or(0);
                let wait_ms = (position * 1000 / 2000).clamp(200, 10_000);
                tokio::time::sleep(Duration::from_millis(wait_ms + (i as u64 % 97))).await;
                local.polls += 1;
                let _permit = gate.acquire().await.expect("never closed");
                match req(reqwest::Method::GET, format!("/api/v1/queue/{sale_id}/status")).send().await {
                    Ok(r) if r.status().is_success() => status = r.json().await.unwrap_or(Value::Null),
                    Ok(r) => count(&mut local, format!("status {}", r.status().as_u16())),
                    Err(_) => count(&mut local, "status transport error".into()),
                }
            };
            if let Some(at) = admitted_at_ms(&token, ttl_ms) {
                local.admissions.push((rank, at));
            }
            // Buy.
            let body = json!({"idempotency_key": format!("rush-{tag}-{i}"), "legs": [
                {"run_id": run_id, "from": from, "to": to, "class": class.as_str(), "passenger_ids": [u.passenger]}]});
            let (answer, sent) = {
                let _permit = gate.acquire().await.expect("never closed");
                let sent = Instant::now();
                let r = req(reqwest::Method::POST, "/api/v1/orders".into())
                    .header("x-queue-token", &token)
                    .json(&body)
                    .send()
                    .await;
                (r, sent)
            };
            local.order_us.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            match answer {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let b: Value = r.json().await.unwrap_or(Value::Null);
                    count(&mut local, if s >= 400 { format!("order {s} {}", b["code"]) } else { format!("order {s}") });
                    if s == 201 && pay {
                        let _permit = gate.acquire().await.expect("never closed");
                        let token = u.token.clone();
                        let ok = crate::load::pay_order(&http, &base, &token, &b).await.is_ok();
                        count(&mut local, if ok { "paid".into() } else { "pay failed".into() });
                    }
                }
                Err(_) => count(&mut local, "order transport error".into()),
            }
            bar.inc(1);
            local
        }));
    }
    let mut o = Outcome::default();
    for t in tasks {
        o.merge(t.await?);
    }
    bar.finish();
    let took = start.elapsed();
    report(&mut o, took);
    crate::load::audit(store.as_ref()).await
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
