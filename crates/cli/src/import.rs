//! `chepiao import`: parse the network files, show progress, print the warning summary and
//! write the network to the store.

use std::path::Path;

use anyhow::Context;
use chepiao_domain::import::{parse_network, read_dir};
use chepiao_store::Store;
use indicatif::{ProgressBar, ProgressStyle};

/// The network data shipped in the repository (data/rail), built into the binary so that a
/// fresh machine needs nothing else.
const STATIONS_CSV: &[u8] = include_bytes!("../../../data/rail/stations.csv");
const TIMETABLE_CSV: &[u8] = include_bytes!("../../../data/rail/timetable_by_station.csv");

pub async fn import(store: &dyn Store, dir: Option<&Path>, show_progress: bool) -> anyhow::Result<()> {
    let (stations, timetable) = match dir {
        Some(d) => read_dir(d).with_context(|| format!("reading {}", d.display()))?,
        None => (STATIONS_CSV.to_vec(), TIMETABLE_CSV.to_vec()),
    };
    let bar = if show_progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("parsing");
    let (data, report) = parse_network(&stations, &timetable, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.set_message("writing");
    store.save_network(&data).await.context("writing the network to the store")?;
    bar.finish_and_clear();
    let summary = report.summary();
    if show_progress {
        print!("imported into {}: {summary}", store.backend());
    } else {
        tracing::info!(
            stations = report.stations,
            trains = report.trains,
            stops = report.stops,
            warnings = report.warning_count(),
            "network imported"
        );
        for line in summary.lines().skip(1) {
            tracing::warn!("{line}");
        }
    }
    Ok(())
}

/// The bundled network, parsed (no store involved).
pub fn bundled_network() -> anyhow::Result<chepiao_domain::NetworkData> {
    Ok(parse_network(STATIONS_CSV, TIMETABLE_CSV, &mut |_, _| {})?.0)
}
