//! The outbox in PostgreSQL (the rows' life: `chepiao_store::outbox`).

use chepiao_store::{
    OUTBOX_BATCH_MAX, OUTBOX_COLUMNS, OutboxCounts, OutboxEvent, OutboxFailure, OutboxState, RawOutboxRow, RetryPolicy,
    error_text,
};
use sqlx::{PgConnection, PgExecutor};

/// Queue `events`, in this order, in the caller's transaction; due at once.
pub(crate) async fn insert(c: &mut PgConnection, events: &[OutboxEvent], now_ms: i64) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (kind, subject, created_at_ms, state, attempts, next_at_ms)
         SELECT k, s, $3, 'PENDING', 0, $3 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS e(k, s, i) ORDER BY i",
    )
    .bind(events.iter().map(|e| e.kind()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.subject().to_string()).collect::<Vec<_>>())
    .bind(now_ms)
    .execute(c)
    .await?;
    Ok(())
}

/// [`OUTBOX_COLUMNS`] as sqlx decodes them.
type Row = (i64, String, String, i64, String, i32, i64, Option<String>);

fn raw(r: Row) -> RawOutboxRow {
    let (id, kind, subject, created_at_ms, state, attempts, next_at_ms, last_error) = r;
    RawOutboxRow { id, kind, subject, created_at_ms, state, attempts: i64::from(attempts), next_at_ms, last_error }
}

/// Rows due at `now_ms`, earliest first; decoded by the caller.
pub async fn due<'e>(c: impl PgExecutor<'e>, now_ms: i64, limit: u32) -> sqlx::Result<Vec<RawOutboxRow>> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state <> 'DEAD' AND next_at_ms <= $1 ORDER BY next_at_ms, id LIMIT $2"
    );
    let rows: Vec<Row> =
        sqlx::query_as(&sql).bind(now_ms).bind(i64::from(limit.min(OUTBOX_BATCH_MAX))).fetch_all(c).await?;
    Ok(rows.into_iter().map(raw).collect())
}

pub async fn list<'e>(
    c: impl PgExecutor<'e>,
    state: OutboxState,
    after_id: i64,
    limit: u32,
) -> sqlx::Result<Vec<RawOutboxRow>> {
    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3");
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(state.as_str())
        .bind(after_id)
        .bind(i64::from(limit.min(OUTBOX_BATCH_MAX)))
        .fetch_all(c)
        .await?;
    Ok(rows.into_iter().map(raw).collect())
}

pub async fn sent(c: &mut PgConnection, ids: &[i64], redeliver_at_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET state = 'SENT', attempts = attempts + 1, next_at_ms = $2
         WHERE id = ANY($1) AND state <> 'DEAD'",
    )
    .bind(ids)
    .bind(redeliver_at_ms)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn unsent(c: &mut PgConnection, ids: &[i64], now_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET state = 'PENDING', attempts = greatest(attempts - 1, 0), next_at_ms = $2
         WHERE id = ANY($1) AND state = 'SENT'",
    )
    .bind(ids)
    .bind(now_ms)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn done(c: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids).execute(c).await?;
    Ok(())
}

/// Each failure: PENDING after the backoff of its attempts so far, or DEAD when they are used
/// up. Returns the ids that went DEAD.
pub async fn failed(
    c: &mut PgConnection,
    fs: &[OutboxFailure],
    policy: RetryPolicy,
    now_ms: i64,
) -> sqlx::Result<Vec<i64>> {
    let ids: Vec<i64> = fs.iter().map(|f| f.id).collect();
    let found: Vec<(i64, i32)> =
        sqlx::query_as("SELECT id, attempts FROM outbox WHERE id = ANY($1) AND state <> 'DEAD' FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut *c)
            .await?;
    let attempts: std::collections::HashMap<i64, u32> =
        found.into_iter().map(|(id, n)| (id, u32::try_from(n.max(1)).unwrap_or(u32::MAX))).collect();
    let (mut update_ids, mut states, mut next_at, mut errors, mut dead) = (vec![], vec![], vec![], vec![], vec![]);
    for f in fs {
        let Some(&n) = attempts.get(&f.id) else { continue };
        let state = if n >= policy.attempts_max { OutboxState::Dead } else { OutboxState::Pending };
        if state == OutboxState::Dead {
            dead.push(f.id);
        }
        update_ids.push(f.id);
        states.push(state.as_str());
        next_at.push(now_ms + policy.backoff_ms(n));
        errors.push(error_text(&f.error));
    }
    sqlx::query(
        "UPDATE outbox o SET state = u.s, next_at_ms = u.n, last_error = u.e
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[]) AS u(i, s, n, e) WHERE o.id = u.i",
    )
    .bind(&update_ids)
    .bind(&states)
    .bind(&next_at)
    .bind(&errors)
    .execute(c)
    .await?;
    Ok(dead)
}

pub async fn requeue_sent(c: &mut PgConnection, now_ms: i64) -> sqlx::Result<u64> {
    let r = sqlx::query("UPDATE outbox SET state = 'PENDING', next_at_ms = $1 WHERE state = 'SENT'")
        .bind(now_ms)
        .execute(c)
        .await?;
    Ok(r.rows_affected())
}

pub async fn retry(c: &mut PgConnection, id: i64, now_ms: i64) -> sqlx::Result<Option<RawOutboxRow>> {
    let sql = format!(
        "UPDATE outbox SET state = 'PENDING', attempts = 0, next_at_ms = $2 WHERE id = $1 AND state = 'DEAD'
         RETURNING {OUTBOX_COLUMNS}"
    );
    let row: Option<Row> = sqlx::query_as(&sql).bind(id).bind(now_ms).fetch_optional(c).await?;
    Ok(row.map(raw))
}

pub async fn counts(c: &sqlx::PgPool) -> sqlx::Result<OutboxCounts> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM outbox GROUP BY state").fetch_all(c).await?;
    let mut counts = OutboxCounts::default();
    for (state, n) in rows {
        match OutboxState::parse(&state) {
            Some(OutboxState::Pending) => counts.pending = n as u64,
            Some(OutboxState::Sent) => counts.sent = n as u64,
            Some(OutboxState::Dead) => counts.dead = n as u64,
            None => return Err(sqlx::Error::Decode(format!("outbox state {state:?}").into())),
        }
    }
    // Rows are written in id order: the first one not dead is the oldest waiting.
    counts.oldest_ms = sqlx::query_scalar("SELECT created_at_ms FROM outbox WHERE state <> 'DEAD' ORDER BY id LIMIT 1")
        .fetch_optional(c)
        .await?;
    Ok(counts)
}
