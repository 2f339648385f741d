//! Which passenger ids each user has, kept in memory so that placing an order, and issuing its
//! tickets, reads nothing from the database.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chepiao_store::Store;

use crate::error::Result;

/// Which passenger ids each user has, kept in memory so that placing an order reads nothing
/// from the database. Passengers are only ever added, so a cached set is a subset of the truth:
/// ids all found in it are the user's for sure; any id missing sends us to the store (which
/// also picks up passengers added since, on this node or another).
pub struct PassengerCache {
    users: std::sync::Mutex<std::collections::HashMap<i64, std::sync::Arc<Own>>>,
}

/// A user's passengers: their ids, each one's person (the ID number's keyed hash, the same in
/// every account: the overlap rule compares people, not accounts' entries) and each one's masked
/// name and ID number (what a ticket's QR code shows). A passenger is never changed once added,
/// so none of these goes stale.
#[derive(Debug, Default)]
pub struct Own {
    pub ids: HashSet<i64>,
    pub persons: HashMap<i64, Vec<u8>>,
    pub masked: HashMap<i64, String>,
}

/// Users whose passenger ids are cached; the cache starts over when it is full.
pub const PASSENGER_CACHE_USERS_MAX: usize = 1_000_000;

impl Default for PassengerCache {
    fn default() -> Self {
        PassengerCache { users: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

impl PassengerCache {
    /// The user's passenger ids, complete enough to contain `wanted` if they are the user's.
    pub async fn of(&self, store: &dyn Store, user_id: i64, wanted: &[i64]) -> Result<Arc<Own>> {
        let cached = self.users.lock().expect("never poisoned").get(&user_id).cloned();
        if let Some(own) = cached.filter(|own| wanted.iter().all(|p| own.ids.contains(p))) {
            return Ok(own);
        }
        let records = store.passengers(user_id).await?;
        let ids = std::sync::Arc::new(Own {
            ids: records.iter().map(|p| p.id).collect(),
            masked: records.iter().map(|p| (p.id, p.masked.clone())).collect(),
            persons: records.into_iter().map(|p| (p.id, p.id_no_index)).collect(),
        });
        let mut users = self.users.lock().expect("never poisoned");
        if users.len() >= PASSENGER_CACHE_USERS_MAX {
            users.clear();
        }
        users.insert(user_id, ids.clone());
        Ok(ids)
    }
}
