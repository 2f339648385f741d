//! What an operator reads about a sale: sales statistics from SQL, live figures from the
//! server's own counters, the audit log's verification, and a sale's waiting room.

use serde::{Deserialize, Serialize};

/// What happened to the orders of one group (a day, train and class; or all of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SalesCounts {
    /// Orders placed (a round trip counts once for each of its legs' groups).
    pub placed: u64,
    /// Orders whose payment was captured (whatever happened after).
    pub paid: u64,
    /// Orders whose tickets were issued.
    pub ticketed: u64,
    pub expired: u64,
    pub cancelled: u64,
    /// Orders with some or all tickets refunded.
    pub refunded: u64,
    /// Seats of the orders placed.
    pub seats: u64,
    /// `paid / placed` (0 when nothing was placed).
    pub conversion: f64,
    /// Money of the paid orders, in fen.
    pub revenue_fen: i64,
    /// Money refunded on tickets, in fen.
    pub refunds_fen: i64,
}

/// One day (China time, the day the orders were placed), train and class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SalesRow {
    /// `YYYY-MM-DD`
    pub day: String,
    pub train_code: String,
    pub class: String,
    #[serde(flatten)]
    pub counts: SalesCounts,
}

/// The paid orders of one channel (the channel whose payment was captured last for the order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelSales {
    pub channel: String,
    /// Orders paid through it (counted as `totals` counts).
    pub payments: u64,
    /// Their amounts, in fen.
    pub amount_fen: i64,
    /// Money refunded on their tickets, in fen.
    pub refunds_fen: i64,
}

/// Orders by where they were placed (`X-Client`: `web`, `app`, `console`; anything else `api`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceSales {
    pub source: String,
    pub placed: u64,
    pub paid: u64,
}

/// `GET /api/v1/admin/stats/sales`: orders placed from `from` to `to` (China time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SalesStats {
    pub from: String,
    pub to: String,
    /// By day, train and class, in that order.
    pub rows: Vec<SalesRow>,
    /// Each order once (by its first leg); with `train` or `class`, each leg that matches.
    pub totals: SalesCounts,
    pub by_channel: Vec<ChannelSales>,
    pub by_source: Vec<SourceSales>,
    /// More groups matched than one answer carries (20,000): narrow by train or class.
    pub truncated: bool,
}

/// Remaining places of one class on a run (from its first stop to its last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassRemaining {
    pub class: String,
    pub remaining: u32,
}

/// A run that took many orders lately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HotRun {
    pub run_id: String,
    /// Orders placed on it in the last minute or two on this node.
    pub orders: u64,
    pub remaining: Vec<ClassRemaining>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxFigures {
    /// Events waiting to be handed to the bus or handled.
    pub pending: u64,
    /// Events out of attempts (an operator retries them).
    pub dead: u64,
    /// How long the oldest waiting event has waited, in seconds (0 when none waits).
    pub oldest_pending_age_s: f64,
}

/// Risk decisions on this node since it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RiskFigures {
    pub allowed: u64,
    pub slow_lane: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngineFigures {
    pub runs: u64,
    pub live_holds: u64,
    pub sold_legs: u64,
}

/// `GET /api/v1/admin/live`: this node's figures now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveFigures {
    /// Orders created per second over the last 10 seconds, on this node.
    pub orders_per_s: f64,
    /// At most 5, the busiest first.
    pub hottest_runs: Vec<HotRun>,
    pub outbox: OutboxFigures,
    pub risk: RiskFigures,
    pub engine: EngineFigures,
}

/// `GET /api/v1/admin/engine`: this node's replica of the seat engine, shard by shard. Nodes
/// of a cluster whose shard is at the same log position hold the same state, so they show the
/// same digest there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngineReplica {
    /// `cluster` (the log is shared through NATS JetStream) or `local` (this node's own log).
    pub log: String,
    pub shards: Vec<ShardReplica>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardReplica {
    pub shard: u32,
    /// The last log position applied.
    pub applied: u64,
    /// The whole state's digest at `applied` (16 hex digits).
    pub digest: String,
    /// The position of the newest snapshot.
    pub snapshot: u64,
    pub live_holds: u64,
}

/// `GET /api/v1/admin/audit/verify`: the audit log's hash chain recomputed, a part at a time
/// (a day of sales writes millions of entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerify {
    /// Entries found intact by this call (before the break, if one was found).
    pub entries: u64,
    /// The last entry checked.
    pub last_seq: i64,
    /// No break found in what was checked.
    pub intact: bool,
    /// The first entry changed, removed or reordered, in words.
    pub problem: Option<String>,
    /// More entries follow: call again with `after` = this.
    pub next_after: Option<i64>,
}

/// `GET /api/v1/admin/sales/{sale_id}/room`: a sale's waiting room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomFigures {
    pub sale_id: String,
    /// People waiting now.
    pub waiting: u64,
    /// People admitted (holding an admission, not re-queued).
    pub admitted: u64,
    /// RFC 3339
    pub opens_at: String,
}
