//! `chepiao bench stats`: the sales statistics query on a day of orders.
//!
//! Fills a fresh store (SQLite in a temporary folder, or an empty PostgreSQL database) through the
//! Store's own batch calls, as the server writes them: `--orders` orders placed over one day on
//! the real network's trains and classes (a line each, as the flow writes it), 70% paid through
//! a notify (a payment and an audit entry each), 10% cancelled, 20% expired. Then it times the
//! operator's query for that day (all trains), for one train, and for one train and class.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chepiao_domain::{Network, SeatClass, ServiceDate};
use chepiao_store::*;

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Orders to place before querying.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// A PostgreSQL URL of an empty database: measure there instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// Times each query is run (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

/// Orders per batch call (the server's batchers use the same bound).
const BATCH: u64 = CREATE_BATCH_MAX as u64;
/// Concurrent writers filling the store.
const CALLERS: u64 = 8;
const USERS: u64 = 20_000;

pub fn stats(network: &Network, args: StatsArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let (store, what) = open(&args).await?;
        let day: ServiceDate = "2027-01-20".parse().expect("a date");
        let started = Instant::now();
        fill(store.clone(), network, day, args.orders).await?;
        println!(
            "{what}: {} orders placed, paid, cancelled or expired in {:.1} s",
            args.orders,
            started.elapsed().as_secs_f64()
        );
        let all = SalesQuery { from_day: day, to_day: day, train: None, class: None };
        let one = SalesQuery { train: Some("G1".into()), ..all.clone() };
        let narrow = SalesQuery { class: Some("SECOND".into()), ..one.clone() };
        for (name, q) in [("the day, every train", &all), ("one train (G1)", &one), ("G1, second class", &narrow)] {
            let (ms, facts) = time_query(store.as_ref(), q, args.repeat).await?;
            let placed: u64 = facts.origins.iter().map(|o| o.counts.placed).sum();
            let paid: u64 = facts.origins.iter().map(|o| o.counts.paid).sum();
            println!(
                "{what}: {name}: median {ms:.1} ms over {} runs ({} (day, train, class) rows, {placed} orders, {paid} paid)",
                args.repeat,
                facts.lines.len(),
            );
        }
        Ok(())
    })
}

async fn open(args: &StatsArgs) -> anyhow::Result<(Arc<dyn Store>, String)> {
    if let Some(url) = &args.postgres {
        let store = chepiao_store_postgres::PgStore::connect(url).await?;
        return Ok((Arc::new(store), "PostgreSQL".to_string()));
    }
    let dir = std::env::temp_dir().join(format!("chepiao-bench-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.db");
    let store = chepiao_store_sqlite::SqliteStore::open(path.to_str().expect("utf-8 path")).await?;
    Ok((Arc::new(store), format!("SQLite ({})", path.display())))
}

async fn time_query(store: &dyn Store, q: &SalesQuery, repeat: usize) -> anyhow::Result<(f64, SalesFacts)> {
    let mut times = Vec::with_capacity(repeat);
    let mut facts = SalesFacts::default();
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        facts = store.sales_facts(q).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], facts))
}

async fn fill(store: Arc<dyn Store>, network: &Network, day: ServiceDate, orders: u64) -> anyhow::Result<()> {
    let mut users = Vec::with_capacity(USERS as usize);
    for i in 0..USERS {
        users.push(store.create_user(&format!("u{i}"), "$argon2id$bench", 0).await?.expect("a fresh user"));
    }
    let trains: Arc<Vec<(String, Vec<SeatClass>)>> = Arc::new(
        network
            .trains()
            .iter()
            .map(|t| (t.code.to_string(), t.layout().classes().into_iter().map(|(c, _)| c).collect()))
            .collect(),
    );
    let (users, next) = (Arc::new(users), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (store, trains, users, next) = (store.clone(), trains.clone(), users.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(BATCH, Ordering::Relaxed);
                if first >= orders {
                    return Ok::<_, anyhow::Error>(());
                }
                let batch: Vec<u64> = (first..(first + BATCH).min(orders)).collect();
                one_batch(store.as_ref(), &trains, &users, day, &batch).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Order `i` of the day: placed at an even spread over the day, on train `i % trains`.
fn new_order(i: u64, trains: &[(String, Vec<SeatClass>)], users: &[i64], day: ServiceDate) -> NewOrder {
    let (train, classes) = &trains[(i as usize * 7919) % trains.len()];
    let class = classes[i as usize % classes.len()];
    let created_at_ms = day.at_minutes(0).timestamp_millis() + (i % 86_400_000) as i64;
    let amount_fen = 10_000 + (i % 50_000) as i64;
    let line = OrderLine { leg: 0, day, train_code: train.clone(), class: class.as_str().into(), seats: 1, amount_fen };
    NewOrder {
        order_no: format!("B{i:015}"),
        user_id: users[i as usize % users.len()],
        idem_key: format!("k{i}"),
        request_hash: vec![0; 32],
        amount_fen,
        pay_before_ms: created_at_ms + 900_000,
        created_at_ms,
        legs_json: "[]".into(),
        holds: Vec::new(),
        kind: OrderKind::Order,
        source: ["web", "app", "api", "console"][i as usize % 4].into(),
        trips: Vec::new(),
        lines: vec![line],
    }
}

/// Place a batch of orders; pay 70% through a notify; cancel 10% and expire 20%.
async fn one_batch(
    store: &dyn Store,
    trains: &[(String, Vec<SeatClass>)],
    users: &[i64],
    day: ServiceDate,
    batch: &[u64],
) -> anyhow::Result<()> {
    let new: Vec<NewOrder> = batch.iter().map(|&i| new_order(i, trains, users, day)).collect();
    let created = store.create_orders(&new).await?;
    let paid: Vec<&NewOrder> = new.iter().filter(|o| o.order_no.as_bytes()[15] < b'7').collect();
    let payments: Vec<NewPayment> = paid
        .iter()
        .map(|o| NewPayment {
            payment_no: format!("P{}", &o.order_no[1..]),
            order_no: o.order_no.clone(),
            channel: ["mockpay", "alipay"][o.user_id as usize % 2].into(),
            amount_fen: o.amount_fen,
            created_at_ms: o.created_at_ms,
        })
        .collect();
    store.create_payments(&payments).await?;
    let notifies: Vec<Notify> = payments
        .iter()
        .map(|p| Notify {
            channel: p.channel.clone(),
            payment_no: p.payment_no.clone(),
            amount_fen: p.amount_fen,
            success: true,
            txn_id: format!("T{}", p.payment_no),
            nonce: format!("n{}", p.payment_no),
            raw: String::new(),
            received_at_ms: p.created_at_ms + 60_000,
        })
        .collect();
    store.apply_notifies(&notifies).await?;
    for c in created {
        let CreateOrder::Created(o) = c else { continue };
        let to = match o.order_no.as_bytes()[15] {
            b'7' => OrderStatus::Cancelled,
            b'8' | b'9' => OrderStatus::Expired,
            _ => continue,
        };
        store.transition_order(&Transition::of(&o, to, o.created_at_ms + 900_000)).await?;
    }
    Ok(())
}
