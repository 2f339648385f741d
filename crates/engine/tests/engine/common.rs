//! Helpers shared by the engine tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chepiao_domain::{SeatClass, TrainType};
use chepiao_engine::*;

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chepiao-engine-{tag}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A clock the test moves by hand.
pub fn manual_clock(start_ms: u64) -> (Clock, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(start_ms));
    let n = now.clone();
    (Arc::new(move || n.load(Ordering::SeqCst)), now)
}

pub fn g_spec(segments: u8) -> RunSpec {
    RunSpec { train_type: TrainType::G, segments }
}

pub fn leg(run: &str, spec: RunSpec, from: u8, to: u8, class: SeatClass, passengers: u8) -> LegRequest {
    LegRequest { run: run.parse().unwrap(), spec, from, to, class, passengers, prefs: vec![] }
}

pub async fn remaining(engine: &Engine, run: &str, spec: RunSpec, from: u8, to: u8) -> Vec<(SeatClass, u32)> {
    let q = Query::Remaining { run: run.parse().unwrap(), spec, from, to };
    match engine.query(vec![q]).await.unwrap().pop().unwrap() {
        Answer::Remaining(r) => r,
        other => panic!("{other:?}"),
    }
}

pub fn class_left(r: &[(SeatClass, u32)], class: SeatClass) -> u32 {
    r.iter().find(|(c, _)| *c == class).map_or(0, |(_, n)| *n)
}
