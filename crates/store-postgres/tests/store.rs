//! The shared store suite against PostgreSQL, in a fresh schema per run.
//!
//! Needs `CHEPIAO_TEST_POSTGRES_URL` (CI sets it; locally e.g.
//! `CHEPIAO_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test`). Without it the test
//! says so and passes vacuously, so `cargo test` works on a machine without PostgreSQL.

use std::str::FromStr;

use chepiao_store_postgres::{ConnectOptions, PgStore};
use sqlx::Connection;

#[tokio::test]
async fn postgres_passes_the_store_suite() {
    let Ok(url) = std::env::var("CHEPIAO_TEST_POSTGRES_URL") else {
        eprintln!("CHEPIAO_TEST_POSTGRES_URL not set: PostgreSQL store suite skipped");
        return;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
    let options = ConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
    let store = PgStore::connect_with(options).await.unwrap();
    chepiao_store::testsuite::run_all(&store).await;
    drop(store);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
}
