//! Where search gets its remaining-seat counts, and which runs exist.
//!
//! [`Inventory`] is the seam the seat-inventory engine plugs into: search asks for the counts of
//! all the journeys it found in one call, so the engine answers a whole search with one message
//! per shard. [`EngineInventory`] answers from the seat engine.

use std::sync::Arc;

use async_trait::async_trait;
use chepiao_domain::network::{Network, Train, TrainIdx};
use chepiao_domain::{RunId, SeatClass, ServiceDate};
use chepiao_engine::{Answer, Engine, EngineError, Query, RunSpec};
use chepiao_store::{RunStatus, Store};

use crate::error::ApiError;

/// One journey on one run: the train, the run's date and the stop indexes boarded and left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JourneyKey {
    pub train: TrainIdx,
    pub run_date: ServiceDate,
    pub from_stop: u16,
    pub to_stop: u16,
}

/// Remaining places per class, in the API's class order, classes the train has only.
pub type ClassCounts = Vec<(SeatClass, u32)>;

#[async_trait]
pub trait Inventory: Send + Sync + 'static {
    /// Remaining places for each journey, in the order asked.
    async fn remaining(&self, journeys: &[JourneyKey]) -> Result<Vec<ClassCounts>, ApiError>;
}

/// What the engine needs to know of a train's runs.
pub fn run_spec(train: &Train) -> RunSpec {
    RunSpec { train_type: train.train_type(), segments: (train.stops.len() - 1) as u8 }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Busy => ApiError::busy(e.to_string()),
            EngineError::Unavailable(_) => ApiError::unavailable(e.to_string()),
        }
    }
}

/// Remaining places from the seat engine.
pub struct EngineInventory {
    pub network: Arc<Network>,
    pub engine: Arc<Engine>,
}

#[async_trait]
impl Inventory for EngineInventory {
    async fn remaining(&self, journeys: &[JourneyKey]) -> Result<Vec<ClassCounts>, ApiError> {
        let queries = journeys
            .iter()
            .map(|j| {
                let train = self.network.train(j.train);
                Query::Remaining {
                    run: RunId::new(train.code.clone(), j.run_date),
                    spec: run_spec(train),
                    from: j.from_stop as u8,
                    to: j.to_stop as u8,
                }
            })
            .collect();
        self.engine
            .query(queries)
            .await?
            .into_iter()
            .map(|a| match a {
                Answer::Remaining(counts) => Ok(counts),
                other => Err(ApiError::internal(format!("engine answered {other:?} to a count"))),
            })
            .collect()
    }
}

/// Runs days before today that may still be on the way (sleepers run up to three days).
pub const RUNS_EN_ROUTE_DAYS: i64 = 3;

/// Which trains run on which dates, for a window of dates: one bit per train per date.
#[derive(Debug)]
pub struct RunCalendar {
    first: ServiceDate,
    last: ServiceDate,
    /// Today in China time when the calendar was built; the sale window starts here.
    pub today: ServiceDate,
    pub sale_last: ServiceDate,
    words_per_day: usize,
    bits: Vec<u64>,
}

impl RunCalendar {
    /// Make sure runs exist for the sale window, then read the calendar back from the store.
    pub async fn load(
        store: &dyn Store,
        network: &Network,
        today: ServiceDate,
        sale_window_days: u32,
    ) -> chepiao_store::Result<RunCalendar> {
        let first = today.add_days(-RUNS_EN_ROUTE_DAYS);
        let sale_last = today.add_days(i64::from(sale_window_days));
        store.ensure_runs(first, sale_last).await?;
        let runs = store.runs_between(first, sale_last).await?;
        let words_per_day = network.trains().len().div_ceil(64);
        let days = sale_last.days_since(first) as usize + 1;
        let mut cal = RunCalendar {
            first,
            last: sale_last,
            today,
            sale_last,
            words_per_day,
            bits: vec![0; days * words_per_day],
        };
        for r in runs.iter().filter(|r| r.status == RunStatus::Scheduled) {
            if let Some(t) = network.train_idx(&r.run_id.train) {
                let (word, bit) = cal.slot(t, r.run_id.date);
                cal.bits[word] |= bit;
            }
        }
        Ok(cal)
    }

    fn slot(&self, train: TrainIdx, date: ServiceDate) -> (usize, u64) {
        let day = date.days_since(self.first) as usize;
        (day * self.words_per_day + train as usize / 64, 1u64 << (train % 64))
    }

    /// Whether `train` has a scheduled run on `date`.
    pub fn runs(&self, train: TrainIdx, date: ServiceDate) -> bool {
        if date < self.first || date > self.last || train as usize >= self.words_per_day * 64 {
            return false;
        }
        let (word, bit) = self.slot(train, date);
        self.bits[word] & bit != 0
    }

    /// Whether tickets for boarding on `date` are on sale.
    pub fn on_sale(&self, date: ServiceDate) -> bool {
        date >= self.today && date <= self.sale_last
    }
}
