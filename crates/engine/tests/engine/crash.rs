//! Crash recovery: the engine runs in a child process under load and is killed with SIGKILL at
//! a random moment, over and over on the same directory. After each kill the parent recovers
//! the state and checks that every operation the child saw acknowledged is there (I4) and that
//! no seat segment is held twice (I1).
//!
//! The child is this test binary run again with `CHEPIAO_CRASH_CHILD_DIR` set. Cycles:
//! `CHEPIAO_CRASH_CYCLES` (default 20).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command as Process, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chepiao_domain::SeatClass;
use chepiao_engine::wal::Wal;
use chepiao_engine::*;

use crate::common::*;

const CHILD_DIR: &str = "CHEPIAO_CRASH_CHILD_DIR";
const CHILD_CYCLE: &str = "CHEPIAO_CRASH_CHILD_CYCLE";
const SHARDS: u8 = 2;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn engine_config(dir: &str) -> EngineConfig {
    // Small snapshot interval: kills land during snapshots and segment rotation too.
    EngineConfig { shards: SHARDS, snapshot_every_ops: 3_000, ..EngineConfig::new(dir) }
}

/// The child: load the engine until killed, printing `ACK ...` after each acknowledged change.
#[test]
fn child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let cycle: u64 = std::env::var(CHILD_CYCLE).unwrap().parse().unwrap();
    // Never outlive a parent that failed to kill us.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(120));
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let (engine, _) = Engine::open(engine_config(&dir), system_clock()).unwrap();
        let engine = std::sync::Arc::new(engine);
        let out = std::sync::Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for task in 0..32u64 {
            let (engine, out) = (engine.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = cycle * 7919 + task * 104_729 + 1;
                // If the parent is gone (broken pipe), stop at once.
                let ack = |line: String| {
                    let mut o = out.lock().unwrap();
                    if writeln!(o, "ACK {line} .").and_then(|_| o.flush()).is_err() {
                        std::process::exit(0);
                    }
                };
                let mut held: Vec<(HoldId, String)> = Vec::new();
                let mut sold: Vec<(HoldId, String)> = Vec::new();
                for n in 0u64.. {
                    let key = u128::from(cycle) << 64 | u128::from(task) << 40 | u128::from(n);
                    match xorshift(&mut rng) % 10 {
                        0..=5 => {
                            // Fresh runs each cycle: unpaid holds live an hour and would
                            // otherwise sell the same runs out after a few dozen cycles.
                            let run = format!("G{}-20261122", cycle * 10 + 1 + xorshift(&mut rng) % 6);
                            let from = (xorshift(&mut rng) % 4) as u8;
                            let to = from + 1 + (xorshift(&mut rng) % (4 - from as u64)) as u8;
                            let class = [SeatClass::Business, SeatClass::First, SeatClass::Second]
                                [(xorshift(&mut rng) % 3) as usize];
                            let pax = 1 + (xorshift(&mut rng) % 3) as u8;
                            let l = leg(&run, g_spec(4), from, to, class, pax);
                            if let Ok(Ok(h)) = engine.hold(key, vec![l], 3_600_000).await {
                                ack(format!("H {} {run} {pax}", h.legs[0].hold));
                                held.push((h.legs[0].hold, run));
                            }
                        }
                        6 | 7 if !held.is_empty() => {
                            let (h, run) = held.swap_remove((xorshift(&mut rng) % held.len() as u64) as usize);
                            if engine.confirm(h, run.parse().unwrap()).await == Ok(Reply::Confirmed) {
                                ack(format!("C {h} {run}"));
                                sold.push((h, run));
                            }
                        }
                        8 if !held.is_empty() => {
                            let (h, run) = held.swap_remove((xorshift(&mut rng) % held.len() as u64) as usize);
                            if engine.release(h, run.parse().unwrap()).await == Ok(Reply::Released) {
                                ack(format!("R {h} {run}"));
                            }
                        }
                        9 if !sold.is_empty() => {
                            let (h, run) = sold.swap_remove((xorshift(&mut rng) % sold.len() as u64) as usize);
                            if engine.return_seat(h, run.parse().unwrap(), 0, 0).await == Ok(Reply::Returned) {
                                ack(format!("T {h} {run}"));
                            }
                        }
                        _ => {}
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Kills the child when dropped, also when the parent test panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Held,
    Sold,
    Released,
    Returned,
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    let cycles: u64 = std::env::var("CHEPIAO_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = temp_dir("crash");
    let mut expect: HashMap<HoldId, (Expect, String)> = HashMap::new();
    let mut passengers: HashMap<HoldId, u8> = HashMap::new();
    let mut rng = 0x9e3779b97f4a7c15u64;
    for cycle in 0..cycles {
        let mut child = KillOnDrop(
            Process::new(std::env::current_exe().unwrap())
                .args(["crash::child_process", "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR, &dir)
                .env(CHILD_CYCLE, cycle.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill at a random moment once the child is doing work.
        let run_for = Duration::from_millis(150 + xorshift(&mut rng) % 600);
        let started = Instant::now();
        let mut lines = Vec::new();
        while started.elapsed() < run_for || lines.len() < 10 {
            assert!(started.elapsed() < Duration::from_secs(60), "child made no progress");
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(10)) {
                lines.push(l);
            }
        }
        drop(child);
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        // A line the kill cut short lacks its final " .": it was not acknowledged to us. (The
        // first line follows the test harness's "test ... " without a line break.)
        let acks = lines.iter().filter_map(|l| l[l.find("ACK ")? + 4..].strip_suffix(" ."));
        for line in acks {
            let mut parts = line.split(' ');
            let (kind, hold) = (parts.next().unwrap(), parts.next().unwrap().parse::<HoldId>().unwrap());
            let run = parts.next().unwrap().to_string();
            if let Some(pax) = parts.next() {
                passengers.insert(hold, pax.parse().unwrap());
            }
            let next = match kind {
                "H" => Expect::Held,
                "C" => Expect::Sold,
                "R" => Expect::Released,
                "T" => Expect::Returned,
                other => panic!("unknown ack {other}"),
            };
            expect.insert(hold, (next, run));
        }
        check_recovered(&dir, &expect, &passengers, cycle);
    }
    assert!(expect.len() as u64 >= cycles * 5, "too little work acknowledged: {}", expect.len());
}

fn check_recovered(
    dir: &std::path::Path,
    expect: &HashMap<HoldId, (Expect, String)>,
    passengers: &HashMap<HoldId, u8>,
    cycle: u64,
) {
    let mut machines = Vec::new();
    for i in 0..SHARDS {
        let (sm, _, _) =
            Wal::recover(&dir.join(format!("shard-{i}")), true, || StateMachine::new(i, Limits::default()))
                .unwrap_or_else(|e| panic!("cycle {cycle}: recovery failed: {e}"));
        sm.check_invariants().unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        machines.push(sm);
    }
    for (&hold, (want, run)) in expect {
        let sm = &machines[(hold & 0xff) as usize];
        let Answer::Hold(Some(state)) = sm.query(&Query::Hold { hold, run: run.parse().unwrap() }) else {
            panic!("cycle {cycle}: acknowledged hold {hold} lost");
        };
        // Acknowledged is a lower bound: a later confirm, release or return may have become
        // durable without its acknowledgement reaching us before the kill. A return gives back
        // passenger 0's seat: a hold of one passenger then has nothing sold left (it ended),
        // a bigger one stays sold.
        let alone = passengers[&hold] == 1;
        let ok = match want {
            Expect::Held => true,
            Expect::Sold => state == HoldState::Sold || (alone && state == HoldState::Ended),
            Expect::Returned if alone => state == HoldState::Ended,
            Expect::Returned => state == HoldState::Sold,
            Expect::Released => state == HoldState::Ended,
        };
        assert!(ok, "cycle {cycle}: hold {hold} acknowledged as {want:?}, recovered as {state:?}");
    }
}
