//! Leases in PostgreSQL (see `chepiao_store::lease`).

use chepiao_store::Lease;
use sqlx::PgConnection;

/// Claim or renew lease `name` for `holder`; the lease as it stands afterwards.
pub async fn claim(
    c: &mut PgConnection,
    name: &str,
    holder: &str,
    instance: &str,
    now_ms: i64,
    stale_before_ms: i64,
) -> sqlx::Result<Lease> {
    sqlx::query(
        "INSERT INTO leases (name, holder, instance, since_ms, seen_at_ms) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, instance = excluded.instance,
           since_ms = CASE WHEN leases.holder = excluded.holder THEN leases.since_ms ELSE excluded.since_ms END,
           seen_at_ms = excluded.seen_at_ms
         WHERE leases.holder = excluded.holder OR leases.seen_at_ms < $5",
    )
    .bind(name)
    .bind(holder)
    .bind(instance)
    .bind(now_ms)
    .bind(stale_before_ms)
    .execute(&mut *c)
    .await?;
    let (holder, instance, since_ms, seen_at_ms): (String, String, i64, i64) =
        sqlx::query_as("SELECT holder, instance, since_ms, seen_at_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_one(c)
            .await?;
    Ok(Lease { holder, instance, since_ms, seen_at_ms })
}
