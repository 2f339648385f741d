//! The outbox in SQLite (the rows' life: `chepiao_store::outbox`).

use chepiao_store::{
    OUTBOX_BATCH_MAX, OUTBOX_COLUMNS, OutboxCounts, OutboxEvent, OutboxFailure, OutboxState, RawOutboxRow, RetryPolicy,
    error_text,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Queue `events`, in this order, in the caller's transaction; due at once.
pub(crate) fn insert(c: &Connection, events: &[OutboxEvent], now_ms: i64) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached(
        "INSERT INTO outbox (kind, subject, created_at_ms, state, attempts, next_at_ms)
         VALUES (?1, ?2, ?3, 'PENDING', 0, ?3)",
    )?;
    for e in events {
        q.execute(params![e.kind(), e.subject(), now_ms])?;
    }
    Ok(())
}

fn raw(r: &Row) -> rusqlite::Result<RawOutboxRow> {
    Ok(RawOutboxRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        created_at_ms: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        next_at_ms: r.get(6)?,
        last_error: r.get(7)?,
    })
}

/// Rows due at `now_ms`, earliest first; decoded by the caller.
pub fn due(c: &Connection, now_ms: i64, limit: u32) -> rusqlite::Result<Vec<RawOutboxRow>> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state <> 'DEAD' AND next_at_ms <= ?1 ORDER BY next_at_ms, id LIMIT ?2"
    );
    let mut q = c.prepare_cached(&sql)?;
    q.query_map(params![now_ms, limit.min(OUTBOX_BATCH_MAX)], raw)?.collect()
}

pub fn list(c: &Connection, state: OutboxState, after_id: i64, limit: u32) -> rusqlite::Result<Vec<RawOutboxRow>> {
    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    let mut q = c.prepare_cached(&sql)?;
    q.query_map(params![state.as_str(), after_id, limit.min(OUTBOX_BATCH_MAX)], raw)?.collect()
}

pub fn sent(c: &Connection, ids: &[i64], redeliver_at_ms: i64) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached(
        "UPDATE outbox SET state = 'SENT', attempts = attempts + 1, next_at_ms = ?2
         WHERE id = ?1 AND state <> 'DEAD'",
    )?;
    for id in ids {
        q.execute(params![id, redeliver_at_ms])?;
    }
    Ok(())
}

pub fn unsent(c: &Connection, ids: &[i64], now_ms: i64) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached(
        "UPDATE outbox SET state = 'PENDING', attempts = max(attempts - 1, 0), next_at_ms = ?2
         WHERE id = ?1 AND state = 'SENT'",
    )?;
    for id in ids {
        q.execute(params![id, now_ms])?;
    }
    Ok(())
}

pub fn done(c: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in ids {
        q.execute([id])?;
    }
    Ok(())
}

/// Each failure: PENDING after the backoff of its attempts so far, or DEAD when they are used
/// up. Returns the ids that went DEAD.
pub fn failed(c: &Connection, fs: &[OutboxFailure], policy: RetryPolicy, now_ms: i64) -> rusqlite::Result<Vec<i64>> {
    let mut attempts = c.prepare_cached("SELECT attempts FROM outbox WHERE id = ?1 AND state <> 'DEAD'")?;
    let mut update =
        c.prepare_cached("UPDATE outbox SET state = ?2, next_at_ms = ?3, last_error = ?4 WHERE id = ?1")?;
    let mut dead = Vec::new();
    for f in fs {
        let Some(n) = attempts.query_row([f.id], |r| r.get::<_, i64>(0)).optional()? else { continue };
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        let state = if n >= policy.attempts_max { OutboxState::Dead } else { OutboxState::Pending };
        if state == OutboxState::Dead {
            dead.push(f.id);
        }
        update.execute(params![f.id, state.as_str(), now_ms + policy.backoff_ms(n), error_text(&f.error)])?;
    }
    Ok(dead)
}

pub fn requeue_sent(c: &Connection, now_ms: i64) -> rusqlite::Result<u64> {
    let mut q = c.prepare_cached("UPDATE outbox SET state = 'PENDING', next_at_ms = ?1 WHERE state = 'SENT'")?;
    Ok(q.execute([now_ms])? as u64)
}

pub fn retry(c: &Connection, id: i64, now_ms: i64) -> rusqlite::Result<Option<RawOutboxRow>> {
    let sql = format!(
        "UPDATE outbox SET state = 'PENDING', attempts = 0, next_at_ms = ?2 WHERE id = ?1 AND state = 'DEAD'
         RETURNING {OUTBOX_COLUMNS}"
    );
    c.prepare_cached(&sql)?.query_row(params![id, now_ms], raw).optional()
}

pub fn counts(c: &Connection) -> rusqlite::Result<OutboxCounts> {
    let mut q = c.prepare_cached("SELECT state, count(*) FROM outbox GROUP BY state")?;
    let mut counts = OutboxCounts::default();
    for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (state, n) = row?;
        match OutboxState::parse(&state) {
            Some(OutboxState::Pending) => counts.pending = n as u64,
            Some(OutboxState::Sent) => counts.sent = n as u64,
            Some(OutboxState::Dead) => counts.dead = n as u64,
            None => return Err(crate::row::corrupt(0, &state)),
        }
    }
    // Rows are written in id order: the first one not dead is the oldest waiting.
    counts.oldest_ms = c
        .prepare_cached("SELECT created_at_ms FROM outbox WHERE state <> 'DEAD' ORDER BY id LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(counts)
}
