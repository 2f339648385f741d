//! Risk checks in front of the buy path (queue join and order placement).
//!
//! Every request there carries a device fingerprint (`X-Device-Id`, what the client app
//! computes) and comes from an IP. In order:
//! 1. **Lists** (admin endpoints): a blocked user, device or IP is refused; an allowed one
//!    skips the remaining checks (a station's ticket office, a test account).
//! 2. **Token buckets** per user, per device and per IP (`risk_rate_per_s`, `risk_burst`): an
//!    empty bucket is 429.
//! 3. **A score** from what the request looks like: no device id, a device used by many
//!    accounts, an IP used by many accounts. At `risk_slow_score` the user joins the waiting
//!    room in the slow lane (admitted later); at `risk_refuse_score` the request is refused.
//!
//! Every decision is counted in `/metrics` (`chepiao_risk_decisions_total{check, decision}`).
//! The state is per node and in memory (bounded: the account sets per device and IP are
//! capped, and the maps start over when they reach `RISK_KEYS_MAX`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Distinct keys (devices, IPs) the score remembers before starting over.
pub const RISK_KEYS_MAX: usize = 1_000_000;
/// Accounts remembered per device or IP (more than this is "many" anyway).
const ACCOUNTS_PER_KEY_MAX: usize = 64;
/// Longest device id accepted.
pub const DEVICE_ID_LEN_MAX: usize = 128;

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
    pub slow_score: u32,
    pub refuse_score: u32,
}

pub struct Risk {
    config: RiskConfig,
    lists: Mutex<HashMap<(ListKind, ListName), HashSet<String>>>,
    users: DefaultKeyedRateLimiter<i64>,
    devices: DefaultKeyedRateLimiter<String>,
    ips: DefaultKeyedRateLimiter<IpAddr>,
    accounts: Mutex<Accounts>,
}

#[derive(Default)]
struct Accounts {
    per_device: HashMap<String, HashSet<i64>>,
    per_ip: HashMap<IpAddr, HashSet<i64>>,
}

fn count(metric_check: &'static str, decision: &'static str) {
    metrics::counter!("chepiao_risk_decisions_total", "check" => metric_check, "decision" => decision).increment(1);
}

impl Risk {
    pub fn new(config: RiskConfig) -> Risk {
        let quota = Quota::per_second(NonZeroU32::new(config.rate_per_s.max(1)).expect("at least 1"))
            .allow_burst(NonZeroU32::new(config.burst.max(1)).expect("at least 1"));
        Risk {
            config,
            lists: Mutex::new(HashMap::new()),
            users: RateLimiter::keyed(quota),
            devices: RateLimiter::keyed(quota),
            ips: RateLimiter::keyed(quota),
            accounts: Mutex::new(Accounts::default()),
        }
    }

    pub fn list_add(&self, kind: ListKind, list: ListName, value: &str) {
        self.lists.lock().expect("never poisoned").entry((kind, list)).or_default().insert(value.to_string());
    }

    pub fn list_remove(&self, kind: ListKind, list: ListName, value: &str) -> bool {
        self.lists.lock().expect("never poisoned").get_mut(&(kind, list)).is_some_and(|s| s.remove(value))
    }

    pub fn list(&self, kind: ListKind, list: ListName) -> Vec<String> {
        let mut v: Vec<String> =
            self.lists.lock().expect("never poisoned").get(&(kind, list)).into_iter().flatten().cloned().collect();
        v.sort();
        v
    }

    fn listed(&self, s: &Subject, list: ListName) -> bool {
        let lists = self.lists.lock().expect("never poisoned");
        let has = |kind, v: &str| lists.get(&(kind, list)).is_some_and(|set| set.contains(v));
        has(ListKind::User, &s.user.to_string())
            || s.device.as_deref().is_some_and(|d| has(ListKind::Device, d))
            || has(ListKind::Ip, &s.ip.to_string())
    }

    /// Decide, and count the decision under `check` (`join`, `order`).
    pub fn check(&self, check: &'static str, s: &Subject) -> Decision {
        let d = self.decide(s);
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
        if self.listed(s, ListName::Block) {
            return Decision::Refuse { reason: "blocked" };
        }
        if self.listed(s, ListName::Allow) {
            return Decision::Pass;
        }
        if self.users.check_key(&s.user).is_err() {
            return Decision::Limited { what: "user_rate" };
        }
        if s.device.as_ref().is_some_and(|d| self.devices.check_key(d).is_err()) {
            return Decision::Limited { what: "device_rate" };
        }
        if self.ips.check_key(&s.ip).is_err() {
            return Decision::Limited { what: "ip_rate" };
        }
        let score = self.score(s);
        if score >= self.config.refuse_score {
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
        Risk::new(RiskConfig { rate_per_s: 1, burst, slow_score: 40, refuse_score: 70 })
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
        assert_eq!(r.check("t", &same_ip(10)), Decision::Pass);
        assert_eq!(r.check("t", &same_ip(11)), Decision::Pass);
        assert_eq!(r.check("t", &same_ip(12)), Decision::Limited { what: "ip_rate" });
    }

    #[test]
    fn lists_and_score() {
        let r = risk(1_000);
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
