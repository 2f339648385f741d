//! Users and passengers in SQLite.

use chepiao_store::{AddPassenger, NewPassenger, PassengerRecord, UserRecord};
use rusqlite::{Connection, OptionalExtension, params};

pub fn create(
    c: &Connection,
    username: &str,
    password_hash: &str,
    created_at_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "INSERT INTO users (username, password_hash, created_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (username) DO NOTHING RETURNING id",
    )?
    .query_row(params![username, password_hash, created_at_ms], |r| r.get(0))
    .optional()
}

pub fn by_name(c: &Connection, username: &str) -> rusqlite::Result<Option<UserRecord>> {
    c.prepare_cached("SELECT id, username, password_hash, token_version FROM users WHERE username = ?1")?
        .query_row([username], |r| {
            Ok(UserRecord { id: r.get(0)?, username: r.get(1)?, password_hash: r.get(2)?, token_version: r.get(3)? })
        })
        .optional()
}

pub fn token_version(c: &Connection, user_id: i64) -> rusqlite::Result<Option<u32>> {
    c.prepare_cached("SELECT token_version FROM users WHERE id = ?1")?.query_row([user_id], |r| r.get(0)).optional()
}

/// Set a new password (when `password_hash` is Some) and bump the token version.
pub fn bump(c: &Connection, user_id: i64, password_hash: Option<&str>) -> rusqlite::Result<u32> {
    c.prepare_cached(
        "UPDATE users SET token_version = token_version + 1, password_hash = coalesce(?2, password_hash)
         WHERE id = ?1 RETURNING token_version",
    )?
    .query_row(params![user_id, password_hash], |r| r.get(0))
}

pub fn add_passenger(c: &Connection, p: &NewPassenger, max_per_user: u32) -> rusqlite::Result<AddPassenger> {
    // One statement: the count check and the insert cannot be split by another writer.
    let done = c
        .prepare_cached(
            "INSERT INTO passengers (user_id, name_enc, id_type, id_no_enc, id_no_index, masked, created_at_ms)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE (SELECT count(*) FROM passengers WHERE user_id = ?1) < ?8
             RETURNING id",
        )?
        .query_row(
            params![
                p.user_id,
                p.name_enc,
                p.id_type,
                p.id_no_enc,
                p.id_no_index,
                p.masked,
                p.created_at_ms,
                max_per_user
            ],
            |r| r.get(0),
        )
        .optional();
    match done {
        Ok(Some(id)) => Ok(AddPassenger::Added(id)),
        Ok(None) => Ok(AddPassenger::TooMany),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
            Ok(AddPassenger::Duplicate)
        }
        Err(e) => Err(e),
    }
}

pub fn passengers(c: &Connection, user_id: i64) -> rusqlite::Result<Vec<PassengerRecord>> {
    let mut q = c.prepare_cached(
        "SELECT id, user_id, name_enc, id_type, id_no_enc, masked, id_no_index FROM passengers WHERE user_id = ?1 ORDER BY id",
    )?;
    q.query_map([user_id], |r| {
        Ok(PassengerRecord {
            id: r.get(0)?,
            user_id: r.get(1)?,
            name_enc: r.get(2)?,
            id_type: r.get(3)?,
            id_no_enc: r.get(4)?,
            masked: r.get(5)?,
            id_no_index: r.get(6)?,
        })
    })?
    .collect()
}
