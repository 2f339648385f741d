//! The schema: `migrations/`, embedded in the binary, applied in order inside a transaction
//! each, with SQLite's `user_version` recording how far a database is.
//!
//! Databases created before this runner (by sqlx's migrator) carry their version in
//! `_sqlx_migrations`; it is read once and moved to `user_version`.

use chepiao_store::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_network.sql")),
    (2, include_str!("../migrations/0002_users.sql")),
    (3, include_str!("../migrations/0003_flow.sql")),
    (4, include_str!("../migrations/0004_checkin.sql")),
    (5, include_str!("../migrations/0005_refunds.sql")),
    (6, include_str!("../migrations/0006_after_sale.sql")),
    (7, include_str!("../migrations/0007_passenger_masked.sql")),
    (8, include_str!("../migrations/0008_sale_day.sql")),
    (9, include_str!("../migrations/0009_purchase_rules.sql")),
    (10, include_str!("../migrations/0010_sales_stats.sql")),
    (11, include_str!("../migrations/0011_fewer_order_indexes.sql")),
];

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Migration(e.to_string())
}

/// The version a database is at.
fn version(c: &Connection) -> rusqlite::Result<i64> {
    let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if v != 0 {
        return Ok(v);
    }
    let sqlx: Option<String> = c
        .query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if sqlx.is_none() {
        return Ok(0);
    }
    c.query_row("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success", [], |r| r.get(0))
}

/// Bring the database up to the latest migration.
pub fn migrate(c: &mut Connection) -> Result<()> {
    let at = version(c).map_err(failed)?;
    let latest = MIGRATIONS.last().expect("there are migrations").0;
    if at > latest {
        return Err(StoreError::Migration(format!(
            "the database is at schema {at}, newer than this binary's {latest}"
        )));
    }
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > at) {
        let tx = c.transaction().map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", v).map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}
