//! Users and passengers in PostgreSQL.

use chepiao_store::{AddPassenger, NewPassenger, PassengerRecord, UserRecord};
use sqlx::{PgPool, Row};

pub async fn create(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    created_at_ms: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(created_at_ms)
    .fetch_optional(pool)
    .await
}

pub async fn by_name(pool: &PgPool, username: &str) -> sqlx::Result<Option<UserRecord>> {
    let row = sqlx::query("SELECT id, username, password_hash, token_version FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        let token_version: i32 = r.try_get(3)?;
        let (id, username, password_hash) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        Ok(UserRecord { id, username, password_hash, token_version: token_version as u32 })
    })
    .transpose()
}

pub async fn token_version(pool: &PgPool, user_id: i64) -> sqlx::Result<Option<u32>> {
    let v: Option<i32> =
        sqlx::query_scalar("SELECT token_version FROM users WHERE id = $1").bind(user_id).fetch_optional(pool).await?;
    Ok(v.map(|v| v as u32))
}

/// Set a new password (when `password_hash` is Some) and bump the token version.
pub async fn bump(c: &mut sqlx::PgConnection, user_id: i64, password_hash: Option<&str>) -> sqlx::Result<u32> {
    let v: i32 = sqlx::query_scalar(
        "UPDATE users SET token_version = token_version + 1, password_hash = coalesce($2, password_hash)
         WHERE id = $1 RETURNING token_version",
    )
    .bind(user_id)
    .bind(password_hash)
    .fetch_one(c)
    .await?;
    Ok(v as u32)
}

pub async fn add_passenger(pool: &PgPool, p: &NewPassenger, max_per_user: u32) -> sqlx::Result<AddPassenger> {
    // One statement: the count check and the insert cannot be split by another writer.
    let done: sqlx::Result<Option<i64>> = sqlx::query_scalar(
        "INSERT INTO passengers (user_id, name_enc, id_type, id_no_enc, id_no_index, masked, created_at_ms)
         SELECT $1, $2, $3, $4, $5, $6, $7
         WHERE (SELECT count(*) FROM passengers WHERE user_id = $1) < $8
         RETURNING id",
    )
    .bind(p.user_id)
    .bind(&p.name_enc)
    .bind(&p.id_type)
    .bind(&p.id_no_enc)
    .bind(&p.id_no_index)
    .bind(&p.masked)
    .bind(p.created_at_ms)
    .bind(i64::from(max_per_user))
    .fetch_optional(pool)
    .await;
    match done {
        Ok(Some(id)) => Ok(AddPassenger::Added(id)),
        Ok(None) => Ok(AddPassenger::TooMany),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(AddPassenger::Duplicate),
        Err(e) => Err(e),
    }
}

pub async fn passengers(pool: &PgPool, user_id: i64) -> sqlx::Result<Vec<PassengerRecord>> {
    let rows = sqlx::query(
        "SELECT id, user_id, name_enc, id_type, id_no_enc, masked, id_no_index FROM passengers WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PassengerRecord {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                name_enc: r.try_get(2)?,
                id_type: r.try_get(3)?,
                id_no_enc: r.try_get(4)?,
                masked: r.try_get(5)?,
                id_no_index: r.try_get(6)?,
            })
        })
        .collect()
}
