//! The Redis queue backend (`--redis-url`): several API nodes share one waiting room.
//!
//! Per sale: a sorted set `chepiao:q:{sale}:wait` (user → score), a hash `…:admitted` (user →
//! admission time), a counter `…:seq` and the admission clock `…:clock`. Joining and admitting
//! each read and write several keys, so each is one Lua script (atomic in Redis): two nodes
//! joining one user give it one place, and two nodes admitting at once share one rate budget.
//! The keys of one sale share a hash tag (`{sale}`), so they stay together on a cluster.

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::hotsale::room::{Place, QUEUE_LEN_MAX, QueueBackend, QueueError};

const JOIN: &str = r"
local at = redis.call('HGET', KEYS[2], ARGV[1])
if at then return {1, tonumber(at)} end
local r = redis.call('ZRANK', KEYS[1], ARGV[1])
if r then return {0, r} end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {2, 0} end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], (seq + tonumber(ARGV[2])) * 2 + tonumber(ARGV[3]), ARGV[1])
return {0, redis.call('ZRANK', KEYS[1], ARGV[1])}
";

const ADMIT: &str = r"
local now = tonumber(ARGV[1])
local interval = 1000 / tonumber(ARGV[2])
local last = redis.call('GET', KEYS[3])
if not last then
  redis.call('SET', KEYS[3], ARGV[1])
  return {}
end
last = tonumber(last)
local due = math.floor((now - last) / interval)
if due < 0 then due = 0 end
local n = math.min(due, tonumber(ARGV[3]))
if n == 0 then return {} end
if due > n then redis.call('SET', KEYS[3], ARGV[1]) else redis.call('SET', KEYS[3], tostring(last + n * interval)) end
local popped = redis.call('ZPOPMIN', KEYS[1], n)
local users = {}
for i = 1, #popped, 2 do
  redis.call('HSET', KEYS[2], popped[i], ARGV[1])
  users[#users + 1] = popped[i]
end
return users
";

/// Forget an admission only if it is the one made at ARGV[2] (a newer one stays).
const FORGET: &str = r"
local at = redis.call('HGET', KEYS[1], ARGV[1])
if at and tonumber(at) == tonumber(ARGV[2]) then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
";

pub struct RedisQueue {
    conn: ConnectionManager,
    join: redis::Script,
    admit: redis::Script,
    forget: redis::Script,
    prefix: String,
}

fn err(e: redis::RedisError) -> QueueError {
    QueueError::Backend(e.to_string())
}

impl RedisQueue {
    /// Connect to `url`; `prefix` namespaces the keys (tests use one per test).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisQueue, QueueError> {
        let client = redis::Client::open(url).map_err(err)?;
        let conn = ConnectionManager::new(client).await.map_err(err)?;
        Ok(RedisQueue {
            conn,
            join: redis::Script::new(JOIN),
            admit: redis::Script::new(ADMIT),
            forget: redis::Script::new(FORGET),
            prefix: prefix.into(),
        })
    }

    /// Where a spent token records the order it admitted (until the token's expiry).
    fn spent_key(&self, token_id: &str) -> String {
        format!("{}:spent:{token_id}", self.prefix)
    }

    fn keys(&self, sale: &str) -> [String; 4] {
        let base = format!("{}:q:{{{sale}}}", self.prefix);
        [format!("{base}:wait"), format!("{base}:admitted"), format!("{base}:seq"), format!("{base}:clock")]
    }
}

#[async_trait]
impl QueueBackend for RedisQueue {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn spend(&self, token_id: &str, key: &str, until_ms: i64, now_ms: i64) -> Result<bool, QueueError> {
        let k = self.spent_key(token_id);
        let ttl_ms = (until_ms - now_ms).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(key)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        if set.is_some() {
            return Ok(true);
        }
        let holder: Option<String> =
            redis::cmd("GET").arg(&k).query_async(&mut self.conn.clone()).await.map_err(err)?;
        Ok(holder.as_deref() == Some(key))
    }

    async fn unspend(&self, token_id: &str, key: &str) -> Result<(), QueueError> {
        let k = self.spent_key(token_id);
        let _: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(&k)
        .arg(key)
        .invoke_async(&mut self.conn.clone())
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn spent(&self, token_id: &str, _now_ms: i64) -> Result<bool, QueueError> {
        // The key expires with the token (`PX` in `spend`).
        let k = self.spent_key(token_id);
        let n: i64 = redis::cmd("EXISTS").arg(&k).query_async(&mut self.conn.clone()).await.map_err(err)?;
        Ok(n == 1)
    }

    async fn join(&self, sale: &str, user: i64, lane_offset: u64, slow: bool) -> Result<Place, QueueError> {
        let [wait, admitted, seq, _] = self.keys(sale);
        let (kind, value): (i64, i64) = self
            .join
            .key(wait)
            .key(admitted)
            .key(seq)
            .arg(user)
            .arg(lane_offset)
            .arg(u8::from(slow))
            .arg(QUEUE_LEN_MAX)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(match kind {
            0 => Place::Waiting { position: value as u64 },
            1 => Place::Admitted { at_ms: value },
            _ => Place::Full,
        })
    }

    async fn status(&self, sale: &str, user: i64) -> Result<Option<Place>, QueueError> {
        let [wait, admitted, _, _] = self.keys(sale);
        let (at, rank): (Option<i64>, Option<u64>) = redis::pipe()
            .hget(admitted, user)
            .zrank(wait, user)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(match (at, rank) {
            (Some(at_ms), _) => Some(Place::Admitted { at_ms }),
            (None, Some(position)) => Some(Place::Waiting { position }),
            (None, None) => None,
        })
    }

    async fn admit(&self, sale: &str, per_s: u32, burst: u32, now_ms: i64) -> Result<Vec<i64>, QueueError> {
        let [wait, admitted, _, clock] = self.keys(sale);
        self.admit
            .key(wait)
            .key(admitted)
            .key(clock)
            .arg(now_ms)
            .arg(per_s.max(1))
            .arg(burst)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)
    }

    async fn forget(&self, sale: &str, user: i64, at_ms: i64) -> Result<(), QueueError> {
        let [_, admitted, _, _] = self.keys(sale);
        self.forget
            .key(admitted)
            .arg(user)
            .arg(at_ms)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(err)
    }

    async fn waiting(&self, sale: &str) -> Result<u64, QueueError> {
        let [wait, _, _, _] = self.keys(sale);
        redis::cmd("ZCARD").arg(wait).query_async(&mut self.conn.clone()).await.map_err(err)
    }

    async fn admitted(&self, sale: &str) -> Result<u64, QueueError> {
        let [_, admitted, _, _] = self.keys(sale);
        redis::cmd("HLEN").arg(admitted).query_async(&mut self.conn.clone()).await.map_err(err)
    }
}
