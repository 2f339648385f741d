//! Server configuration. Sources, later ones winning: built-in defaults, a TOML file
//! (`--config`), `CHEPIAO_*` environment variables, command-line flags. The binary does the
//! merging; this module owns the shape, the defaults and the checks.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secrets::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded stores keep their files (SQLite database, later the engine's log).
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL, `sqlite://...` for another SQLite file; unset: SQLite
    /// under `data_dir`.
    pub database_url: Option<String>,
    /// Seat-engine shards (threads, each with its own log under `data_dir/engine`).
    pub engine_shards: u8,
    /// Days after today that are on sale (12306 sells 15 days: today + 14).
    pub sale_window_days: u32,
    /// Largest request body accepted, bytes.
    pub body_len_max: usize,
    /// Longest a request may take before the server answers 503, ms.
    pub request_timeout_ms: u64,
    pub log_format: LogFormat,
    /// HS256 key for login tokens, base64 of 32 bytes; unset: `data_dir/secrets/jwt.key`.
    pub jwt_secret: Option<Secret>,
    /// Key for passenger PII at rest, base64 of 32 bytes; unset: `data_dir/secrets/pii.key`.
    pub pii_key: Option<Secret>,
    /// How long a login token lives, seconds.
    pub token_ttl_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("var"),
            database_url: None,
            engine_shards: 2,
            sale_window_days: 14,
            body_len_max: 64 * 1024,
            request_timeout_ms: 10_000,
            log_format: LogFormat::Text,
            jwt_secret: None,
            pii_key: None,
            token_ttl_s: 2 * 3600,
        }
    }
}

/// Limits on configuration values.
pub const SALE_WINDOW_DAYS_MAX: u32 = 60;
pub const ENGINE_SHARDS_MAX: u8 = 64;
pub const BODY_LEN_MAX_MAX: usize = 16 * 1024 * 1024;

impl Config {
    /// Every key, as the file and `CHEPIAO_<KEY>` spell it.
    pub const KEYS: &'static [&'static str] = &[
        "listen",
        "data_dir",
        "database_url",
        "engine_shards",
        "sale_window_days",
        "body_len_max",
        "request_timeout_ms",
        "log_format",
        "jwt_secret",
        "pii_key",
        "token_ttl_s",
    ];

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("chepiao.db").display()))
    }

    /// Where the seat engine keeps its logs and snapshots.
    pub fn engine_dir(&self) -> PathBuf {
        self.data_dir.join("engine")
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=ENGINE_SHARDS_MAX).contains(&self.engine_shards) {
            return Err(format!("engine_shards must be 1 to {ENGINE_SHARDS_MAX}"));
        }
        if !(1..=SALE_WINDOW_DAYS_MAX).contains(&self.sale_window_days) {
            return Err(format!("sale_window_days must be 1 to {SALE_WINDOW_DAYS_MAX}"));
        }
        if !(1024..=BODY_LEN_MAX_MAX).contains(&self.body_len_max) {
            return Err(format!("body_len_max must be 1024 to {BODY_LEN_MAX_MAX}"));
        }
        if !(60..=30 * 24 * 3600).contains(&self.token_ttl_s) {
            return Err("token_ttl_s must be 60 to 2592000".into());
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            return Err("request_timeout_ms must be 100 to 600000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_list_every_field() {
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut fields: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        let mut keys: Vec<_> = Config::KEYS.iter().map(|k| k.to_string()).collect();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
    }

    #[test]
    fn defaults_are_valid_and_limits_hold() {
        assert!(Config::default().validate().is_ok());
        let c = Config { sale_window_days: 0, ..Config::default() };
        assert!(c.validate().is_err());
        assert!(Config::default().database_url().starts_with("sqlite://"));
    }
}
