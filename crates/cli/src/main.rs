//! The `chepiao` binary: the one place where configuration is merged, stores are opened by
//! URL and the server is launched, and the home of the commands that drive a server from
//! outside. The sale itself lives in the library crates; this crate owns:
//! - this file: the command line (clap), turning errors into exit codes (anyhow at the edge);
//! - [`config`]: the configuration loader, defaults < file < `CHEPIAO_*` environment < flags,
//!   the only reader of the server's environment variables;
//! - [`import`]: `chepiao import`, the rail network from its CSV files into the store;
//! - [`load`]: `chepiao load`, virtual users buying over HTTP through `chepiao_api::Client`
//!   (orders, purchases, the rush through a waiting room, the soak, people behind one NAT),
//!   then an invariant audit of the store;
//! - [`bench`]: `chepiao bench`, the benchmark programs whose figures are in
//!   docs/BENCHMARKS.md (engine, allocation, store, a sale day, statistics, a hello-world);
//! - [`gate`]: `chepiao gate`, an offline check-in gate's commands over
//!   `chepiao_api::gate`.

mod bench;
mod config;
mod gate;
mod import;
mod load;

use anyhow::Context;
use chepiao_server::App;
use chepiao_server::config::LogFormat;
use clap::{Parser, Subcommand};

/// mimalloc: the search path allocates many small strings; glibc malloc showed up at ~15% of
/// its profile (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turn transparent huge pages off for this process. mimalloc asks for them, and the kernel then
/// zeroes two megabytes at the first touch of each: measured in `chepiao bench day`, 77% of the
/// shard thread's samples inside its slow batches (10 to 40 ms on a core) were that zeroing
/// (`clear_page_erms`), against 0.7% over the whole run. With small pages the same zeroing is
/// spread over the day in 4 KiB steps (docs/BENCHMARKS.md).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and three zero arguments; it only sets a
    // flag on this process's memory map and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[derive(Parser)]
#[command(name = "chepiao", version, about = "chepiao (车票): train ticketing for the Spring Festival rush")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (imports the bundled rail network on first start).
    Serve(config::Flags),
    /// Load the rail network (stations and timetables) into the store.
    Import {
        #[command(flatten)]
        flags: config::Flags,
        /// Folder with stations.csv and timetable_by_station.csv; default: the copy built into
        /// this binary (the repository's data/rail).
        #[arg(long)]
        data: Option<std::path::PathBuf>,
    },
    /// Benchmark programs (figures for docs/BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Virtual users buying tickets from a running server, then an invariant audit.
    Load(load::args::LoadArgs),
    /// Checks of the append-only audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// An offline check-in gate: sync keys and revocations, scan with no network, upload.
    Gate(gate::GateArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the audit log's hash chain; exit 1 naming the first entry that was changed,
    /// removed or reordered.
    Verify(config::Flags),
}

/// Page through the audit log checking the chain.
async fn audit_verify(flags: config::Flags) -> anyhow::Result<()> {
    let config = config::load(&flags)?;
    let store = config::open_store(&config).await?;
    let check = chepiao_flow::audit::verify_log(store.as_ref(), 0, u64::MAX).await?;
    if let Some(problem) = check.problem {
        anyhow::bail!("audit log broken: {problem}");
    }
    println!("audit log intact: {} entries, up to entry {}", check.entries, check.last_seq);
    Ok(())
}

/// What the server and the importer log unless `RUST_LOG` says otherwise.
const SERVER_LOG_FILTER: &str = "info,sqlx=warn";

/// Logs to stderr, filtered by `RUST_LOG`, else by `default_filter`.
fn init_logs(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(flags: config::Flags) -> anyhow::Result<()> {
    let config = config::load(&flags)?;
    init_logs(config.log_format, SERVER_LOG_FILTER);
    let store = config::open_store(&config).await?;
    if store.load_network().await?.trains.is_empty() {
        tracing::info!("no rail network in the store yet: importing the bundled one");
        import::import(store.as_ref(), None, false).await?;
    }
    let listen = config.listen;
    let app = App::build(store.clone(), config).await?;
    // Bound only once the node is built (a cluster node has caught up with the engine's log):
    // a load balancer's connections are refused until then, never left waiting unanswered.
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(backend = store.backend(), trains = app.state().flow.network.trains().len(), "ready");
    // Listen for SIGTERM before saying where we serve: a signal sent on reading that line drains.
    let shutdown = shutdown_signal()?;
    println!("chepiao is serving at http://{addr}/  (API description: http://{addr}/openapi.json)");
    app.serve(listener, shutdown).await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// A future that resolves on SIGTERM or Ctrl-C; the signal handlers are in place on return.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        let term = term.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
        tracing::info!("shutdown signal received: draining in-flight requests");
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    match Cli::parse().command {
        Command::Serve(flags) => serve(flags).await,
        Command::Import { flags, data } => {
            let config = config::load(&flags)?;
            init_logs(config.log_format, SERVER_LOG_FILTER);
            let store = config::open_store(&config).await?;
            import::import(store.as_ref(), data.as_deref(), true).await
        }
        Command::Load(args) => {
            let network = chepiao_domain::Network::new(import::bundled_network()?);
            load::run(args, network).await
        }
        Command::Audit(AuditCommand::Verify(flags)) => audit_verify(flags).await,
        Command::Gate(args) => gate::run(args).await,
        Command::Bench(b) => {
            // Warnings only: a benchmark's own figures go to stdout; the engine's slow-batch
            // warnings (what a slow batch held) go to stderr beside them.
            init_logs(LogFormat::Text, "warn");
            let network = chepiao_domain::Network::new(import::bundled_network()?);
            tokio::task::spawn_blocking(move || bench::run(b, network)).await?
        }
    }
}
