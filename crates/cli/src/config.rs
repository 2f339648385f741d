//! Configuration merging: defaults, then the TOML file named by `--config`, then `CHEPIAO_*`
//! environment variables, then flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chepiao_server::Config;
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

pub fn load(flags: &Flags) -> anyhow::Result<Config> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &flags.config {
        anyhow::ensure!(path.exists(), "config file {} not found", path.display());
        figment = figment.merge(Toml::file(path));
    }
    let config: Config = figment
        .merge(Env::prefixed("CHEPIAO_").only(Config::KEYS))
        .merge(Serialized::defaults(flags))
        .extract()
        .context("reading configuration")?;
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}
