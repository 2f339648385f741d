//! Which runs exist and which are on sale: the run calendar, rebuilt at each midnight (China
//! time) as the sale window rolls forward.

use chepiao_domain::ServiceDate;
use chepiao_domain::network::{Network, Train, TrainIdx};
use chepiao_engine::RunSpec;
use chepiao_store::{RunStatus, Store};

/// What the engine needs to know of a train's runs.
pub fn run_spec(train: &Train) -> RunSpec {
    RunSpec { train_type: train.train_type(), segments: (train.stops.len() - 1) as u8 }
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
