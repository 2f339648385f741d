//! Reading chepiao's values out of rows.

use sqlx::Row;
use sqlx::postgres::PgRow;

/// Column `i` as a status enum through its `parse`.
pub fn status<T>(r: &PgRow, i: usize, parse: fn(&str) -> Option<T>) -> sqlx::Result<T> {
    let s: String = r.try_get(i)?;
    parse(&s).ok_or_else(|| sqlx::Error::Decode(format!("unexpected value {s:?} in column {i}").into()))
}
