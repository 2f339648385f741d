//! The shared store suite against PostgreSQL: one test per check, each in a fresh schema.
//!
//! Needs `CHEPIAO_TEST_POSTGRES_URL` (CI sets it; locally e.g.
//! `CHEPIAO_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test`). Without it every check
//! prints that it was skipped, and why.

use std::ops::Deref;
use std::str::FromStr;

use chepiao_store::Store;
use chepiao_store_postgres::{ConnectOptions, PgStore};
use sqlx::Connection;

/// A store in a schema of its own, dropped with it.
struct Fresh {
    store: Option<PgStore>,
    url: String,
    schema: String,
}

impl Deref for Fresh {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        self.store.as_ref().expect("present until drop")
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        drop(self.store.take());
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime: the clean-up gets a thread and runtime of its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.ok();
            });
        })
        .join()
        .ok();
    }
}

async fn fresh() -> Option<Fresh> {
    let Ok(url) = std::env::var("CHEPIAO_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CHEPIAO_TEST_POSTGRES_URL is not set, so there is no PostgreSQL to test against");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
    let options = ConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
    let store = PgStore::connect_with(options).await.unwrap();
    Some(Fresh { store: Some(store), url, schema })
}

chepiao_store::store_suite!(fresh);

/// A connection in the test's schema, beside the store's.
async fn connection(db: &Fresh) -> sqlx::PgConnection {
    let options = ConnectOptions::from_str(&db.url).unwrap().options([("search_path", db.schema.as_str())]);
    sqlx::PgConnection::connect_with(&options).await.unwrap()
}

/// What the planner believes `table` holds (-1: never analysed).
async fn planner_rows(c: &mut sqlx::PgConnection, table: &str) -> f32 {
    sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
        .bind(table)
        .fetch_one(c)
        .await
        .unwrap()
}

/// Add users `from..to` and flush this connection's statistics to `pg_stat` at once.
async fn grow_users(c: &mut sqlx::PgConnection, from: i64, to: i64) {
    sqlx::query("INSERT INTO users (username, password_hash, created_at_ms) SELECT 'u' || g, 'h', 0 FROM generate_series($1, $2 - 1) g")
        .bind(from)
        .bind(to)
        .execute(&mut *c)
        .await
        .unwrap();
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut *c).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *c).await.unwrap();
}

/// Wait until the planner believes `users` holds at least `rows` (analysed by the store).
async fn analysed_at_least(c: &mut sqlx::PgConnection, rows: f32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while planner_rows(c, "users").await < rows {
        assert!(std::time::Instant::now() < deadline, "users reached {rows} rows and was not analysed within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A table that doubles is analysed by the store itself (autovacuum is off for it here, so it
/// cannot be autovacuum's doing); a table grown by fewer than `GROWN_ROWS_MIN` rows, or by less
/// than it held when last analysed, is not.
#[tokio::test]
async fn tables_that_double_are_analysed_so_their_plans_are_made_again() {
    let Some(db) = fresh().await else { return };
    let store = db.store.as_ref().unwrap();
    let mut c = connection(&db).await;
    sqlx::query("ALTER TABLE users SET (autovacuum_enabled = false)").execute(&mut c).await.unwrap();
    assert_eq!(planner_rows(&mut c, "users").await, -1.0, "a fresh table was never analysed");
    let min = chepiao_store_postgres::statistics::GROWN_ROWS_MIN;
    grow_users(&mut c, 0, min / 2).await;
    assert!(!store.analyse_grown().await.unwrap().contains(&"users".to_string()), "grown by fewer than the minimum");
    grow_users(&mut c, min / 2, min * 2).await;
    analysed_at_least(&mut c, (min * 2) as f32).await;
    grow_users(&mut c, min * 2, min * 4 - 100).await;
    let keeper_ticks = chepiao_store_postgres::statistics::CHECK_EVERY * 2;
    tokio::time::sleep(keeper_ticks).await;
    assert!(!store.analyse_grown().await.unwrap().contains(&"users".to_string()), "not doubled yet");
    assert_eq!(planner_rows(&mut c, "users").await, (min * 2) as f32);
    grow_users(&mut c, min * 4 - 100, min * 4).await;
    analysed_at_least(&mut c, (min * 4) as f32).await;
}

/// A user who may not analyse a table (it owns neither the table nor the database) does not
/// try to every second in vain; its owner does. In a schema of its own, which the store's
/// keeper does not watch, so the keeper cannot analyse it first.
#[tokio::test]
async fn tables_this_user_may_not_analyse_are_left_to_autovacuum() {
    let Some(db) = fresh().await else { return };
    let mut c = connection(&db).await;
    let (role, schema) = (format!("r_{}", &db.schema[2..]), format!("{}_x", db.schema));
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("CREATE SCHEMA {schema}"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("CREATE TABLE {schema}.big (x int) WITH (autovacuum_enabled = false)"),
        format!("INSERT INTO {schema}.big SELECT generate_series(1, 5000)"),
        "SELECT pg_stat_force_next_flush()".to_string(),
    ] {
        sqlx::query(&sql).execute(&mut c).await.unwrap();
    }
    let pool_as = |user: Option<&str>| {
        let options = ConnectOptions::from_str(&db.url).unwrap().options([("search_path", schema.as_str())]);
        let options = match user {
            Some(user) => options.username(user),
            None => options,
        };
        sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options)
    };
    let analyse = chepiao_store_postgres::statistics::analyse_grown;
    let stranger = pool_as(Some(&role)).await.unwrap();
    assert_eq!(analyse(&stranger).await.unwrap(), Vec::<String>::new(), "not its table");
    stranger.close().await;
    let owner = pool_as(None).await.unwrap();
    assert_eq!(analyse(&owner).await.unwrap(), vec!["big".to_string()]);
    owner.close().await;
    for sql in [format!("DROP SCHEMA {schema} CASCADE"), format!("DROP ROLE {role}")] {
        sqlx::query(&sql).execute(&mut c).await.unwrap();
    }
}
