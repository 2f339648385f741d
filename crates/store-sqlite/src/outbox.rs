//! The outbox in SQLite.

use chepiao_store::{OUTBOX_BATCH_MAX, OutboxEvent, OutboxRow, outbox_row};
use rusqlite::{Connection, params};

/// Queue `events`, in this order, in the caller's transaction.
pub(crate) fn insert(c: &Connection, events: &[OutboxEvent], now_ms: i64) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached("INSERT INTO outbox (kind, subject, created_at_ms) VALUES (?1, ?2, ?3)")?;
    for e in events {
        q.execute(params![e.kind(), e.subject(), now_ms])?;
    }
    Ok(())
}

/// The oldest rows, as (id, kind, subject, created_at_ms); decoded by the caller.
pub fn pending(c: &Connection, limit: u32) -> rusqlite::Result<Vec<(i64, String, String, i64)>> {
    let mut q = c.prepare_cached("SELECT id, kind, subject, created_at_ms FROM outbox ORDER BY id LIMIT ?1")?;
    q.query_map([limit.min(OUTBOX_BATCH_MAX)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect()
}

pub fn decode(rows: Vec<(i64, String, String, i64)>) -> chepiao_store::Result<Vec<OutboxRow>> {
    rows.into_iter().map(|(id, kind, subject, at)| outbox_row(id, &kind, &subject, at)).collect()
}

pub fn done(c: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in ids {
        q.execute([id])?;
    }
    Ok(())
}
