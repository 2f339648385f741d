//! Configuration merging: defaults, then the TOML file named by `--config`, then `CHEPIAO_*`
//! environment variables, then flags. The only place the server's configuration is read from
//! the environment (the one other variable, `CHEPIAO_GATE_KEY`, is `chepiao gate`'s, a client
//! of the server). And opening the store the configuration names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chepiao_server::Config;
use chepiao_server::security::secrets::Secret;
use chepiao_store::Store;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;

/// Flags shared by the commands that open the stores. Unset flags leave the value to the
/// file, the environment or the default.
#[derive(clap::Args, Serialize, Default)]
pub struct Flags {
    /// TOML configuration file (keys as in docs/CONFIG.md).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// postgres://... for PostgreSQL; default SQLite under --data-dir.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Where embedded stores keep their files.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Days after today on sale.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_window_days: Option<u32>,
    /// nats://host:port: carry outbox events over NATS JetStream (default: in-process).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    /// redis://host:port: keep the waiting room in Redis, shared by several nodes (default: in memory).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
}

/// The gates `CHEPIAO_GATE_KEYS="g1=s1,g2=s2"` adds to the configured ones.
pub const GATE_KEYS_ENV: &str = "CHEPIAO_GATE_KEYS";

pub fn load(flags: &Flags) -> anyhow::Result<Config> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &flags.config {
        anyhow::ensure!(path.exists(), "config file {} not found", path.display());
        figment = figment.merge(Toml::file(path));
    }
    let mut config: Config = figment
        .merge(Env::prefixed("CHEPIAO_").only(Config::KEYS))
        .merge(Serialized::defaults(flags))
        .extract()
        .context("reading configuration")?;
    config.gates.extend(gate_entries(std::env::var(GATE_KEYS_ENV).ok().as_deref()));
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// The `gate_id=secret` entries of a comma-separated list.
fn gate_entries(list: Option<&str>) -> Vec<Secret> {
    list.unwrap_or("").split(',').map(str::trim).filter(|e| !e.is_empty()).map(|e| Secret(e.to_string())).collect()
}

/// Open the store the configuration names: PostgreSQL for `postgres://`, SQLite otherwise.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = chepiao_store_postgres::PgStore::connect(&url).await.context("connecting to PostgreSQL")?;
        return Ok(Arc::new(store));
    }
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    }
    let store = chepiao_store_sqlite::SqliteStore::open(&url).await.with_context(|| format!("opening {url}"))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_keys_from_the_environment_are_entries_of_a_list() {
        let entries = gate_entries(Some(" b=2 ,c=, =3,"));
        assert_eq!(entries.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["b=2", "c=", "=3"]);
        assert!(gate_entries(None).is_empty());
    }
}
