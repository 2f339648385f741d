//! Remaining places (余票) for search: the counts of all the journeys a search found, asked of
//! the seat engine in one call (one message per shard); and the answers kept for the next asker.
//!
//! Searches outnumber purchases a hundred to one, and most ask the same few journeys. A search's
//! whole answer is kept (the JSON as sent) under its stations and date, with the engine's
//! version at the time ([`Engine::version`]). The next search of the same journey gets it back
//! when nothing in the engine changed since (exact), or when it is younger than `stale_ms`
//! (during a sale, when every millisecond changes something: 余票 a moment old, as 12306 shows
//! it; whether seats are really left is decided by the engine when the order is placed).

use axum::body::Bytes;
use chepiao_domain::network::{Network, TrainIdx};
use chepiao_domain::{RunId, SeatClass, ServiceDate, Telecode};
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

/// What a search asked: boarding and alighting station (as asked: a city's namesake code
/// stands for its stations) and the boarding date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SearchKey {
    pub from: Telecode,
    pub to: Telecode,
    pub date: ServiceDate,
}

#[derive(Clone)]
struct Kept {
    body: Bytes,
    version: u64,
    made_at_ms: i64,
}

/// An answer's weight is its size: the cache is bounded in bytes.
#[derive(Clone)]
struct BySize;

impl quick_cache::Weighter<SearchKey, Kept> for BySize {
    fn weight(&self, _key: &SearchKey, kept: &Kept) -> u64 {
        kept.body.len() as u64 + KEPT_OVERHEAD_BYTES
    }
}

/// Bookkeeping per kept answer besides its body, bytes (key, version, the cache's own entry).
const KEPT_OVERHEAD_BYTES: u64 = 96;
/// A typical answer, bytes: sizes the cache's table for `bytes_max / this` entries.
const KEPT_TYPICAL_BYTES: u64 = 8 * 1024;

/// Search answers kept for the next asker, bounded in bytes (least recently and least often
/// asked go first: quick_cache's CLOCK-Pro).
pub struct SearchCache {
    kept: Option<quick_cache::sync::Cache<SearchKey, Kept, BySize>>,
    stale_ms: i64,
}

impl SearchCache {
    /// Keep at most `bytes_max` bytes of answers (0: keep none), and give an answer back for up
    /// to `stale_ms` after it was made even if the engine changed since.
    pub fn new(bytes_max: u64, stale_ms: u64) -> SearchCache {
        let kept = (bytes_max > 0).then(|| {
            let items = (bytes_max / KEPT_TYPICAL_BYTES).max(1) as usize;
            quick_cache::sync::Cache::with_weighter(items, bytes_max, BySize)
        });
        SearchCache { kept, stale_ms: stale_ms.min(i64::MAX as u64) as i64 }
    }

    /// The kept answer to `key` if it is still good at engine `version` and time `now_ms`.
    pub fn get(&self, key: &SearchKey, version: u64, now_ms: i64) -> Option<Bytes> {
        let kept = self.kept.as_ref()?.get(key)?;
        let good = kept.version == version || now_ms.saturating_sub(kept.made_at_ms) < self.stale_ms;
        good.then_some(kept.body)
    }

    /// Keep `body`, the answer to `key` computed at engine `version` (read before asking the
    /// engine) and time `now_ms`.
    pub fn put(&self, key: SearchKey, body: Bytes, version: u64, now_ms: i64) {
        if let Some(cache) = &self.kept {
            cache.insert(key, Kept { body, version, made_at_ms: now_ms });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(date: &str) -> SearchKey {
        SearchKey { from: "VNP".parse().unwrap(), to: "AOH".parse().unwrap(), date: date.parse().unwrap() }
    }

    #[test]
    fn an_answer_is_good_while_the_engine_is_unchanged_or_for_stale_ms() {
        let cache = SearchCache::new(1 << 20, 1_000);
        cache.put(key("2026-02-01"), Bytes::from_static(b"[1]"), 7, 10_000);
        assert_eq!(cache.get(&key("2026-02-01"), 7, 99_999).as_deref(), Some(&b"[1]"[..]), "unchanged engine");
        assert_eq!(cache.get(&key("2026-02-01"), 8, 10_999).as_deref(), Some(&b"[1]"[..]), "changed, young");
        assert_eq!(cache.get(&key("2026-02-01"), 8, 11_000), None, "changed and old");
        assert_eq!(cache.get(&key("2026-02-02"), 7, 10_000), None, "another date");
    }

    #[test]
    fn the_cache_holds_no_more_bytes_than_its_limit_and_none_when_off() {
        let cache = SearchCache::new(64 * 1024, 0);
        for day in 1..=28 {
            let body = Bytes::from(vec![b'x'; 8 * 1024]);
            cache.put(key(&format!("2026-02-{day:02}")), body, 1, 0);
        }
        let kept = (1..=28).filter(|d| cache.get(&key(&format!("2026-02-{d:02}")), 1, 0).is_some()).count();
        assert!(kept > 0 && kept < 8, "{kept} answers of 8 KiB kept in 64 KiB");
        let off = SearchCache::new(0, 1_000);
        off.put(key("2026-02-01"), Bytes::from_static(b"[]"), 1, 0);
        assert_eq!(off.get(&key("2026-02-01"), 1, 0), None);
    }
}
