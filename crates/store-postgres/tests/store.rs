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
