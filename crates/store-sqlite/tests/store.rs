//! The shared store suite against SQLite: one test per check, each on a fresh file; and the
//! writer thread's group commit.

use std::ops::Deref;
use std::sync::Arc;

use chepiao_store::{AddPassenger, NewPassenger, Store, UserStore};
use chepiao_store_sqlite::SqliteStore;

/// A store on a file of its own, removed with it.
struct Fresh {
    store: SqliteStore,
    dir: std::path::PathBuf,
}

impl Deref for Fresh {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &self.store
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chepiao-sqlite-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn fresh() -> Option<Fresh> {
    let dir = temp_dir();
    let store = SqliteStore::open(dir.join("test.db").to_str().unwrap()).await.unwrap();
    Some(Fresh { store, dir })
}

chepiao_store::store_suite!(fresh);

/// Many writers at once share transactions; each gets its own answer, and one that fails is
/// rolled back alone while the rest of its batch commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_answers_each_writer_and_isolates_failures() {
    let dir = temp_dir();
    let path = dir.join("test.db");
    let store = Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Every tenth name is taken twice.
            let name = format!("user{}", if i % 10 == 0 { 0 } else { i });
            store.create_user(&name, "$argon2id$h", i).await.unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(created, 300 - 30 + 1, "each distinct name once");

    let user = store.user_by_name("user1").await.unwrap().unwrap().id;
    let passenger = |user_id, i: u8| NewPassenger {
        user_id,
        name_enc: vec![i],
        id_type: "PASSPORT".into(),
        id_no_enc: vec![i],
        id_no_index: vec![i; 32],
        masked: String::new(),
        created_at_ms: 0,
    };
    let mut tasks = Vec::new();
    for i in 0..12u8 {
        let store = store.clone();
        // Passenger 5 names a user that does not exist: a foreign-key failure in mid-batch.
        let owner = if i == 5 { 999_999 } else { user };
        tasks.push(tokio::spawn(async move { store.add_passenger(&passenger(owner, i), 15).await }));
    }
    let mut failed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(AddPassenger::Added(_)) => {}
            Ok(other) => panic!("{other:?}"),
            Err(_) => failed += 1,
        }
    }
    assert_eq!(failed, 1);
    assert_eq!(store.passengers(user).await.unwrap().len(), 11, "the others committed");
    // A job that panics fails alone; the writer goes on.
    let panicked = store.write(|_| -> rusqlite::Result<()> { panic!("a bug in a write job") }).await;
    assert!(matches!(panicked, Err(chepiao_store::StoreError::Panicked(_))), "{panicked:?}");
    assert!(store.create_user("after-the-panic", "$argon2id$h", 1).await.unwrap().is_some());
    // And it is all on disk: a fresh store on the same file sees it.
    drop(store);
    let again = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(again.passengers(user).await.unwrap().len(), 11);
    assert!(again.user_by_name("user299").await.unwrap().is_some());
    std::fs::remove_dir_all(&dir).ok();
}

/// The checkpointer copies committed pages into the database file while the store runs, long
/// before the writer's own bound (40,000 WAL pages) would; and the WAL is started over once it
/// has been copied, so its file stays short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_copies_the_wal_beside_the_writer() {
    let dir = temp_dir();
    let path = dir.join("test.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    let db_before = size("test.db");
    // 16 MB of rows in 160 commits of 100 KB, 20 ms apart.
    for round in 0..160 {
        store
            .write(move |c| {
                for i in 0..100 {
                    c.execute(
                        "INSERT INTO users (username, password_hash, created_at_ms) VALUES (?1, ?2, 0)",
                        rusqlite::params![format!("u{round}-{i}"), "h".repeat(1_000)],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size("test.db") < db_before + 16_000_000 {
        assert!(std::time::Instant::now() < deadline, "the database file did not grow: nothing was checkpointed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Without restarts the WAL would hold all 16 MB.
    let wal = size("test.db-wal");
    assert!(wal < 8_000_000, "the WAL grew to {wal} bytes: it was never started over");
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}
