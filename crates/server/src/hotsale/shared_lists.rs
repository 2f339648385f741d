//! The risk lists of a cluster, shared through Redis: an operator's change on any node is a set
//! change in Redis (and this node's lists at once), and every node reads the sets back every
//! [`SYNC_EVERY`], so a block reaches the other nodes within that. One node keeps its lists in
//! memory only (`hotsale::risk`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::hotsale::risk::{ListKind, ListName};

/// How often each node reads the lists back.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Values one list may hold (an operator's list, not a feed).
pub const LIST_LEN_MAX: usize = 100_000;

const LISTS: [(ListKind, ListName); 6] = [
    (ListKind::User, ListName::Block),
    (ListKind::Device, ListName::Block),
    (ListKind::Ip, ListName::Block),
    (ListKind::User, ListName::Allow),
    (ListKind::Device, ListName::Allow),
    (ListKind::Ip, ListName::Allow),
];

pub struct SharedLists {
    conn: ConnectionManager,
    prefix: String,
}

pub type Lists = HashMap<(ListKind, ListName), HashSet<String>>;

impl SharedLists {
    /// Connect to `url`; `prefix` names the cluster's keys.
    pub async fn connect(url: &str, prefix: &str) -> Result<SharedLists, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let conn = ConnectionManager::new(client).await.map_err(|e| e.to_string())?;
        Ok(SharedLists { conn, prefix: prefix.to_string() })
    }

    fn key(&self, kind: ListKind, list: ListName) -> String {
        format!("{}:risk:{list:?}:{kind:?}", self.prefix)
    }

    /// Put `value` on a list or take it off. Refused past [`LIST_LEN_MAX`].
    pub async fn change(&self, kind: ListKind, list: ListName, value: &str, add: bool) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let key = self.key(kind, list);
        if !add {
            return conn.srem::<_, _, ()>(&key, value).await.map_err(|e| e.to_string());
        }
        let len: usize = conn.scard(&key).await.map_err(|e| e.to_string())?;
        if len >= LIST_LEN_MAX {
            return Err(format!("a risk list holds at most {LIST_LEN_MAX} values"));
        }
        conn.sadd::<_, _, ()>(&key, value).await.map_err(|e| e.to_string())
    }

    /// Every list as Redis holds it now.
    pub async fn load(&self) -> Result<Lists, String> {
        let mut conn = self.conn.clone();
        let mut all = Lists::new();
        for (kind, list) in LISTS {
            let values: HashSet<String> = conn.smembers(self.key(kind, list)).await.map_err(|e| e.to_string())?;
            all.insert((kind, list), values);
        }
        Ok(all)
    }
}
