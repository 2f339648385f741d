//! The rail network as stored: stations, trains and their stops, and runs (a train on a date).

use chepiao_domain::network::{Station, Stop, Train};
use chepiao_domain::{NetworkData, RunId, ServiceDate};

use crate::error::{Result, StoreError, parse};

/// Longest date window one `ensure_runs`/`runs_between` call may cover.
pub const RUN_WINDOW_DAYS_MAX: i64 = 366;

/// Whether a run is on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Scheduled,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Cancelled => "CANCELLED",
        }
    }
    pub fn parse(s: &str) -> Option<RunStatus> {
        match s {
            "SCHEDULED" => Some(RunStatus::Scheduled),
            "CANCELLED" => Some(RunStatus::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: RunId,
    pub status: RunStatus,
}

#[async_trait::async_trait]
pub trait NetworkStore: Send + Sync + 'static {
    /// Write the network (stations, trains and their stops) in one transaction. Stations and
    /// trains are upserted by telecode and code; a train's stops are replaced. Re-importing the
    /// same data changes nothing.
    async fn save_network(&self, data: &NetworkData) -> Result<()>;

    /// The stored network; empty when nothing was imported yet.
    async fn load_network(&self) -> Result<NetworkData>;

    /// Make sure every train has a run on every date in `[first, last]`; existing runs (and
    /// their status) are left alone. Returns how many runs were created.
    async fn ensure_runs(&self, first: ServiceDate, last: ServiceDate) -> Result<u64>;

    /// The runs dated within `[first, last]`.
    async fn runs_between(&self, first: ServiceDate, last: ServiceDate) -> Result<Vec<RunRecord>>;

    /// Set a run's status (an operator cancels a run, or puts it back on sale). False when
    /// there is no such run.
    async fn set_run_status(&self, run: &RunId, status: RunStatus) -> Result<bool>;
}

/// Check a date window against [`RUN_WINDOW_DAYS_MAX`].
pub fn check_window(first: ServiceDate, last: ServiceDate) -> Result<()> {
    let days = last.days_since(first);
    if !(0..RUN_WINDOW_DAYS_MAX).contains(&days) {
        return Err(StoreError::Limit(format!("run window {first}..{last} must be 1 to {RUN_WINDOW_DAYS_MAX} days")));
    }
    Ok(())
}

fn unsigned(table: &'static str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt { table, detail: format!("{v} is not a u32") })
}

/// A `stations` row as a backend reads it.
pub struct StationRow<'a> {
    pub telecode: &'a str,
    pub name: String,
    pub pinyin: String,
    pub initials: String,
    pub city: String,
    pub country: Option<String>,
}

impl StationRow<'_> {
    pub fn into_station(self) -> Result<Station> {
        Ok(Station {
            telecode: parse("stations", self.telecode)?,
            name: self.name,
            pinyin: self.pinyin,
            initials: self.initials,
            city: self.city,
            country: self.country,
        })
    }
}

/// A `stops` row as a backend reads it (integers widened to i64).
pub struct StopRow<'a> {
    pub train_code: &'a str,
    pub telecode: &'a str,
    pub arrive_min: Option<i64>,
    pub depart_min: Option<i64>,
    pub km: i64,
}

/// Trains from `stops` rows ordered by (train code, seq): the shared half of `load_network`.
pub fn trains_from_rows<'a>(rows: impl IntoIterator<Item = StopRow<'a>>) -> Result<Vec<Train>> {
    let mut trains: Vec<Train> = Vec::new();
    for r in rows {
        if trains.last().is_none_or(|t| t.code.as_str() != r.train_code) {
            trains.push(Train { code: parse("stops", r.train_code)?, stops: Vec::new() });
        }
        let stop = Stop {
            telecode: parse("stops", r.telecode)?,
            arrive_min: r.arrive_min.map(|m| unsigned("stops", m)).transpose()?,
            depart_min: r.depart_min.map(|m| unsigned("stops", m)).transpose()?,
            km: unsigned("stops", r.km)?,
        };
        trains.last_mut().expect("pushed above").stops.push(stop);
    }
    Ok(trains)
}
