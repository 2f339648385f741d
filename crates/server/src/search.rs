//! Remaining places (余票) for search: the counts of all the journeys a search found, asked of
//! the seat engine in one call (one message per shard).

use chepiao_domain::network::{Network, TrainIdx};
use chepiao_domain::{RunId, SeatClass, ServiceDate};
use chepiao_engine::{Answer, Engine, Query};
use chepiao_flow::calendar::run_spec;

use crate::http::error::ApiError;

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

/// Remaining places for each journey, in the order asked.
pub async fn remaining(
    network: &Network,
    engine: &Engine,
    journeys: &[JourneyKey],
) -> Result<Vec<ClassCounts>, ApiError> {
    let queries = journeys
        .iter()
        .map(|j| {
            let train = network.train(j.train);
            Query::Remaining {
                run: RunId::new(train.code.clone(), j.run_date),
                spec: run_spec(train),
                from: j.from_stop as u8,
                to: j.to_stop as u8,
            }
        })
        .collect();
    engine
        .query(queries)
        .await?
        .into_iter()
        .map(|a| match a {
            Answer::Remaining(counts) => Ok(counts),
            other => Err(ApiError::internal(format!("engine answered {other:?} to a count"))),
        })
        .collect()
}
