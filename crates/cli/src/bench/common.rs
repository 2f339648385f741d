//! What the engine benchmarks share: limits sized for them, run ids, random holds.

use chepiao_domain::{SeatClass, TrainType};
use chepiao_engine::quality::Rng;
use chepiao_engine::*;

pub fn bench_limits() -> Limits {
    Limits { holds_live_max: 50_000_000, keys_max: 50_000_000, ..Limits::default() }
}

/// Run ids G1..Gn on one date, built once so generating requests costs little.
pub fn run_ids(n: u64) -> Vec<chepiao_domain::RunId> {
    (1..=n).map(|i| format!("G{i}-20261122").parse().expect("valid run id")).collect()
}

/// A one-passenger hold on one of `runs` (G trains with 13 segments).
pub fn random_hold(rng: &mut Rng, key: u128, runs: &[chepiao_domain::RunId]) -> Command {
    let spec = RunSpec { train_type: TrainType::G, segments: 13 };
    let from = rng.below(12) as u8;
    let to = from + 1 + rng.below(u64::from(13 - from)) as u8;
    let run = runs[rng.below(runs.len() as u64) as usize].clone();
    let leg = LegRequest { run, spec, from, to, class: SeatClass::Second, passengers: 1, prefs: vec![] };
    Command::Hold { key, legs: vec![leg], ttl_ms: 600_000 }
}
