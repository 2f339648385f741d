//! `chepiao gate`: an offline check-in gate on the command line (its logic is
//! `chepiao_api::gate`). Its state file keeps the keys, the revocation list and its scans.

use std::path::PathBuf;

use anyhow::Context;
use chepiao_api::gate::{GateState, Verdict};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct GateArgs {
    /// The gate's state file (created by the first `sync`).
    #[arg(long, default_value = "gate.json")]
    state: PathBuf,
    /// The gate's secret (as configured in the server's `gates`).
    #[arg(long, env = "CHEPIAO_GATE_KEY", hide_env_values = true)]
    gate_key: Option<String>,
    #[command(subcommand)]
    command: GateCommand,
}

#[derive(Subcommand)]
enum GateCommand {
    /// Fetch the signing keys and the revocations since the last sync.
    Sync {
        /// The server, e.g. http://127.0.0.1:8080 (remembered in the state file).
        #[arg(long)]
        server: Option<String>,
        /// This gate's id (remembered in the state file).
        #[arg(long)]
        gate_id: Option<String>,
    },
    /// Check a ticket code with no network; prints the verdict as JSON, exits 3 if refused.
    Scan {
        /// The boarding station's telecode.
        #[arg(long)]
        station: String,
        /// How far this gate's clock may be off, in seconds (at most 900).
        #[arg(long, default_value_t = 300)]
        clock_skew_s: i64,
        /// The scanned code (`CP1.…`).
        qr: String,
    },
    /// Send the scans kept since the last upload; prints the server's report as JSON.
    Upload,
}

pub async fn run(args: GateArgs) -> anyhow::Result<()> {
    let mut state = GateState::load(&args.state)?;
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let key = || args.gate_key.clone().context("the gate's secret: --gate-key or CHEPIAO_GATE_KEY");
    match args.command {
        GateCommand::Sync { server, gate_id } => {
            if let Some(s) = server {
                state.server = s.trim_end_matches('/').to_string();
            }
            if let Some(g) = gate_id {
                state.gate_id = g;
            }
            anyhow::ensure!(
                !state.server.is_empty() && !state.gate_id.is_empty(),
                "first sync: --server and --gate-id"
            );
            let report = state.sync(&http, &key()?, now_ms).await?;
            state.save(&args.state)?;
            println!(
                "{}",
                serde_json::json!({"keys": report.keys, "new_revocations": report.new_revocations, "cursor": report.cursor})
            );
        }
        GateCommand::Scan { station, clock_skew_s, qr } => {
            let verdict = state.scan(&qr, &station, now_ms, clock_skew_s);
            state.save(&args.state)?;
            match verdict {
                Verdict::Accept(p) => {
                    let out = serde_json::json!({"result": "ACCEPTED", "ticket_sn": p.sn, "coach": p.coach, "seat": p.seat, "passenger": p.pax});
                    println!("{out}");
                }
                Verdict::Reject { code, message } => {
                    println!("{}", serde_json::json!({"result": "REFUSED", "code": code, "message": message}));
                    std::process::exit(3);
                }
            }
        }
        GateCommand::Upload => {
            let report = state.upload(&http, &key()?, now_ms).await?;
            state.save(&args.state)?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
