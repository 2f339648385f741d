//! Risk checks in front of the buy path (queue join and order placement).
//!
//! Every request there carries a device fingerprint (`X-Device-Id`, what the client app
//! computes) and comes from an IP. In order:
//! 1. **Lists** (admin endpoints): a blocked user, device or IP is refused; an allowed one
//!    skips the remaining checks (a station's ticket office, a test account).
//! 2. **Token buckets** per user and per device (`risk_rate_per_s`, `risk_burst`): an empty
//!    bucket is 429. A bucket per IP is opt-in (`risk_ip_rate_per_s`, off by default): most
//!    mobile users in China sit behind a carrier NAT, and a campus or an office shares one
//!    address too, so an address says little about a person.
//! 3. **A score** from what the request looks like: no device id, a device used by many
//!    accounts, an IP used by many accounts. At `risk_slow_score` the user joins the waiting
//!    room in the slow lane (admitted later, never starved). Refusing by score is opt-in
//!    (`risk_refuse`, off by default: honest clients without a device id behind a NAT score
//!    high); then at `risk_refuse_score` the request is refused.
//!
//! Every decision is counted in `/metrics` (`chepiao_risk_decisions_total{check, decision}`).
//! The state is per node and in memory (bounded: the account sets per device and IP are
//! capped, and the maps start over when they reach `RISK_KEYS_MAX`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use governor::{Quota, RateLimiter};

/// A token bucket per key. The keys are the client's to choose (device ids, addresses), so the
/// maps hash with a per-process random seed (foldhash: cheaper than std's SipHash, which stood
/// out in the join path's profile, and still seeded against chosen collisions).
pub type KeyedLimiter<K> =
    RateLimiter<K, governor::state::keyed::DefaultKeyedStateStore<K, Hasher>, governor::clock::DefaultClock>;

/// A keyed limiter allowing `per_s` a second with bursts of `burst`.
pub fn keyed_limiter<K: Clone + std::hash::Hash + Eq>(per_s: u32, burst: u32) -> KeyedLimiter<K> {
    let quota = Quota::per_second(NonZeroU32::new(per_s.max(1)).expect("at least 1"))
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
    RateLimiter::dashmap_with_hasher(quota, Hasher::default())
}

/// Distinct keys (devices, IPs) the score remembers before starting over.
pub const RISK_KEYS_MAX: usize = 1_000_000;
/// Accounts remembered per device or IP (more than this is "many" anyway).
const ACCOUNTS_PER_KEY_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    User,
    Device,
    Ip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    Block,
    Allow,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Subject {
    pub user: i64,
    pub device: Option<String>,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Pass,
    /// Admitted later (the slow lane of the waiting room).
    Slow {
        score: u32,
    },
    Refuse {
        reason: &'static str,
    },
    /// A bucket is empty.
    Limited {
        what: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct RiskConfig {
    pub rate_per_s: u32,
    pub burst: u32,
    /// Per-IP bucket rate (the burst is ten seconds of it); 0: no per-IP bucket.
    pub ip_rate_per_s: u32,
    pub slow_score: u32,
    /// Whether a score at `refuse_score` refuses (else it only slows).
    pub refuse: bool,
    pub refuse_score: u32,
}

pub struct Risk {
    config: RiskConfig,
    lists: RwLock<HashMap<(ListKind, ListName), HashSet<String>>>,
    /// Entries on all lists: with none (the usual case), the list checks cost nothing.
    listed_len: AtomicUsize,
    users: KeyedLimiter<i64>,
    devices: KeyedLimiter<String>,
    ips: KeyedLimiter<IpAddr>,
    accounts: Mutex<Accounts>,
    /// Decisions since start, for the operator's live figures: passed, slow lane, refused or
    /// limited.
    decisions: [std::sync::atomic::AtomicU64; 3],
}

/// Risk decisions since start: (passed, moved to the slow lane, refused or limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionCounts {
    pub passed: u64,
    pub slow: u64,
    pub refused: u64,
}

/// Seeded per process, like the buckets' maps (the keys are the client's to choose).
type Hasher = foldhash::quality::RandomState;

#[derive(Default)]
struct Accounts {
    per_device: HashMap<String, HashSet<i64, Hasher>, Hasher>,
    per_ip: HashMap<IpAddr, HashSet<i64, Hasher>, Hasher>,
}

fn count(metric_check: &'static str, decision: &'static str) {
    metrics::counter!("chepiao_risk_decisions_total", "check" => metric_check, "decision" => decision).increment(1);
}

impl Risk {
    pub fn new(config: RiskConfig) -> Risk {
        let (per_s, burst) = (config.rate_per_s, config.burst);
        Risk {
            config,
            lists: RwLock::new(HashMap::new()),
            listed_len: AtomicUsize::new(0),
            users: keyed_limiter(per_s, burst),
            devices: keyed_limiter(per_s, burst),
            ips: keyed_limiter(config.ip_rate_per_s, config.ip_rate_per_s.saturating_mul(10)),
            accounts: Mutex::new(Accounts::default()),
            decisions: Default::default(),
        }
    }

    pub fn list_add(&self, kind: ListKind, list: ListName, value: &str) {
        let mut lists = self.lists.write().expect("never poisoned");
        if lists.entry((kind, list)).or_default().insert(value.to_string()) {
            self.listed_len.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn list_remove(&self, kind: ListKind, list: ListName, value: &str) -> bool {
        let mut lists = self.lists.write().expect("never poisoned");
        let removed = lists.get_mut(&(kind, list)).is_some_and(|s| s.remove(value));
        if removed {
            self.listed_len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Take the lists as a cluster shares them (`hotsale::shared_lists`).
    pub fn replace_lists(&self, all: HashMap<(ListKind, ListName), HashSet<String>>) {
        let mut lists = self.lists.write().expect("never poisoned");
        self.listed_len.store(all.values().map(HashSet::len).sum(), Ordering::Relaxed);
        *lists = all;
    }

    pub fn decisions(&self) -> DecisionCounts {
        let [passed, slow, refused] = self.decisions.each_ref().map(|n| n.load(Ordering::Relaxed));
        DecisionCounts { passed, slow, refused }
    }

    pub fn list(&self, kind: ListKind, list: ListName) -> Vec<String> {
        let mut v: Vec<String> =
            self.lists.read().expect("never poisoned").get(&(kind, list)).into_iter().flatten().cloned().collect();
        v.sort();
        v
    }

    /// Which list, if any, names the subject: its user, device or IP. Block wins over allow.
    fn listed(&self, s: &Subject) -> Option<ListName> {
        if self.listed_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let (user, ip) = (s.user.to_string(), s.ip.to_string());
        let lists = self.lists.read().expect("never poisoned");
        let on = |list| {
            let has = |kind, v: &str| lists.get(&(kind, list)).is_some_and(|set| set.contains(v));
            has(ListKind::User, &user)
                || s.device.as_deref().is_some_and(|d| has(ListKind::Device, d))
                || has(ListKind::Ip, &ip)
        };
        [ListName::Block, ListName::Allow].into_iter().find(|list| on(*list))
    }

    /// Decide, and count the decision under `check` (`join`, `order`).
    pub fn check(&self, check: &'static str, s: &Subject) -> Decision {
        let d = self.decide(s);
        let which = match d {
            Decision::Pass => 0,
            Decision::Slow { .. } => 1,
            Decision::Refuse { .. } | Decision::Limited { .. } => 2,
        };
        self.decisions[which].fetch_add(1, Ordering::Relaxed);
        count(
            check,
            match d {
                Decision::Pass => "pass",
                Decision::Slow { .. } => "slow",
                Decision::Refuse { reason } => reason,
                Decision::Limited { what } => what,
            },
        );
        d
    }

    fn decide(&self, s: &Subject) -> Decision {
        match self.listed(s) {
            Some(ListName::Block) => return Decision::Refuse { reason: "blocked" },
            Some(ListName::Allow) => return Decision::Pass,
            None => {}
        }
        if self.users.check_key(&s.user).is_err() {
            return Decision::Limited { what: "user_rate" };
        }
        if s.device.as_ref().is_some_and(|d| self.devices.check_key(d).is_err()) {
            return Decision::Limited { what: "device_rate" };
        }
        if self.config.ip_rate_per_s > 0 && self.ips.check_key(&s.ip).is_err() {
            return Decision::Limited { what: "ip_rate" };
        }
        let score = self.score(s);
        if self.config.refuse && score >= self.config.refuse_score {
            Decision::Refuse { reason: "score" }
        } else if score >= self.config.slow_score {
            Decision::Slow { score }
        } else {
            Decision::Pass
        }
    }

    /// 0 to 100: no device id 50; a device with more than 3 accounts 40; an IP with more than
    /// 20 accounts 20 (a campus or a carrier NAT has many, so it weighs less).
    fn score(&self, s: &Subject) -> u32 {
        let mut a = self.accounts.lock().expect("never poisoned");
        if a.per_device.len() >= RISK_KEYS_MAX || a.per_ip.len() >= RISK_KEYS_MAX {
            *a = Accounts::default();
        }
        let mut score = 0;
        match &s.device {
            None => score += 50,
            Some(d) => {
                let users = a.per_device.entry(d.clone()).or_default();
                if users.len() < ACCOUNTS_PER_KEY_MAX {
                    users.insert(s.user);
                }
                if users.len() > 3 {
                    score += 40;
                }
            }
        }
        let users = a.per_ip.entry(s.ip).or_default();
        if users.len() < ACCOUNTS_PER_KEY_MAX {
            users.insert(s.user);
        }
        if users.len() > 20 {
            score += 20;
        }
        score.min(100)
    }

    /// Forget rate state of keys idle long enough (called now and then).
    pub fn tidy(&self) {
        self.users.retain_recent();
        self.devices.retain_recent();
        self.ips.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(user: i64, device: Option<&str>) -> Subject {
        Subject { user, device: device.map(String::from), ip: format!("10.0.0.{user}").parse().unwrap() }
    }

    fn risk(burst: u32) -> Risk {
        Risk::new(RiskConfig { rate_per_s: 1, burst, ip_rate_per_s: 1, slow_score: 40, refuse: true, refuse_score: 70 })
    }

    #[test]
    fn buckets_per_user_device_and_ip() {
        let r = risk(2);
        assert_eq!(r.check("t", &subject(1, Some("d1"))), Decision::Pass);
        assert_eq!(r.check("t", &subject(1, Some("d1"))), Decision::Pass);
        assert_eq!(r.check("t", &subject(1, Some("d1"))), Decision::Limited { what: "user_rate" }, "burst of 2");
        assert_eq!(
            r.check("t", &subject(2, Some("d1"))),
            Decision::Limited { what: "device_rate" },
            "the device's bucket is shared by the accounts on it"
        );
        let same_ip = |user| Subject { user, device: Some(format!("p{user}")), ip: "10.9.9.9".parse().unwrap() };
        for u in 10..20 {
            assert_eq!(r.check("t", &same_ip(u)), Decision::Pass, "a burst of ten seconds' worth");
        }
        assert_eq!(r.check("t", &same_ip(20)), Decision::Limited { what: "ip_rate" });
    }

    #[test]
    fn by_default_a_shared_address_without_device_ids_is_never_refused() {
        let r = Risk::new(RiskConfig {
            rate_per_s: 5,
            burst: 20,
            ip_rate_per_s: 0,
            slow_score: 40,
            refuse: false,
            refuse_score: 70,
        });
        let nat = |user| Subject { user, device: None, ip: "100.64.0.1".parse().unwrap() };
        for u in 0..500 {
            let d = r.check("t", &nat(u));
            assert!(matches!(d, Decision::Slow { .. }), "user {u}: {d:?}");
        }
    }

    #[test]
    fn lists_and_score() {
        // No bucket per address here: the score is what is under test.
        let r = Risk::new(RiskConfig { ip_rate_per_s: 0, ..risk(1_000).config });
        assert_eq!(r.check("t", &subject(2, None)), Decision::Slow { score: 50 }, "no device id");
        for u in 3..=5 {
            assert_eq!(r.check("t", &subject(u, Some("shared"))), Decision::Pass);
        }
        assert_eq!(
            r.check("t", &subject(6, Some("shared"))),
            Decision::Slow { score: 40 },
            "a device of many accounts"
        );
        // No device id from an address shared by more than 20 accounts: refused.
        let nat = |user| Subject { user, device: Some(format!("n{user}")), ip: "10.7.7.7".parse().unwrap() };
        for u in 100..121 {
            r.check("t", &nat(u));
        }
        let anonymous = Subject { user: 200, device: None, ip: "10.7.7.7".parse().unwrap() };
        assert_eq!(r.check("t", &anonymous), Decision::Refuse { reason: "score" });
        r.list_add(ListKind::Device, ListName::Block, "d9");
        assert_eq!(r.check("t", &subject(7, Some("d9"))), Decision::Refuse { reason: "blocked" });
        r.list_add(ListKind::User, ListName::Allow, "200");
        assert_eq!(r.check("t", &anonymous), Decision::Pass, "allowed: no bucket, no score");
        assert!(r.list_remove(ListKind::User, ListName::Allow, "200"));
        assert!(!r.list_remove(ListKind::User, ListName::Allow, "200"));
        assert_eq!(r.list(ListKind::Device, ListName::Block), ["d9"]);
    }
}
