//! The operator's live figures of this node: orders per second over the last seconds and the
//! runs taking the most orders lately. Counted where orders are created, in memory, bounded;
//! what SQL or the engine already knows (outbox, 余票, holds) is read when asked.

use std::collections::HashMap;
use std::sync::Mutex;

/// Seconds the order rate is averaged over.
pub const RATE_WINDOW_S: i64 = 10;
/// Runs counted per minute; orders on further runs in the same minute are not counted (a
/// minute's orders spread over more runs than this have no "hottest" worth showing).
pub const RUNS_TRACKED_MAX: usize = 50_000;
/// Runs the operator is shown.
pub const HOT_RUNS_SHOWN: usize = 5;

#[derive(Default)]
pub struct Live {
    inner: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Orders per second, by second modulo the ring's length.
    seconds: [(i64, u64); RATE_WINDOW_S as usize + 2],
    /// Orders per run in the current minute and the one before.
    minute: i64,
    runs: HashMap<String, u64>,
    runs_before: HashMap<String, u64>,
}

impl Live {
    /// An order was created on `runs` at `now_ms`.
    pub fn order<'a>(&self, now_ms: i64, runs: impl Iterator<Item = &'a str>) {
        let mut c = self.inner.lock().expect("never poisoned");
        let second = now_ms.div_euclid(1000);
        let slot = &mut c.seconds[second.rem_euclid(RATE_WINDOW_S + 2) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
        let minute = now_ms.div_euclid(60_000);
        if minute != c.minute {
            c.runs_before = if minute == c.minute + 1 { std::mem::take(&mut c.runs) } else { HashMap::new() };
            c.runs.clear();
            c.minute = minute;
        }
        for run in runs {
            if let Some(n) = c.runs.get_mut(run) {
                *n += 1;
            } else if c.runs.len() < RUNS_TRACKED_MAX {
                c.runs.insert(run.to_string(), 1);
            }
        }
    }

    /// Orders a second over the last [`RATE_WINDOW_S`] whole seconds before `now_ms`.
    pub fn orders_per_s(&self, now_ms: i64) -> f64 {
        let c = self.inner.lock().expect("never poisoned");
        let now = now_ms.div_euclid(1000);
        let n: u64 = c.seconds.iter().filter(|(s, _)| (now - RATE_WINDOW_S..now).contains(s)).map(|(_, n)| n).sum();
        n as f64 / RATE_WINDOW_S as f64
    }

    /// The runs with the most orders in this minute and the one before (as of `now_ms`), the
    /// busiest first, at most [`HOT_RUNS_SHOWN`].
    pub fn hottest(&self, now_ms: i64) -> Vec<(String, u64)> {
        let c = self.inner.lock().expect("never poisoned");
        let minute = now_ms.div_euclid(60_000);
        let mut all: HashMap<&str, u64> = HashMap::new();
        let recent = [(c.minute, &c.runs), (c.minute - 1, &c.runs_before)];
        for (m, runs) in recent.into_iter().filter(|(m, _)| minute - m <= 1) {
            debug_assert!(m <= minute);
            for (run, n) in runs {
                *all.entry(run).or_default() += n;
            }
        }
        let mut v: Vec<(String, u64)> = all.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(HOT_RUNS_SHOWN);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_whole_seconds_of_the_window() {
        let live = Live::default();
        for i in 0..50 {
            live.order(100_000 + i * 100, std::iter::empty()); // 10 a second for 5 s
        }
        assert_eq!(live.orders_per_s(105_000), 5.0, "50 orders in the last 10 s");
        assert_eq!(live.orders_per_s(104_500), 4.0, "the current second is not whole yet");
        assert_eq!(live.orders_per_s(200_000), 0.0, "long ago");
    }

    #[test]
    fn hottest_runs_follow_the_last_two_minutes() {
        let live = Live::default();
        for _ in 0..3 {
            live.order(60_000, ["G1-20270101"].into_iter());
        }
        live.order(61_000, ["G3-20270101", "G1-20270101"].into_iter());
        live.order(125_000, ["G3-20270101"].into_iter());
        let hot = live.hottest(125_000);
        assert_eq!(hot, vec![("G1-20270101".to_string(), 4), ("G3-20270101".to_string(), 2)]);
        assert_eq!(live.hottest(185_000), vec![("G3-20270101".to_string(), 1)], "a minute on, G1 is gone");
        assert!(live.hottest(300_000).is_empty());
    }
}
