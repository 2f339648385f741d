//! Keeping the planner's statistics up with tables that grow fast.
//!
//! PostgreSQL keeps a generic plan for a prepared statement after its fifth execution, made
//! from the statistics of that moment. On a fresh database they say the tables are empty, so a
//! sequential scan wins, and autovacuum analyses a table at best once a minute
//! (`autovacuum_naptime`): through the first minute of a sale an update by primary key scanned
//! the whole table (measured in docs/BENCHMARKS.md: 2,227 sequential scans of `payments` in
//! 5,000 purchases, and purchases at 925–1,105/s).
//!
//! So every `CHECK_EVERY` the store analyses each table of its schema that now holds at least
//! twice the rows the planner believes it holds (and `GROWN_ROWS_MIN` more). `ANALYZE`
//! invalidates the plans kept for that table, so they are made again from the new figures. A
//! table is analysed about log2 of its rows times over its life (25 times on its way to 20
//! million rows); a table that only changes, without growing, is left to autovacuum.

use std::time::Duration;

use sqlx::PgPool;

/// How often the tables' sizes are compared with what the planner believes.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Rows a table must have grown by before it is analysed: below that a plan's choice costs
/// little either way.
pub const GROWN_ROWS_MIN: i64 = 1_000;

/// Analyse the schema's tables that have doubled since the planner last looked; their names.
pub async fn analyse_grown(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    // reltuples is -1 for a table never analysed (PostgreSQL 14 and later). Only tables this
    // user may analyse (as their owner's or the database's owner's member): `ANALYZE` skips
    // any other with a warning, so it would be tried, and warned about, every second.
    let grown: Vec<String> = sqlx::query_scalar(
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.schemaname = current_schema()
           AND s.n_live_tup >= 2 * GREATEST(c.reltuples, 0)::bigint
           AND s.n_live_tup - GREATEST(c.reltuples, 0)::bigint >= $1
           AND (pg_has_role(c.relowner, 'USAGE')
                OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE'))
         ORDER BY s.relname",
    )
    .bind(GROWN_ROWS_MIN)
    .fetch_all(pool)
    .await?;
    for table in &grown {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        sqlx::query(&format!("ANALYZE {quoted}")).execute(pool).await?;
    }
    Ok(grown)
}

/// Run `analyse_grown` every `CHECK_EVERY` until aborted (the store aborts it when dropped).
/// A failure is logged and tried again next time: stale statistics cost speed, not answers.
pub async fn keep(pool: PgPool) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u64 = 0;
    loop {
        every.tick().await;
        match analyse_grown(&pool).await {
            Ok(tables) if !tables.is_empty() => tracing::debug!(?tables, "analysed tables that doubled"),
            Ok(_) => {}
            Err(e) => {
                // Logged once per 60 failures: a database that is down is reported elsewhere.
                if failures.is_multiple_of(60) {
                    tracing::warn!(error = %e, failures, "could not refresh the planner's statistics");
                }
                failures += 1;
            }
        }
    }
}
