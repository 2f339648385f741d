//! Reading chepiao's values out of rows: a value that is not one of the spellings chepiao
//! writes is a corrupt row, reported as a conversion error of its column.

use rusqlite::Row;

/// A row value that is not one of the spellings chepiao writes: a corrupt row.
pub fn corrupt(column: usize, value: &str) -> rusqlite::Error {
    let e: Box<dyn std::error::Error + Send + Sync> = format!("unexpected value {value:?}").into();
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e)
}

/// Column `i` as a status enum through its `parse`.
pub fn decode<T>(r: &Row, i: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    parse(&s).ok_or_else(|| corrupt(i, &s))
}

/// Column `i` through `FromStr` (telecodes, train codes, dates).
pub fn parsed<T: std::str::FromStr>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    s.parse().map_err(|_| corrupt(i, &s))
}
