//! Many callers on one hot run at once: every caller gets an answer, no seat segment is sold
//! twice, and the counts agree with what was handed out.

use std::sync::Arc;
use std::time::Duration;

use chepiao_domain::SeatClass;
use chepiao_engine::*;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_hot_run_under_many_callers_never_oversells() {
    let dir = temp_dir("hot");
    let (engine, _) = Engine::open(EngineConfig::new(&dir), system_clock()).unwrap();
    let engine = Arc::new(engine);
    let spec = g_spec(4);
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut rng = t * 2_654_435_761 + 7;
            for n in 0..40u64 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let from = (rng % 4) as u8;
                let to = from + 1 + ((rng >> 8) % (4 - from as u64)) as u8;
                let pax = 1 + ((rng >> 16) % 2) as u8;
                let key = u128::from(t) << 32 | u128::from(n);
                let l = leg("G1-20261122", spec, from, to, SeatClass::Business, pax);
                // Every call answers: a hold or a refusal, never a hang or an engine error.
                match engine.hold(key, vec![l], 600_000).await.expect("engine answers") {
                    Ok(h) => got.push((from, to, h.legs[0].seats.clone())),
                    Err(Reject::NotEnoughSeats { .. }) => {}
                    Err(other) => panic!("unexpected refusal {other:?}"),
                }
            }
            got
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    })
    .await
    .expect("every caller answered");
    // No seat segment handed out twice.
    let mut taken = std::collections::HashMap::<u16, u64>::new();
    for (from, to, seats) in &all {
        let need = ((1u64 << to) - 1) & !((1u64 << from) - 1);
        for s in seats {
            let m = taken.entry(*s).or_default();
            assert_eq!(*m & need, 0, "seat {s} sold twice");
            *m |= need;
        }
    }
    // The engine's counts agree with what it handed out.
    for seg in 0..4u8 {
        let used = taken.values().filter(|m| **m & (1 << seg) != 0).count() as u32;
        let left = class_left(&remaining(&engine, "G1-20261122", spec, seg, seg + 1).await, SeatClass::Business);
        assert_eq!(left, 18 - used, "segment {seg}");
    }
    assert!(all.len() > 18, "contention produced {} holds", all.len());
}
