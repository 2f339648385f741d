//! The carrier-grade NAT: `--users` honest people behind one address, none sending a device
//! id (a client written only against API.md), each registering, logging in, adding a passenger
//! and placing one order on a train two days out. All of them must get their order: the risk
//! score may slow such buyers down, never refuse them by default, and the per-address limits
//! must hold a NAT's worth of people.
//!
//! A client told 429 waits `Retry-After` (one second) and tries again; the report counts
//! those waits, the orders placed and every refusal by code.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chepiao_api::{Client, ClientError};
use chepiao_domain::Network;

use crate::load::args::{LoadArgs, Mode};
use crate::load::orders::{Journey, journeys, one_leg};

/// Tries of one request that keeps being answered 429, at most.
const TRIES_MAX: u32 = 20;

#[derive(Default)]
struct Tally {
    placed: u64,
    waits_429: u64,
    /// Refusals (not 429) by (status, code).
    refused: BTreeMap<(u16, u32), u64>,
}

pub async fn run(args: &LoadArgs, network: &Network) -> anyhow::Result<()> {
    let client = Client::new(args.url());
    let journeys = journeys(network, Mode::Spread);
    anyhow::ensure!(!journeys.is_empty(), "no train runs two days out");
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let tally = Mutex::new(Tally::default());
    let in_flight = tokio::sync::Semaphore::new(args.concurrency.max(1));
    let started = Instant::now();
    let people = (0..args.users).map(|i| {
        let (client, journeys, tally, in_flight) = (&client, &journeys, &tally, &in_flight);
        async move {
            let _permit = in_flight.acquire().await.expect("never closed");
            let journey = &journeys[(i * 7919) % journeys.len()];
            match person(client, tag, i, journey, tally).await {
                Ok(()) => tally.lock().expect("not poisoned").placed += 1,
                Err(e) => {
                    let key = (e.status().unwrap_or(0), e.code().unwrap_or(0));
                    *tally.lock().expect("not poisoned").refused.entry(key).or_default() += 1;
                }
            }
        }
    });
    futures_util::future::join_all(people).await;
    let t = tally.into_inner().expect("not poisoned");
    let elapsed_s = started.elapsed().as_secs_f64();
    println!(
        "{} people behind one address, no device id, {} at a time, {elapsed_s:.1} s",
        args.users, args.concurrency
    );
    println!("  orders placed: {} of {}", t.placed, args.users);
    println!("  waits after 429 (Retry-After honoured): {}", t.waits_429);
    for ((status, code), n) in &t.refused {
        println!("  refused {status}/{code}: {n}");
    }
    anyhow::ensure!(
        t.placed == args.users as u64,
        "{} people could not place their order",
        args.users as u64 - t.placed
    );
    Ok(())
}

/// One person: register, log in, add a passenger, order once.
async fn person(client: &Client, tag: &str, i: usize, j: &Journey, tally: &Mutex<Tally>) -> Result<(), ClientError> {
    let (name, password) = (format!("nat{tag}u{i}"), "nat-test-password");
    patient(tally, || client.register(&name, password)).await?;
    let token = patient(tally, || client.login(&name, password)).await?.token;
    let api = client.with_token(&token);
    // A person of their own, in this run and beside earlier runs on the same server.
    let id_no = format!("N{tag}{i:06}");
    let passenger = patient(tally, || api.add_passenger("旅客", "PASSPORT", &id_no)).await?;
    let req = one_leg(j, passenger.passenger_id, format!("nat-{i}"));
    patient(tally, || api.create_order(&req, None)).await?;
    Ok(())
}

/// `call`, again after `Retry-After` while it is answered 429 (at most [`TRIES_MAX`] tries).
async fn patient<T, F: std::future::Future<Output = Result<T, ClientError>>>(
    tally: &Mutex<Tally>,
    mut call: impl FnMut() -> F,
) -> Result<T, ClientError> {
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if e.status() == Some(429) && tries < TRIES_MAX => {
                tries += 1;
                tally.lock().expect("not poisoned").waits_429 += 1;
                // The server's `Retry-After` on 429 is one second.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}
