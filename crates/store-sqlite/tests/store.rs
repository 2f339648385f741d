//! The shared store suite against a fresh SQLite file.

use chepiao_store_sqlite::SqliteStore;

#[tokio::test]
async fn sqlite_passes_the_store_suite() {
    let dir = std::env::temp_dir().join(format!("chepiao-sqlite-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("test.db").to_str().unwrap()).await.unwrap();
    chepiao_store::testsuite::run_all(&store).await;
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}
