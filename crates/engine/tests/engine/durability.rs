//! What was acknowledged survives a restart (I4); a torn or corrupt log tail is cut, never
//! replayed; snapshots bound what is replayed.

use std::fs::OpenOptions;
use std::io::Write;

use chepiao_domain::{RunId, SeatClass};
use chepiao_engine::wal::Wal;
use chepiao_engine::*;

use crate::common::*;

fn config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig { shards: 1, ..EngineConfig::new(dir) }
}

fn only_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("shard-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[tokio::test]
async fn acknowledged_holds_survive_a_restart() {
    let dir = temp_dir("restart");
    let spec = g_spec(3);
    let (clock, _) = manual_clock(1_000);
    let (engine, _) = Engine::open(config(&dir), clock.clone()).unwrap();
    let mut holds = Vec::new();
    for k in 0..10u128 {
        let out =
            engine.hold(k, vec![leg("G1-20261122", spec, 0, 3, SeatClass::First, 2)], 600_000).await.unwrap().unwrap();
        holds.push(out.legs[0].hold);
    }
    let run: RunId = "G1-20261122".parse().unwrap();
    assert_eq!(engine.confirm(holds[0], run.clone()).await.unwrap(), Reply::Confirmed);
    assert_eq!(engine.release(holds[1], run.clone()).await.unwrap(), Reply::Released);
    engine.shutdown();

    let (engine, reports) = Engine::open(config(&dir), clock).unwrap();
    assert_eq!(reports[0].commands_replayed, 12);
    assert_eq!(class_left(&remaining(&engine, "G1-20261122", spec, 0, 3).await, SeatClass::First), 52 - 18);
    let states =
        engine.query(holds.iter().map(|&hold| Query::Hold { hold, run: run.clone() }).collect()).await.unwrap();
    assert_eq!(states[0], Answer::Hold(Some(HoldState::Sold)));
    assert_eq!(states[1], Answer::Hold(Some(HoldState::Ended)));
    assert!(matches!(states[2], Answer::Hold(Some(HoldState::Held { .. }))));
    // Repeats answer by state: confirmed again, released again, nothing freed twice.
    assert_eq!(engine.confirm(holds[0], run.clone()).await.unwrap(), Reply::Confirmed);
    assert_eq!(engine.release(holds[1], run.clone()).await.unwrap(), Reply::Released);
    assert_eq!(engine.release(holds[0], run.clone()).await.unwrap(), Reply::Rejected(Reject::AlreadySold));
    assert_eq!(class_left(&remaining(&engine, "G1-20261122", spec, 0, 3).await, SeatClass::First), 52 - 18);
    // A retry after the restart gets the answer given before it.
    let again =
        engine.hold(5, vec![leg("G1-20261122", spec, 0, 3, SeatClass::First, 2)], 600_000).await.unwrap().unwrap();
    assert_eq!(again.legs[0].hold, holds[5]);
    engine.shutdown();
}

#[tokio::test]
async fn a_torn_tail_is_cut_not_replayed() {
    let dir = temp_dir("torn");
    let spec = g_spec(3);
    let (clock, _) = manual_clock(1_000);
    let (engine, _) = Engine::open(config(&dir), clock.clone()).unwrap();
    for k in 0..5u128 {
        engine.hold(k, vec![leg("G1-20261122", spec, 0, 1, SeatClass::Second, 1)], 600_000).await.unwrap().unwrap();
    }
    engine.shutdown();
    let seg = only_segment(&dir);
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // Half a record: a length that promises more than is there.
    OpenOptions::new().append(true).open(&seg).unwrap().write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();

    let (engine, reports) = Engine::open(config(&dir), clock.clone()).unwrap();
    assert_eq!(reports[0].commands_replayed, 5);
    assert_eq!(reports[0].bytes_truncated, 10);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    // The log goes on after the cut.
    engine.hold(9, vec![leg("G1-20261122", spec, 0, 1, SeatClass::Second, 1)], 600_000).await.unwrap().unwrap();
    engine.shutdown();
    let (engine, reports) = Engine::open(config(&dir), clock).unwrap();
    assert_eq!((reports[0].commands_replayed, reports[0].bytes_truncated), (6, 0));
    assert_eq!(class_left(&remaining(&engine, "G1-20261122", spec, 0, 1).await, SeatClass::Second), 540 - 6);
    engine.shutdown();
}

#[tokio::test]
async fn a_corrupt_record_ends_the_log() {
    let dir = temp_dir("corrupt");
    let spec = g_spec(3);
    let (clock, _) = manual_clock(1_000);
    let (engine, _) = Engine::open(config(&dir), clock.clone()).unwrap();
    for k in 0..4u128 {
        engine.hold(k, vec![leg("G1-20261122", spec, 0, 1, SeatClass::Second, 1)], 600_000).await.unwrap().unwrap();
    }
    engine.shutdown();
    let seg = only_segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    // Flip a byte in the payload of the third record: its checksum fails.
    let mut at = 0;
    for _ in 0..2 {
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    bytes[at + 12] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (engine, reports) = Engine::open(config(&dir), clock).unwrap();
    assert_eq!(reports[0].commands_replayed, 2, "records from the corrupt one on are not replayed");
    assert_eq!(class_left(&remaining(&engine, "G1-20261122", spec, 0, 1).await, SeatClass::Second), 538);
    engine.shutdown();
}

/// Wait until every shard's snapshotter has caught up to within `ops` commands of its log.
async fn snapshots_settle(engine: &Engine, ops: u64) {
    for _ in 0..500 {
        let stats = engine.stats().await.unwrap();
        if stats.iter().all(|s| s.durable_lsn - s.snapshot_lsn < ops) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the snapshotter did not catch up: {:?}", engine.stats().await.unwrap());
}

fn files(dir: &std::path::Path, ext: &str) -> usize {
    std::fs::read_dir(dir.join("shard-0"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == ext))
        .count()
}

/// The snapshotter follows the log across segments on its own thread; snapshots bound what a
/// restart replays, and the segments and snapshots they cover are deleted.
#[tokio::test]
async fn snapshots_bound_replay_and_replace_old_segments() {
    let dir = temp_dir("snapshot");
    let spec = g_spec(4);
    let (clock, now) = manual_clock(1_000);
    // Tiny segments: the log rolls every few batches, and the snapshotter must cross them.
    let cfg = EngineConfig { snapshot_every_ops: 50, segment_len_max: 512, tick: ms(5), ..config(&dir) };
    let (engine, _) = Engine::open(cfg.clone(), clock.clone()).unwrap();
    for k in 0..300u128 {
        now.fetch_add(10, std::sync::atomic::Ordering::SeqCst);
        let from = (k % 3) as u8;
        let l = leg("G7-20261122", spec, from, from + 1, SeatClass::Second, 1);
        engine.hold(k, vec![l], 600_000).await.unwrap().unwrap();
    }
    snapshots_settle(&engine, 50).await;
    let before = remaining(&engine, "G7-20261122", spec, 0, 4).await;
    let size = engine.stats().await.unwrap()[0].size;
    engine.shutdown();
    assert_eq!(files(&dir, "bin"), 1, "older snapshots are deleted");
    assert!(files(&dir, "log") < 20, "segments the snapshot covers are deleted: {}", files(&dir, "log"));
    let (engine, reports) = Engine::open(cfg, clock).unwrap();
    assert!(reports[0].snapshot_lsn >= 250, "{:?}", reports[0]);
    assert!(reports[0].commands_replayed < 50, "{:?}", reports[0]);
    assert_eq!(remaining(&engine, "G7-20261122", spec, 0, 4).await, before);
    assert_eq!(engine.stats().await.unwrap()[0].size, size);
    engine.shutdown();
    // The recovered state machine satisfies every invariant.
    let (sm, _, _) = Wal::recover(&dir.join("shard-0"), true, || StateMachine::new(0, Limits::default())).unwrap();
    sm.check_invariants().unwrap();
}

fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

/// An engine directory restored from an older copy would hand out hold ids SQL already
/// knows; a fence at start (from SQL's highest hold id) moves it past them.
#[tokio::test]
async fn a_fence_keeps_hold_ids_unique_after_restoring_an_old_directory() {
    let dir = temp_dir("fence");
    let backup = temp_dir("fence-backup");
    let (clock, _) = manual_clock(1_000);
    let hold = |k: u128| leg(&format!("G{}-20261122", k + 1), g_spec(3), 0, 1, SeatClass::Second, 1);
    let (engine, _) = Engine::open(config(&dir), clock.clone()).unwrap();
    for k in 0..3 {
        engine.hold(k, vec![hold(k)], 600_000).await.unwrap().unwrap();
    }
    engine.shutdown();
    copy_dir(&dir.join("shard-0"), &backup.join("shard-0"));
    let (engine, _) = Engine::open(config(&dir), clock.clone()).unwrap();
    let mut known = Vec::new();
    for k in 3..8 {
        known.push(engine.hold(k, vec![hold(k)], 600_000).await.unwrap().unwrap().legs[0].hold);
    }
    engine.shutdown();
    // The restored copy knows only the first three holds: unfenced, it reuses an id.
    let (restored, _) = Engine::open(config(&backup), clock.clone()).unwrap();
    let reused = restored.hold(100, vec![hold(100)], 600_000).await.unwrap().unwrap().legs[0].hold;
    assert!(known.contains(&reused), "the guard this test relies on: {reused} reused");
    restored.shutdown();
    let (restored, _) = Engine::open(config(&backup), clock).unwrap();
    let highest = known.iter().max().unwrap() >> 8;
    restored.fence(highest + 1).await.unwrap();
    let fresh = restored.hold(101, vec![hold(101)], 600_000).await.unwrap().unwrap().legs[0].hold;
    assert!(fresh >> 8 > highest, "{fresh} after fencing at {}", highest + 1);
    restored.shutdown();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs leave the engine when retired: their memory goes, holds on them end, and later
/// commands on them are refused; refunds of their sold seats have nothing to give back.
#[tokio::test]
async fn retired_runs_leave_the_engine() {
    let dir = temp_dir("retire");
    let (clock, _) = manual_clock(1_000);
    let (engine, _) = Engine::open(config(&dir), clock).unwrap();
    let spec = g_spec(3);
    let (old, new): (RunId, RunId) = ("G1-20261122".parse().unwrap(), "G1-20261123".parse().unwrap());
    let sold = engine.hold(1, vec![leg("G1-20261122", spec, 0, 3, SeatClass::Second, 2)], 600_000).await.unwrap();
    let sold = sold.unwrap().legs[0].hold;
    assert_eq!(engine.confirm(sold, old.clone()).await.unwrap(), Reply::Confirmed);
    let held = engine.hold(2, vec![leg("G1-20261122", spec, 0, 1, SeatClass::First, 1)], 600_000).await.unwrap();
    let held = held.unwrap().legs[0].hold;
    engine.hold(3, vec![leg("G1-20261123", spec, 0, 1, SeatClass::First, 1)], 600_000).await.unwrap().unwrap();
    let size = engine.stats().await.unwrap()[0].size;
    assert_eq!((size.runs, size.live_holds, size.sold_legs), (2, 2, 1));

    assert_eq!(engine.retire("2026-11-23".parse().unwrap(), &[]).await.unwrap(), 1);
    let size = engine.stats().await.unwrap()[0].size;
    assert_eq!((size.runs, size.live_holds, size.sold_legs), (1, 1, 0), "the old run's memory is gone");
    let again = engine.hold(4, vec![leg("G1-20261122", spec, 0, 1, SeatClass::First, 1)], 600_000).await.unwrap();
    assert_eq!(again, Err(Reject::RunRetired));
    assert_eq!(engine.confirm(held, old.clone()).await.unwrap(), Reply::Rejected(Reject::RunRetired));
    assert_eq!(engine.return_seat(sold, old.clone(), 0, 0).await.unwrap(), Reply::Rejected(Reject::RunRetired));
    let left = remaining(&engine, "G1-20261122", spec, 0, 3).await;
    assert!(left.iter().all(|(_, n)| *n == 0), "a retired run sells nothing: {left:?}");
    // A run that arrived early leaves by name.
    assert_eq!(engine.retire("2026-11-23".parse().unwrap(), &[new]).await.unwrap(), 1);
    assert_eq!(engine.stats().await.unwrap()[0].size.runs, 0);
    engine.shutdown();
}

#[tokio::test]
async fn a_corrupt_snapshot_is_an_error_not_an_empty_engine() {
    let dir = temp_dir("badsnap");
    let (clock, _) = manual_clock(1_000);
    let (engine, _) = Engine::open(config(&dir), clock.clone()).unwrap();
    engine.hold(1, vec![leg("G1-20261122", g_spec(3), 0, 1, SeatClass::Second, 1)], 600_000).await.unwrap().unwrap();
    engine.snapshot().await.unwrap();
    engine.shutdown();
    let snap = std::fs::read_dir(dir.join("shard-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "bin"))
        .unwrap();
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snap, bytes).unwrap();
    let err = Engine::open(config(&dir), clock).err().expect("refuses to start");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test]
async fn a_second_engine_cannot_open_the_same_directory() {
    let dir = temp_dir("lock");
    let (clock, _) = manual_clock(1_000);
    let (engine, _) = Engine::open(config(&dir), clock.clone()).unwrap();
    let err = Engine::open(config(&dir), clock.clone()).err().expect("the directory is locked");
    assert!(err.to_string().contains("in use"), "{err}");
    engine.close();
    let run: RunId = "G1-20261122".parse().unwrap();
    assert!(matches!(engine.release(1 << 8, run).await, Err(EngineError::Unavailable(_))));
    let (again, _) = Engine::open(config(&dir), clock).unwrap();
    again.shutdown();
}

#[tokio::test]
async fn holds_expire_on_time_with_no_traffic() {
    let dir = temp_dir("expiry");
    let spec = g_spec(3);
    let (clock, now) = manual_clock(1_000);
    let cfg = EngineConfig { tick: std::time::Duration::from_millis(5), ..config(&dir) };
    let (engine, _) = Engine::open(cfg, clock).unwrap();
    engine.hold(1, vec![leg("G1-20261122", spec, 0, 3, SeatClass::Business, 3)], 5_000).await.unwrap().unwrap();
    assert_eq!(class_left(&remaining(&engine, "G1-20261122", spec, 0, 3).await, SeatClass::Business), 15);
    now.fetch_add(5_000, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(class_left(&remaining(&engine, "G1-20261122", spec, 0, 3).await, SeatClass::Business), 18);
    engine.shutdown();
}

#[tokio::test]
async fn legs_in_different_shards_are_all_or_nothing() {
    let dir = temp_dir("saga");
    let (clock, _) = manual_clock(1_000);
    let (engine, _) = Engine::open(EngineConfig { shards: 4, ..EngineConfig::new(&dir) }, clock).unwrap();
    let spec = g_spec(3);
    // Find two runs in different shards.
    let runs: Vec<String> = (1..100).map(|n| format!("G{n}-20261122")).collect();
    let a = &runs[0];
    let b = runs.iter().find(|r| engine.shard_of(&r.parse().unwrap()) != engine.shard_of(&a.parse().unwrap())).unwrap();
    // Fill run b's business class.
    for k in 0..6u128 {
        engine.hold(k, vec![leg(b, spec, 0, 3, SeatClass::Business, 3)], 600_000).await.unwrap().unwrap();
    }
    let both = vec![leg(a, spec, 0, 3, SeatClass::Business, 2), leg(b, spec, 0, 3, SeatClass::Business, 1)];
    let r = engine.hold(50, both.clone(), 600_000).await.unwrap();
    assert_eq!(r, Err(Reject::NotEnoughSeats { leg: 1 }));
    assert_eq!(class_left(&remaining(&engine, a, spec, 0, 3).await, SeatClass::Business), 18, "leg 0 given back");
    // A retry gives the same answer and still holds nothing.
    assert_eq!(engine.hold(50, both, 600_000).await.unwrap(), Err(Reject::NotEnoughSeats { leg: 1 }));
    assert_eq!(class_left(&remaining(&engine, a, spec, 0, 3).await, SeatClass::Business), 18);
    // Both legs fit: two holds, one per shard.
    let ok = engine
        .hold(51, vec![leg(a, spec, 0, 3, SeatClass::Business, 2), leg(b, spec, 0, 3, SeatClass::First, 1)], 600_000)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(ok.legs[0].hold, ok.legs[1].hold);
    engine.shutdown();
}

/// An engine directory keeps its shard count: opening it with another count is refused, since
/// runs map to shards by hash and the holds of a shard left out would silently vanish.
#[tokio::test]
async fn the_shard_count_of_a_directory_cannot_change() {
    let dir = temp_dir("shard-count");
    let (clock, _) = manual_clock(1_000);
    let two = EngineConfig { shards: 2, ..EngineConfig::new(&dir) };
    let (engine, _) = Engine::open(two.clone(), clock.clone()).unwrap();
    engine.shutdown();
    for shards in [1, 3] {
        let other = EngineConfig { shards, ..EngineConfig::new(&dir) };
        let Err(EngineError::Unavailable(message)) = Engine::open(other, clock.clone()) else {
            panic!("opened a 2-shard directory with {shards} shards")
        };
        assert!(message.contains("holds 2 shards"), "{message}");
    }
    let (engine, _) = Engine::open(two, clock).unwrap();
    engine.shutdown();
    std::fs::remove_dir_all(&dir).ok();
}
