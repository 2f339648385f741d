//! Server configuration. Sources, later ones winning: built-in defaults, a TOML file
//! (`--config`), `CHEPIAO_*` environment variables, command-line flags. The binary does the
//! merging (and is the only reader of the environment); this module owns the shape, the
//! defaults and the checks.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use chepiao_flow::FeeTier;
use chepiao_flow::FlowConfig;
use serde::{Deserialize, Serialize};

use crate::hotsale::room::{Sale, SaleConfig};
use crate::security::secrets::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded stores keep their files (SQLite database, later the engine's log).
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL, `sqlite://...` for another SQLite file; unset: SQLite
    /// under `data_dir`.
    pub database_url: Option<String>,
    /// Seat-engine shards (threads, each with its own log under `data_dir/engine`).
    pub engine_shards: u8,
    /// Commands between two snapshots of a shard (taken off the shard's thread).
    pub engine_snapshot_every_ops: u64,
    /// This node is one of several selling one inventory (docs/CLUSTER.md): the seat engine's
    /// log is a NATS JetStream stream per shard at `nats_url`, and this node a replica of it.
    /// Needs PostgreSQL (`database_url`) and Redis (`redis_url`), shared by every node.
    pub cluster: bool,
    /// Copies NATS keeps of the engine's log, the snapshots and the events (3: any one NATS
    /// server may be lost; 1 for a single NATS server in development).
    pub cluster_replicas: u8,
    /// Name prefix of the engine's streams (`<prefix>_<shard>`) and snapshot bucket.
    pub engine_stream: String,
    /// Bytes one shard's log may hold in NATS (and the snapshot bucket in all); past it orders
    /// are refused, never entries lost. NATS reserves it on every server up front.
    pub engine_log_bytes_max: u64,
    /// Days after today that are on sale (12306 sells 15 days: today + 14).
    pub sale_window_days: u32,
    /// Largest request body accepted, bytes.
    pub body_len_max: usize,
    /// Longest a request may take before the server answers 503, ms.
    pub request_timeout_ms: u64,
    pub log_format: LogFormat,
    /// HS256 key for login tokens, base64 of 32 bytes; unset: `data_dir/secrets/jwt.key`.
    pub jwt_secret: Option<Secret>,
    /// Key for passenger PII at rest, base64 of 32 bytes; unset: `data_dir/secrets/pii.key`.
    pub pii_key: Option<Secret>,
    /// How long a login token lives, seconds.
    pub token_ttl_s: u64,
    /// How long an order waits for payment before it expires and its seats go back, seconds.
    pub pay_window_s: u64,
    /// How much longer than the pay window the engine keeps a hold, so that a payment taken
    /// at the last second can still be confirmed, seconds.
    pub hold_grace_s: u64,
    /// The earliest waitlist deadline accepted, seconds from now (a wish must have a chance).
    pub wish_deadline_min_s: u64,
    /// `nats://host:port` to carry outbox events over NATS JetStream; unset: in-process.
    pub nats_url: Option<String>,
    /// JetStream stream (and subject prefix) for the events.
    pub nats_stream: String,
    /// HMAC key the `mockpay` channel signs its notifies with (any string). Unset: a key file.
    pub mockpay_secret: Option<Secret>,
    /// Ed25519 seed for ticket QR signatures, base64 of 32 bytes; unset: a key file.
    pub ticket_key: Option<Secret>,
    /// Public keys (base64) of retired ticket keys, still published for gates.
    pub ticket_keys_retired: Vec<String>,
    /// Base URL the payment pages are reached at (`http://host:port`); unset: from the
    /// request's Host header.
    pub public_url: Option<String>,
    /// Start with the outbox relay paused: payments still commit and queue in the outbox, and
    /// nothing is published until an operator resumes it (event-bus maintenance).
    pub relay_paused: bool,
    /// Gates allowed to check tickets in: `gate_id=secret` each (the binary adds the entries of
    /// `CHEPIAO_GATE_KEYS="g1=s1,g2=s2"` in the environment).
    pub gates: Vec<Secret>,
    /// How long before departure a ticket's code becomes valid, seconds.
    pub ticket_valid_before_s: u64,
    /// Refund fees by time before departure: the first tier whose `hours_before` the time
    /// left reaches applies (12306's: 8 days and more free, 48 h 5%, 24 h 10%, less 20%).
    pub refund_fee_tiers: Vec<FeeTier>,
    /// `redis://host:port` for the waiting room shared by several nodes; unset: in memory.
    pub redis_url: Option<String>,
    /// Sales with a waiting room: `[[sales]] sale_id, opens_at, run_ids, admit_per_s`.
    pub sales: Vec<SaleConfig>,
    /// How long a queue token lets an admitted user buy, seconds (120 to 180).
    pub queue_token_ttl_s: u64,
    /// HMAC key of queue tokens, base64 of 32 bytes; unset: a key file (every node of one
    /// deployment needs the same).
    pub queue_secret: Option<Secret>,
    /// Places a slow-lane joiner is put behind.
    pub slow_lane_offset: u64,
    /// Token buckets per user, device and IP on the buy path: rate and burst.
    pub risk_rate_per_s: u32,
    pub risk_burst: u32,
    /// Risk score (0-100) that sends a joiner to the slow lane, and that refuses a request.
    pub risk_slow_score: u32,
    pub risk_refuse_score: u32,
    /// Secret of the admin endpoints (`X-Admin-Key`); unset: the admin endpoints answer 401.
    pub admin_key: Option<Secret>,
    /// Requests served at once; beyond it, 503 with `Retry-After` before any work.
    pub concurrency_max: usize,
    /// Requests per second per client IP (and burst) before 429.
    pub ip_rate_per_s: u32,
    pub ip_burst: u32,
    /// Time limit of the buy path (orders, payments, queue), ms; tighter than `request_timeout_ms`.
    pub buy_timeout_ms: u64,
    /// Attempts after which a failing outbox event is DEAD (listed for an operator to retry).
    pub event_attempts_max: u32,
    /// The wait after an event's first failure, ms; it doubles per attempt up to
    /// `event_backoff_ms_max`.
    pub event_backoff_ms_min: u64,
    pub event_backoff_ms_max: u64,
    /// How long an event handed to the bus waits for its outcome before it is handed again, s.
    pub event_redeliver_after_s: u64,
    /// Engine holds older than this that no order carries (a crash between hold and order) are
    /// released, seconds; longer than any order placement takes.
    pub reconcile_after_s: u64,
    /// Per-IP bucket on the buy path, requests a second (burst: ten seconds' worth); 0: none.
    /// Off by default: one carrier NAT or campus address carries many honest buyers.
    pub risk_ip_rate_per_s: u32,
    /// Refuse at `risk_refuse_score` (else a high score only sends the buyer to a sale's slow
    /// lane). Off by default.
    pub risk_refuse: bool,
    /// 12306's purchase rules: one unpaid order per user; no passenger on two trips at once; at
    /// most this many cancellations a day (0: no limit); a ticket rebooked once.
    pub rule_one_unpaid_order: bool,
    pub rule_no_overlapping_trips: bool,
    pub rule_cancellations_per_day_max: u32,
    pub rule_one_rebook_per_ticket: bool,
    /// A queue token admits one order (its retries still answer; a sold-out answer gives it
    /// back), not every order for its lifetime.
    pub queue_token_single_use: bool,
    /// The `mockpay` development channel; unset: on with the embedded SQLite store, off with
    /// PostgreSQL (a production database wants real channels only).
    pub mockpay: Option<bool>,
    /// Proxies whose `X-Real-IP` is believed (addresses or CIDR blocks); empty: the peer's
    /// address is the client's.
    pub trusted_proxies: Vec<String>,
    /// Server-Sent Events streams open at once (each user has one per sale).
    pub sse_streams_max: usize,
    /// Bytes of search answers kept for the next asker of the same journey and date (0: none).
    pub search_cache_bytes_max: u64,
    /// How long a kept search answer is given again after the engine changed, ms: during a
    /// sale 余票 may be this old (the order itself is decided by the engine). 0: only while
    /// nothing changed (every search after a sale sees it).
    pub search_stale_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("var"),
            database_url: None,
            engine_shards: 1,
            engine_snapshot_every_ops: 250_000,
            cluster: false,
            cluster_replicas: 3,
            engine_stream: "CHEPIAO_ENGINE".into(),
            engine_log_bytes_max: 64 << 30,
            sale_window_days: 14,
            body_len_max: 64 * 1024,
            request_timeout_ms: 10_000,
            log_format: LogFormat::Text,
            jwt_secret: None,
            pii_key: None,
            token_ttl_s: 2 * 3600,
            pay_window_s: 600,
            hold_grace_s: 900,
            redis_url: None,
            sales: Vec::new(),
            queue_token_ttl_s: 150,
            queue_secret: None,
            slow_lane_offset: 1_000,
            risk_rate_per_s: 5,
            risk_burst: 20,
            risk_slow_score: 40,
            risk_refuse_score: 70,
            admin_key: None,
            concurrency_max: 2_048,
            ip_rate_per_s: 1_000,
            ip_burst: 2_000,
            buy_timeout_ms: 3_000,
            wish_deadline_min_s: 60,
            nats_url: None,
            nats_stream: "CHEPIAO".into(),
            mockpay_secret: None,
            ticket_key: None,
            ticket_keys_retired: Vec::new(),
            public_url: None,
            relay_paused: false,
            gates: Vec::new(),
            ticket_valid_before_s: 24 * 3600,
            refund_fee_tiers: chepiao_flow::default_fee_tiers(),
            event_attempts_max: 10,
            event_backoff_ms_min: 1_000,
            event_backoff_ms_max: 300_000,
            event_redeliver_after_s: 300,
            reconcile_after_s: 60,
            risk_ip_rate_per_s: 0,
            risk_refuse: false,
            rule_one_unpaid_order: true,
            rule_no_overlapping_trips: true,
            rule_cancellations_per_day_max: 3,
            rule_one_rebook_per_ticket: true,
            queue_token_single_use: true,
            mockpay: None,
            trusted_proxies: Vec::new(),
            sse_streams_max: 10_000,
            search_cache_bytes_max: 64 * 1024 * 1024,
            search_stale_ms: 1_000,
        }
    }
}

/// Limits on configuration values.
pub const SECRET_LEN_MIN: usize = 16;
pub const SALE_WINDOW_DAYS_MAX: u32 = 60;
pub const ENGINE_SHARDS_MAX: u8 = 64;
pub const BODY_LEN_MAX_MAX: usize = 16 * 1024 * 1024;

impl Config {
    /// Every key, as the file and `CHEPIAO_<KEY>` spell it.
    pub const KEYS: &'static [&'static str] = &[
        "listen",
        "data_dir",
        "database_url",
        "engine_shards",
        "engine_snapshot_every_ops",
        "cluster",
        "cluster_replicas",
        "engine_stream",
        "engine_log_bytes_max",
        "sale_window_days",
        "body_len_max",
        "request_timeout_ms",
        "log_format",
        "jwt_secret",
        "pii_key",
        "token_ttl_s",
        "pay_window_s",
        "hold_grace_s",
        "wish_deadline_min_s",
        "redis_url",
        "sales",
        "queue_token_ttl_s",
        "queue_secret",
        "slow_lane_offset",
        "risk_rate_per_s",
        "risk_burst",
        "risk_slow_score",
        "risk_refuse_score",
        "admin_key",
        "concurrency_max",
        "ip_rate_per_s",
        "ip_burst",
        "buy_timeout_ms",
        "nats_url",
        "nats_stream",
        "mockpay_secret",
        "ticket_key",
        "ticket_keys_retired",
        "public_url",
        "relay_paused",
        "gates",
        "ticket_valid_before_s",
        "refund_fee_tiers",
        "event_attempts_max",
        "event_backoff_ms_min",
        "event_backoff_ms_max",
        "event_redeliver_after_s",
        "reconcile_after_s",
        "risk_ip_rate_per_s",
        "risk_refuse",
        "rule_one_unpaid_order",
        "rule_no_overlapping_trips",
        "rule_cancellations_per_day_max",
        "rule_one_rebook_per_ticket",
        "queue_token_single_use",
        "mockpay",
        "trusted_proxies",
        "sse_streams_max",
        "search_cache_bytes_max",
        "search_stale_ms",
    ];

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("chepiao.db").display()))
    }

    /// The sale's limits and windows, for the flow.
    pub fn flow(&self) -> FlowConfig {
        FlowConfig {
            sale_window_days: self.sale_window_days,
            pay_window_s: self.pay_window_s,
            hold_grace_s: self.hold_grace_s,
            wish_deadline_min_s: self.wish_deadline_min_s,
            ticket_valid_before_s: self.ticket_valid_before_s,
            refund_fee_tiers: self.refund_fee_tiers.clone(),
            event_retry: chepiao_store::RetryPolicy {
                attempts_max: self.event_attempts_max,
                backoff_ms_min: self.event_backoff_ms_min as i64,
                backoff_ms_max: self.event_backoff_ms_max as i64,
            },
            event_redeliver_after_ms: self.event_redeliver_after_s * 1000,
            reconcile_after_s: self.reconcile_after_s,
            sale_opens_at: self
                .sales
                .iter()
                .filter_map(|c| Sale::parse(c).ok())
                .flat_map(|s| s.run_ids.into_iter().map(move |r| (r, s.opens_at_ms)))
                .collect(),
            rules: chepiao_flow::rules::PurchaseRules {
                one_unpaid_order: self.rule_one_unpaid_order,
                no_overlapping_trips: self.rule_no_overlapping_trips,
                cancellations_per_day_max: self.rule_cancellations_per_day_max,
                one_rebook_per_ticket: self.rule_one_rebook_per_ticket,
            },
        }
    }

    /// Where the seat engine keeps its logs and snapshots (a cluster node: its snapshots only,
    /// in a folder of its own so that a one-node log is never mistaken for one).
    pub fn engine_dir(&self) -> PathBuf {
        self.data_dir.join(if self.cluster { "engine-replica" } else { "engine" })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.validate_server()?;
        self.validate_cluster()?;
        self.validate_sale()?;
        self.validate_hot_sale()?;
        self.validate_secrets()?;
        self.validate_events()
    }

    fn validate_server(&self) -> Result<(), String> {
        if !(1..=ENGINE_SHARDS_MAX).contains(&self.engine_shards) {
            return Err(format!("engine_shards must be 1 to {ENGINE_SHARDS_MAX}"));
        }
        if !(1024..=BODY_LEN_MAX_MAX).contains(&self.body_len_max) {
            return Err(format!("body_len_max must be 1024 to {BODY_LEN_MAX_MAX}"));
        }
        if !(60..=30 * 24 * 3600).contains(&self.token_ttl_s) {
            return Err("token_ttl_s must be 60 to 2592000".into());
        }
        if self.nats_stream.is_empty() || !self.nats_stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("nats_stream must be letters, digits and _".into());
        }
        if let Some(g) =
            self.gates.iter().find(|g| !g.0.split_once('=').is_some_and(|(id, key)| !id.is_empty() && !key.is_empty()))
        {
            return Err(format!("gates: an entry is not `gate_id=secret` ({} characters)", g.0.len()));
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            return Err("request_timeout_ms must be 100 to 600000".into());
        }
        Ok(())
    }

    /// A cluster shares everything but the engine's replica: one database, one NATS, one Redis.
    fn validate_cluster(&self) -> Result<(), String> {
        if !(100..=100_000_000).contains(&self.engine_snapshot_every_ops) {
            return Err("engine_snapshot_every_ops must be 100 to 100000000".into());
        }
        if !(1..=5).contains(&self.cluster_replicas) {
            return Err("cluster_replicas must be 1 to 5".into());
        }
        if self.engine_stream.is_empty() || !self.engine_stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("engine_stream must be letters, digits and _".into());
        }
        if !(1 << 20..=1 << 50).contains(&self.engine_log_bytes_max) {
            return Err("engine_log_bytes_max must be 1 MiB to 1 PiB".into());
        }
        if !self.cluster {
            return Ok(());
        }
        if !self.database_url().starts_with("postgres") {
            return Err("cluster = true needs PostgreSQL (database_url = postgres://...): every node shares one \
                        database, and SQLite is one machine's file"
                .into());
        }
        if self.nats_url.is_none() {
            return Err("cluster = true needs nats_url: the seat engine's log is a NATS JetStream stream".into());
        }
        if self.redis_url.is_none() {
            return Err(
                "cluster = true needs redis_url: the waiting room and risk lists are shared by every node".into()
            );
        }
        Ok(())
    }

    fn validate_sale(&self) -> Result<(), String> {
        if !(1..=SALE_WINDOW_DAYS_MAX).contains(&self.sale_window_days) {
            return Err(format!("sale_window_days must be 1 to {SALE_WINDOW_DAYS_MAX}"));
        }
        if !(1..=24 * 3600).contains(&self.pay_window_s) {
            return Err("pay_window_s must be 1 to 86400".into());
        }
        if !(10..=24 * 3600).contains(&self.hold_grace_s) {
            return Err("hold_grace_s must be 10 to 86400".into());
        }
        if !(1..=24 * 3600).contains(&self.wish_deadline_min_s) {
            return Err("wish_deadline_min_s must be 1 to 86400".into());
        }
        let tiers = &self.refund_fee_tiers;
        let descending = tiers.windows(2).all(|w| w[0].hours_before > w[1].hours_before);
        if tiers.is_empty()
            || !descending
            || tiers.last().is_some_and(|t| t.hours_before != 0)
            || tiers.iter().any(|t| t.percent > 100)
        {
            return Err("refund_fee_tiers: hours_before strictly descending down to 0, percent 0 to 100".into());
        }
        if self.ticket_valid_before_s > 30 * 24 * 3600 {
            return Err("ticket_valid_before_s must be at most 2592000".into());
        }
        Ok(())
    }

    fn validate_hot_sale(&self) -> Result<(), String> {
        if !(120..=180).contains(&self.queue_token_ttl_s) {
            return Err("queue_token_ttl_s must be 120 to 180".into());
        }
        for sale in &self.sales {
            Sale::parse(sale)?;
        }
        if !(1..=100_000).contains(&self.risk_rate_per_s) || !(1..=100_000).contains(&self.risk_burst) {
            return Err("risk_rate_per_s and risk_burst must be 1 to 100000".into());
        }
        if self.risk_slow_score > self.risk_refuse_score {
            return Err("risk_slow_score must be at most risk_refuse_score".into());
        }
        if !(1..=1_000_000).contains(&self.concurrency_max) {
            return Err("concurrency_max must be 1 to 1000000".into());
        }
        if !(1..=10_000_000).contains(&self.ip_rate_per_s) || !(1..=10_000_000).contains(&self.ip_burst) {
            return Err("ip_rate_per_s and ip_burst must be 1 to 10000000".into());
        }
        if !(100..=600_000).contains(&self.buy_timeout_ms) {
            return Err("buy_timeout_ms must be 100 to 600000".into());
        }
        Ok(())
    }

    /// Secrets a guess must not find: the admin key, every gate's secret, mockpay's.
    fn validate_secrets(&self) -> Result<(), String> {
        let short = |s: &str| s.chars().count() < SECRET_LEN_MIN;
        if self.admin_key.as_ref().is_some_and(|k| short(&k.0)) {
            return Err(format!("admin_key must be at least {SECRET_LEN_MIN} characters"));
        }
        if self.gates.iter().any(|g| g.0.split_once('=').is_some_and(|(_, key)| short(key))) {
            return Err(format!("gates: every gate's secret must be at least {SECRET_LEN_MIN} characters"));
        }
        if self.mockpay_secret.as_ref().is_some_and(|k| short(&k.0)) {
            return Err(format!("mockpay_secret must be at least {SECRET_LEN_MIN} characters"));
        }
        for p in &self.trusted_proxies {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("trusted_proxies: {p:?} is neither an address nor a CIDR block"))?;
        }
        if self.search_cache_bytes_max > 16 << 30 || self.search_stale_ms > 60_000 {
            return Err("search_cache_bytes_max must be at most 17179869184 and search_stale_ms at most 60000".into());
        }
        if !(1..=1_000_000).contains(&self.sse_streams_max) {
            return Err("sse_streams_max must be 1 to 1000000".into());
        }
        Ok(())
    }

    fn validate_events(&self) -> Result<(), String> {
        if !(1..=1_000).contains(&self.event_attempts_max) {
            return Err("event_attempts_max must be 1 to 1000".into());
        }
        let (min, max) = (self.event_backoff_ms_min, self.event_backoff_ms_max);
        if !(1..=3_600_000).contains(&min) || !(min..=24 * 3_600_000).contains(&max) {
            return Err("event_backoff_ms_min must be 1 to 3600000, event_backoff_ms_max from it to 86400000".into());
        }
        if !(1..=24 * 3600).contains(&self.event_redeliver_after_s) {
            return Err("event_redeliver_after_s must be 1 to 86400".into());
        }
        if !(1..=24 * 3600).contains(&self.reconcile_after_s) || self.reconcile_after_s * 1000 <= self.buy_timeout_ms {
            return Err("reconcile_after_s must be 1 to 86400 and longer than buy_timeout_ms".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_list_every_field() {
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut fields: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        let mut keys: Vec<_> = Config::KEYS.iter().map(|k| k.to_string()).collect();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
    }

    #[test]
    fn defaults_are_valid_and_limits_hold() {
        assert!(Config::default().validate().is_ok());
        let c = Config { sale_window_days: 0, ..Config::default() };
        assert!(c.validate().is_err());
        assert!(Config::default().database_url().starts_with("sqlite://"));
    }

    #[test]
    fn secrets_shorter_than_the_minimum_are_refused() {
        let short = Secret("x".repeat(SECRET_LEN_MIN - 1));
        let long = Secret("x".repeat(SECRET_LEN_MIN));
        for (name, c) in [
            ("admin_key", Config { admin_key: Some(short.clone()), ..Config::default() }),
            ("gates", Config { gates: vec![Secret(format!("g1={}", short.0))], ..Config::default() }),
            ("mockpay_secret", Config { mockpay_secret: Some(short.clone()), ..Config::default() }),
        ] {
            let refused = c.validate().unwrap_err();
            assert!(refused.contains(name), "{name}: {refused}");
        }
        let c = Config {
            admin_key: Some(long.clone()),
            gates: vec![Secret(format!("g1={}", long.0))],
            mockpay_secret: Some(long),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }
}
