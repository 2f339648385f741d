//! What `chepiao load` is asked to do.

use crate::config;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    Hot,
    Spread,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Orders (and with `--pay`, purchases) as fast as the server answers or at `--rate`.
    Orders,
    /// The sale opens: `--users` join its waiting room, are admitted and buy (see `rush`).
    Rush,
    /// `--duration` at `--rate` with payments, cancellations, expiries and refunds (see `soak`).
    Soak,
    /// `--users` people behind one address without device ids, one order each (see `nat`).
    Nat,
}

/// `90`, `90s`, `20m` or `1h` as seconds.
fn duration_s(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: a number of seconds, or with s, m or h"))?;
    match unit {
        "s" => Ok(n),
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        _ => Err(format!("{s:?}: the unit is s, m or h")),
    }
}

#[derive(clap::Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value = "orders")]
    pub scenario: Scenario,
    /// The server to load; give it several times to spread the load over a cluster's nodes
    /// (the soak sends each order to the next node, and a request no node answered to the next).
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub urls: Vec<String>,
    /// Accounts (virtual users), five passengers each.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Orders to place in all.
    #[arg(long, default_value_t = 20_000)]
    pub orders: u64,
    #[arg(long, value_enum, default_value = "spread")]
    pub mode: Mode,
    /// Pay every created order (mockpay) and wait for its tickets.
    #[arg(long)]
    pub pay: bool,
    /// With `--pay`: act as the payment provider (sign mockpay's notify with its secret, from
    /// the configuration or the `--data-dir` key file, and send it) instead of pressing the pay
    /// page.
    #[arg(long, requires = "pay")]
    pub pay_as_provider: bool,
    /// Orders per second at most (0: as fast as the server answers).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// How long the soak runs (`20m`, `1h`, seconds).
    #[arg(long = "duration", default_value = "0", value_parser = duration_s)]
    pub duration_s: u64,
    /// The soak's reporting window.
    #[arg(long = "window", default_value = "5m", value_parser = duration_s)]
    pub window_s: u64,
    /// Skip the closing audit (when the server's store is not reachable from here).
    #[arg(long)]
    pub no_audit: bool,
    /// How the audit opens the server's store (same flags as `serve`).
    #[command(flatten)]
    pub flags: config::Flags,
}

impl LoadArgs {
    /// The first server: the only one for the scenarios that load one.
    pub fn url(&self) -> &str {
        &self.urls[0]
    }
}
