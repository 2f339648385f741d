//! Leases in SQLite (see `chepiao_store::lease`).

use chepiao_store::Lease;
use rusqlite::{Connection, params};

/// Claim or renew lease `name` for `holder`; the lease as it stands afterwards.
pub fn claim(
    c: &Connection,
    name: &str,
    holder: &str,
    instance: &str,
    now_ms: i64,
    stale_before_ms: i64,
) -> rusqlite::Result<Lease> {
    c.prepare_cached(
        "INSERT INTO leases (name, holder, instance, since_ms, seen_at_ms) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, instance = excluded.instance,
           since_ms = CASE WHEN leases.holder = excluded.holder THEN leases.since_ms ELSE excluded.since_ms END,
           seen_at_ms = excluded.seen_at_ms
         WHERE leases.holder = excluded.holder OR leases.seen_at_ms < ?5",
    )?
    .execute(params![name, holder, instance, now_ms, stale_before_ms])?;
    c.prepare_cached("SELECT holder, instance, since_ms, seen_at_ms FROM leases WHERE name = ?1")?
        .query_row([name], |r| {
            Ok(Lease { holder: r.get(0)?, instance: r.get(1)?, since_ms: r.get(2)?, seen_at_ms: r.get(3)? })
        })
}
