//! Three replicas of one engine over a shared log, in one process: the log here is a task that
//! numbers proposals, drops repeated message ids (as JetStream's deduplication does) and hands
//! every entry to every replica, one of them twice over (a consumer that restarted). Many
//! callers on each replica buy the same hot run at once: no seat segment is handed out twice
//! across the three, hold ids are unique across them, a hold made through one replica is
//! sold through a second and its seat returned through the third, and afterwards the three
//! states are the same (one digest at one log position).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chepiao_domain::SeatClass;
use chepiao_engine::*;
use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::mpsc;

use crate::common::*;

async fn send<T>(tx: &Sender<T>, mut item: T) {
    loop {
        match tx.try_send(item) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// The shared log: one sequence per shard, the log's own clock, deduplication by message id.
async fn log(mut proposals: mpsc::Receiver<Proposal>, replicas: Vec<Vec<ShardFeed>>) {
    let mut seq = vec![0u64; replicas[0].len()];
    let mut seen = HashSet::new();
    let mut time_ms = 1_800_000_000_000u64;
    while let Some(p) = proposals.recv().await {
        // Every proposal arrives twice (a publish retried after a lost ack): stored once.
        for _ in 0..2 {
            if !seen.insert(p.msg_id.clone()) {
                continue;
            }
            let shard = p.shard as usize;
            seq[shard] += 1;
            time_ms += 3;
            let entry = Arc::new(Entry { seq: seq[shard], time_ms, batch: Batch::decode(&p.payload).unwrap() });
            for (r, feeds) in replicas.iter().enumerate() {
                let copies = if r == 1 { 2 } else { 1 };
                for _ in 0..copies {
                    send(&feeds[shard].to_shard, Feed::Entry(entry.clone())).await;
                }
                send(&feeds[shard].to_snapshotter, entry.clone()).await;
            }
        }
    }
}

fn open_three() -> Vec<Arc<Engine>> {
    let (tx, rx) = mpsc::channel(64);
    let mut engines = Vec::new();
    let mut feeds = Vec::new();
    for node in 1..=3u64 {
        let config = EngineConfig { shards: 2, ..EngineConfig::new(temp_dir("replica")) };
        let (engine, f) =
            Engine::open_replicated(config, system_clock(), ReplicaConfig::new(node), tx.clone()).unwrap();
        engines.push(Arc::new(engine));
        feeds.push(f);
    }
    tokio::spawn(log(rx, feeds));
    engines
}

/// One hold through each replica in turn (so each has sold, whatever the storm's timing), then
/// 32 callers per replica at once on the same hot run: what each got, (replica, hold, from, to,
/// seats).
async fn buy_at_once(engines: &[Arc<Engine>]) -> Vec<(usize, HoldId, u8, u8, Vec<u16>)> {
    let spec = g_spec(4);
    let mut first = Vec::new();
    for (r, engine) in engines.iter().enumerate() {
        let key = u128::from(r as u64) << 64 | u128::from(u32::MAX) << 32;
        let l = leg("G1-20261122", spec, 0, 1, SeatClass::Business, 1);
        let h = engine.hold(key, vec![l], 600_000).await.expect("the engine answers").expect("seats are free");
        first.push((r, h.legs[0].hold, 0, 1, h.legs[0].seats.clone()));
    }
    let mut tasks = Vec::new();
    for (r, engine) in engines.iter().enumerate() {
        for t in 0..32u64 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for n in 0..12u64 {
                    let from = ((t + n) % 4) as u8;
                    let to = from + 1 + ((t * 7 + n) % (4 - u64::from(from))) as u8;
                    let key = u128::from(r as u64) << 64 | u128::from(t) << 32 | u128::from(n);
                    let l = leg("G1-20261122", spec, from, to, SeatClass::Business, 1);
                    match engine.hold(key, vec![l], 600_000).await.expect("the engine answers") {
                        Ok(h) => got.push((r, h.legs[0].hold, from, to, h.legs[0].seats.clone())),
                        Err(Reject::NotEnoughSeats { .. }) => {}
                        Err(other) => panic!("unexpected refusal {other:?}"),
                    }
                }
                got
            }));
        }
    }
    let mut all = first;
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// The replicas' (position, digest) per shard once all three stand at one position.
async fn settled(engines: &[Arc<Engine>]) -> Vec<Vec<(u64, u64)>> {
    for _ in 0..200 {
        let mut all = Vec::new();
        for e in engines {
            all.push(e.digests().await.unwrap());
        }
        let at = |d: &Vec<(u64, u64)>| d.iter().map(|x| x.0).collect::<Vec<_>>();
        if all.iter().all(|d| at(d) == at(&all[0])) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the replicas never stood at one position");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_of_one_log_never_sell_a_seat_twice_and_agree() {
    let engines = open_three();
    let all =
        tokio::time::timeout(Duration::from_secs(120), buy_at_once(&engines)).await.expect("every caller answered");
    let mut taken = HashMap::<u16, u64>::new();
    for (_, _, from, to, seats) in &all {
        let need = ((1u64 << to) - 1) & !((1u64 << from) - 1);
        for s in seats {
            let m = taken.entry(*s).or_default();
            assert_eq!(*m & need, 0, "seat {s} handed out twice across the replicas");
            *m |= need;
        }
    }
    let ids: HashSet<HoldId> = all.iter().map(|x| x.1).collect();
    assert_eq!(ids.len(), all.len(), "hold ids are unique across the replicas");
    assert!(all.iter().any(|x| x.0 == 0) && all.iter().any(|x| x.0 == 2), "every replica sold");
    // Made through replica 0, sold through replica 1, its seat returned through replica 2.
    let (_, hold, ..) = *all.iter().find(|x| x.0 == 0).unwrap();
    let run: chepiao_domain::RunId = "G1-20261122".parse().unwrap();
    assert_eq!(engines[1].confirm(hold, run.clone()).await.unwrap(), Reply::Confirmed);
    assert_eq!(engines[2].return_seat(hold, run.clone(), 0, 0).await.unwrap(), Reply::Returned);
    assert_eq!(engines[0].confirm(hold, run).await.unwrap(), Reply::Rejected(Reject::HoldEnded));
    let digests = settled(&engines).await;
    assert_eq!(digests[0], digests[1], "replicas 0 and 1 differ");
    assert_eq!(digests[0], digests[2], "replicas 0 and 2 differ");
    for e in &engines {
        e.close();
    }
}
