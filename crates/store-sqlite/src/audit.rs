//! The audit log in SQLite. SQLite has one writer, so the head row needs no lock of its own.

use chepiao_store::{AuditEntry, AuditRecord, chain};
use rusqlite::{Connection, params};

/// Append `entries` to the chain in the caller's transaction; returns the last seq.
pub(crate) fn append(c: &Connection, entries: &[AuditEntry]) -> rusqlite::Result<i64> {
    let (seq, hash): (i64, Vec<u8>) = c
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let records = chain(seq, &hash, entries);
    let Some(last) = records.last() else { return Ok(seq) };
    let mut insert = c.prepare_cached(
        "INSERT INTO audit_log (seq, at_ms, kind, subject, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for r in &records {
        let e = &r.entry;
        insert.execute(params![r.seq, e.at_ms, e.kind, e.subject, e.detail, r.prev_hash, r.hash])?;
    }
    c.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?
        .execute(params![last.seq, last.hash])?;
    Ok(last.seq)
}

/// Append one entry.
pub(crate) fn record(c: &Connection, at_ms: i64, kind: &str, subject: &str, detail: String) -> rusqlite::Result<i64> {
    append(c, &[AuditEntry { at_ms, kind: kind.into(), subject: subject.into(), detail }])
}

pub fn range(c: &Connection, after_seq: i64, limit: u32) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut q = c.prepare_cached(
        "SELECT seq, at_ms, kind, subject, detail, prev_hash, hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    q.query_map(params![after_seq, limit.min(chepiao_store::AUDIT_PAGE_MAX)], |r| {
        Ok(AuditRecord {
            seq: r.get(0)?,
            entry: AuditEntry { at_ms: r.get(1)?, kind: r.get(2)?, subject: r.get(3)?, detail: r.get(4)? },
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
        })
    })?
    .collect()
}
