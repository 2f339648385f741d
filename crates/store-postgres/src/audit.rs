//! The audit log in PostgreSQL. The head row is locked for the rest of the transaction, so
//! chains written from several nodes never fork.

use chepiao_store::{AUDIT_PAGE_MAX, AuditEntry, AuditRecord, chain};
use sqlx::{PgConnection, PgExecutor, Row};

/// Append `entries` to the chain in the caller's transaction; returns the last seq.
pub(crate) async fn append(c: &mut PgConnection, entries: &[AuditEntry]) -> sqlx::Result<i64> {
    let (seq, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetch_one(&mut *c).await?;
    let records = chain(seq, &hash, entries);
    let Some(last) = records.last() else { return Ok(seq) };
    let text = |f: fn(&AuditRecord) -> String| records.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO audit_log (seq, at_ms, kind, subject, detail, prev_hash, hash)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[])",
    )
    .bind(records.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.entry.at_ms).collect::<Vec<_>>())
    .bind(text(|r| r.entry.kind.clone()))
    .bind(text(|r| r.entry.subject.clone()))
    .bind(text(|r| r.entry.detail.clone()))
    .bind(records.iter().map(|r| r.prev_hash.clone()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.hash.clone()).collect::<Vec<_>>())
    .execute(&mut *c)
    .await?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(last.seq)
        .bind(&last.hash)
        .execute(&mut *c)
        .await?;
    Ok(last.seq)
}

/// Append one entry.
pub(crate) async fn record(
    c: &mut PgConnection,
    at_ms: i64,
    kind: &str,
    subject: &str,
    detail: String,
) -> sqlx::Result<i64> {
    append(c, &[AuditEntry { at_ms, kind: kind.into(), subject: subject.into(), detail }]).await
}

pub async fn range<'e>(c: impl PgExecutor<'e>, after_seq: i64, limit: u32) -> sqlx::Result<Vec<AuditRecord>> {
    let rows = sqlx::query(
        "SELECT seq, at_ms, kind, subject, detail, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(i64::from(limit.min(AUDIT_PAGE_MAX)))
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                seq: r.try_get(0)?,
                entry: AuditEntry {
                    at_ms: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    subject: r.try_get(3)?,
                    detail: r.try_get(4)?,
                },
                prev_hash: r.try_get(5)?,
                hash: r.try_get(6)?,
            })
        })
        .collect()
}
