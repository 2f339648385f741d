//! What was acknowledged survives a restart (I4); a torn or corrupt log tail is cut, never
//! replayed; snapshots bound what is replayed.

use std::fs::OpenOptions;
use std::io::Write;

use chepiao_domain::SeatClass;
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
    assert_eq!(engine.confirm(100, holds[0]).await.unwrap(), Reply::Confirmed);
    assert_eq!(engine.release(101, holds[1]).await.unwrap(), Reply::Released);
    engine.shutdown();

    let (engine, reports) = Engine::open(config(&dir), clock).unwrap();
    assert_eq!(reports[0].commands_replayed, 12);
    assert_eq!(class_left(&remaining(&engine, "G1-20261122", spec, 0, 3).await, SeatClass::First), 52 - 18);
    let states = engine.query(holds.iter().map(|&hold| Query::Hold { hold }).collect()).await.unwrap();
    assert!(matches!(states[0], Answer::Hold(Some((HoldState::Sold, _)))));
    assert!(matches!(states[1], Answer::Hold(Some((HoldState::Released, _)))));
    assert!(matches!(states[2], Answer::Hold(Some((HoldState::Held, _)))));
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

#[tokio::test]
async fn snapshots_bound_replay_and_replace_old_segments() {
    let dir = temp_dir("snapshot");
    let spec = g_spec(4);
    let (clock, now) = manual_clock(1_000);
    let cfg = EngineConfig { snapshot_every_ops: 50, ..config(&dir) };
    let (engine, _) = Engine::open(cfg.clone(), clock.clone()).unwrap();
    for k in 0..120u128 {
        now.fetch_add(10, std::sync::atomic::Ordering::SeqCst);
        let from = (k % 3) as u8;
        engine
            .hold(k, vec![leg("G7-20261122", spec, from, from + 1, SeatClass::Second, 1)], 600_000)
            .await
            .unwrap()
            .unwrap();
    }
    let before = remaining(&engine, "G7-20261122", spec, 0, 4).await;
    engine.shutdown();
    let snapshots = std::fs::read_dir(dir.join("shard-0"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "bin"))
        .count();
    assert_eq!(snapshots, 1, "older snapshots are deleted");
    let (engine, reports) = Engine::open(cfg, clock).unwrap();
    assert!(reports[0].snapshot_lsn > 0);
    assert!(reports[0].commands_replayed < 50, "{:?}", reports[0]);
    assert_eq!(remaining(&engine, "G7-20261122", spec, 0, 4).await, before);
    engine.shutdown();
    // The recovered state machine satisfies every invariant.
    let (sm, _, _) = Wal::recover(&dir.join("shard-0"), true, || StateMachine::new(0, Limits::default())).unwrap();
    sm.check_invariants().unwrap();
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
    assert!(matches!(engine.release(1, 0).await, Err(EngineError::Unavailable(_))));
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
