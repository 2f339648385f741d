//! The outbox in PostgreSQL.

use chepiao_store::{OUTBOX_BATCH_MAX, OutboxEvent};
use sqlx::{PgConnection, PgExecutor};

/// Queue `events`, in this order, in the caller's transaction.
pub(crate) async fn insert(c: &mut PgConnection, events: &[OutboxEvent], now_ms: i64) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (kind, subject, created_at_ms)
         SELECT k, s, $3 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS e(k, s, i) ORDER BY i",
    )
    .bind(events.iter().map(|e| e.kind()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.subject().to_string()).collect::<Vec<_>>())
    .bind(now_ms)
    .execute(c)
    .await?;
    Ok(())
}

/// The oldest rows as (id, kind, subject, created_at_ms); decoded by the caller.
pub async fn pending<'e>(c: impl PgExecutor<'e>, limit: u32) -> sqlx::Result<Vec<(i64, String, String, i64)>> {
    sqlx::query_as("SELECT id, kind, subject, created_at_ms FROM outbox ORDER BY id LIMIT $1")
        .bind(i64::from(limit.min(OUTBOX_BATCH_MAX)))
        .fetch_all(c)
        .await
}

pub async fn done(c: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids).execute(c).await?;
    Ok(())
}
