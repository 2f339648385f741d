//! Time as the flow shows it: ms since the Unix epoch, written RFC 3339 in China time.

/// A time in ms as a UTC instant.
pub fn ms_to_utc(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A time in ms as RFC 3339 in China time.
pub fn rfc3339(ms: i64) -> String {
    ms_to_utc(ms).with_timezone(&chepiao_domain::types::china_offset()).to_rfc3339()
}
