//! The in-memory queue backend (the default; one node). Each sale keeps its waiting users in a
//! BTreeMap by score (admission pops the front) and a Fenwick tree over scores, so a user's
//! position is a prefix count in O(log n) even with 100,000 users polling it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::hotsale::room::{Place, QUEUE_LEN_MAX, QueueBackend, QueueError, score};

/// Counts per score, for ranks. Grows by doubling (rebuilt from the waiting users).
#[derive(Default)]
struct Fenwick(Vec<u32>);

impl Fenwick {
    fn add(&mut self, at: u64, delta: i32) {
        let mut i = at as usize + 1;
        while i <= self.0.len() {
            self.0[i - 1] = self.0[i - 1].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Users with a score below `at`.
    fn below(&self, at: u64) -> u64 {
        let mut i = (at as usize).min(self.0.len());
        let mut sum = 0u64;
        while i > 0 {
            sum += u64::from(self.0[i - 1]);
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

#[derive(Default)]
struct SaleQueue {
    seq: u64,
    waiting: BTreeMap<u64, i64>,
    score_of: HashMap<i64, u64>,
    ranks: Fenwick,
    admitted: HashMap<i64, i64>,
    /// When the admission budget was last spent (None: the clock has not started).
    last_admit_ms: Option<f64>,
}

impl SaleQueue {
    fn insert(&mut self, user: i64, s: u64) {
        if s as usize >= self.ranks.0.len() {
            let mut size = self.ranks.0.len().max(1024);
            while size <= s as usize {
                size *= 2;
            }
            self.ranks = Fenwick(vec![0; size]);
            for &at in self.waiting.keys() {
                self.ranks.add(at, 1);
            }
        }
        self.waiting.insert(s, user);
        self.score_of.insert(user, s);
        self.ranks.add(s, 1);
    }

    fn place(&self, user: i64) -> Option<Place> {
        if let Some(&at_ms) = self.admitted.get(&user) {
            return Some(Place::Admitted { at_ms });
        }
        self.score_of.get(&user).map(|&s| Place::Waiting { position: self.ranks.below(s) })
    }
}

#[derive(Default)]
pub struct MemoryQueue {
    sales: Mutex<HashMap<String, SaleQueue>>,
    /// Spent queue tokens: token id -> (the order's key, until).
    spent: Mutex<HashMap<String, (String, i64)>>,
}

/// Spent tokens remembered at most (a token lives 150 s; expired ones are dropped first).
pub const SPENT_TOKENS_MAX: usize = 1_000_000;

impl MemoryQueue {
    fn with<T>(&self, sale: &str, f: impl FnOnce(&mut SaleQueue) -> T) -> T {
        let mut sales = self.sales.lock().expect("never poisoned");
        // Every join and status poll comes here: the sale's name is copied only the first time.
        if let Some(q) = sales.get_mut(sale) {
            return f(q);
        }
        f(sales.entry(sale.to_string()).or_default())
    }
}

#[async_trait]
impl QueueBackend for MemoryQueue {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn spend(&self, token_id: &str, key: &str, until_ms: i64, now_ms: i64) -> Result<bool, QueueError> {
        let mut spent = self.spent.lock().expect("never poisoned");
        if spent.len() >= SPENT_TOKENS_MAX {
            spent.retain(|_, (_, until)| *until > now_ms);
            if spent.len() >= SPENT_TOKENS_MAX {
                return Err(QueueError::Backend("too many queue tokens spent at once".into()));
            }
        }
        match spent.get(token_id) {
            Some((k, until)) if *until > now_ms => Ok(k == key),
            _ => {
                spent.insert(token_id.to_string(), (key.to_string(), until_ms));
                Ok(true)
            }
        }
    }

    async fn unspend(&self, token_id: &str, key: &str) -> Result<(), QueueError> {
        let mut spent = self.spent.lock().expect("never poisoned");
        if spent.get(token_id).is_some_and(|(k, _)| k == key) {
            spent.remove(token_id);
        }
        Ok(())
    }

    async fn spent(&self, token_id: &str, now_ms: i64) -> Result<bool, QueueError> {
        let spent = self.spent.lock().expect("never poisoned");
        Ok(spent.get(token_id).is_some_and(|(_, until)| *until > now_ms))
    }

    async fn join(&self, sale: &str, user: i64, lane_offset: u64, slow: bool) -> Result<Place, QueueError> {
        Ok(self.with(sale, |q| {
            if let Some(p) = q.place(user) {
                return p;
            }
            if q.waiting.len() as u64 >= QUEUE_LEN_MAX {
                return Place::Full;
            }
            q.seq += 1;
            q.insert(user, score(q.seq, lane_offset, slow));
            q.place(user).expect("just inserted")
        }))
    }

    async fn status(&self, sale: &str, user: i64) -> Result<Option<Place>, QueueError> {
        Ok(self.with(sale, |q| q.place(user)))
    }

    async fn admit(&self, sale: &str, per_s: u32, burst: u32, now_ms: i64) -> Result<Vec<i64>, QueueError> {
        Ok(self.with(sale, |q| {
            let now = now_ms as f64;
            let Some(last) = q.last_admit_ms else {
                q.last_admit_ms = Some(now);
                return Vec::new();
            };
            let interval_ms = 1000.0 / f64::from(per_s);
            let due = ((now - last) / interval_ms).floor().max(0.0) as u64;
            let n = due.min(u64::from(burst));
            if n == 0 {
                return Vec::new();
            }
            q.last_admit_ms = Some(if due > n { now } else { last + n as f64 * interval_ms });
            let mut out = Vec::with_capacity(n as usize);
            while out.len() < n as usize {
                let Some((s, user)) = q.waiting.pop_first() else { break };
                q.ranks.add(s, -1);
                q.score_of.remove(&user);
                q.admitted.insert(user, now_ms);
                out.push(user);
            }
            out
        }))
    }

    async fn forget(&self, sale: &str, user: i64, at_ms: i64) -> Result<(), QueueError> {
        self.with(sale, |q| {
            if q.admitted.get(&user) == Some(&at_ms) {
                q.admitted.remove(&user);
            }
        });
        Ok(())
    }

    async fn waiting(&self, sale: &str) -> Result<u64, QueueError> {
        Ok(self.with(sale, |q| q.waiting.len() as u64))
    }

    async fn admitted(&self, sale: &str) -> Result<u64, QueueError> {
        Ok(self.with(sale, |q| q.admitted.len() as u64))
    }
}
