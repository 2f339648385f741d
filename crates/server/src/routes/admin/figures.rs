//! The operator's figures (`X-Admin-Key`): sales statistics from SQL, this node's live figures,
//! the audit log's verification, and a sale's waiting room. Read-only.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chepiao_api::stats::{
    AuditVerify, ChannelSales, ClassRemaining, EngineFigures, EngineReplica, HotRun, LiveFigures, OutboxFigures,
    RiskFigures, RoomFigures, SalesCounts, SalesRow, SalesStats, ShardReplica, SourceSales,
};
use chepiao_domain::{RunId, SeatClass, ServiceDate, TrainCode};
use chepiao_store::{LineCounts, SalesFacts, SalesQuery};

use crate::http::error::{ApiError, ErrorBody, hidden};
use crate::http::extract::{Params, path};
use crate::search::JourneyKey;
use crate::state::AppState;

/// Audit entries one verification call checks at most (about a second of hashing here).
const AUDIT_VERIFY_MAX: u64 = 1_000_000;

/// Sales statistics of the orders placed from `from` to `to` (China time, at most 31 days),
/// per day, train and class; totals, by payment channel and by order source. Admin only.
#[utoipa::path(get, path = "/api/v1/admin/stats/sales", tag = "admin",
    params(("from" = Option<String>, Query, description = "YYYY-MM-DD, the first day orders were placed (default today, China time)"),
           ("to" = Option<String>, Query, description = "YYYY-MM-DD, the last day (default `from`)"),
           ("train" = Option<String>, Query, description = "one train, e.g. G1"),
           ("class" = Option<String>, Query, description = "one seat class, e.g. SECOND"),
           ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = SalesStats), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn sales(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<SalesStats>, ApiError> {
    state.admin.check(&headers)?;
    let today = chrono::DateTime::from_timestamp_millis(state.flow.now_ms()).expect("the clock is in range");
    let from: ServiceDate = params.optional("from")?.unwrap_or_else(|| ServiceDate::today_in_china(today));
    let to: ServiceDate = params.optional("to")?.unwrap_or(from);
    let train: Option<TrainCode> = params.optional("train")?;
    let class: Option<SeatClass> = match params.optional::<String>("class")? {
        None => None,
        Some(c) => Some(SeatClass::ALL.into_iter().find(|k| k.as_str() == c).ok_or_else(|| {
            ApiError::bad_parameter(format!("parameter `class`: {c:?} is not a seat class (e.g. SECOND)"))
        })?),
    };
    let q = SalesQuery {
        from_day: from,
        to_day: to,
        train: train.map(|t| t.to_string()),
        class: class.map(|c| c.as_str().to_string()),
    };
    let facts = state.flow.store.sales_facts(&q).await?;
    Ok(Json(sales_stats(from, to, facts)))
}

fn counts(c: &LineCounts) -> SalesCounts {
    SalesCounts {
        placed: c.placed,
        paid: c.paid,
        ticketed: c.ticketed,
        expired: c.expired,
        cancelled: c.cancelled,
        refunded: c.refunded,
        seats: c.seats,
        conversion: if c.placed == 0 { 0.0 } else { c.paid as f64 / c.placed as f64 },
        revenue_fen: c.revenue_fen,
        refunds_fen: c.refunds_fen,
    }
}

/// The figures from a backend's group counts: rows by (day, train, class); totals, sources and
/// channels from the orders' origins.
fn sales_stats(from: ServiceDate, to: ServiceDate, facts: SalesFacts) -> SalesStats {
    let mut totals = LineCounts::default();
    let mut sources: BTreeMap<String, LineCounts> = BTreeMap::new();
    let mut channels: BTreeMap<String, LineCounts> = BTreeMap::new();
    for o in &facts.origins {
        totals.add(&o.counts);
        sources.entry(o.source.clone()).or_default().add(&o.counts);
        if !o.channel.is_empty() {
            channels.entry(o.channel.clone()).or_default().add(&o.counts);
        }
    }
    SalesStats {
        from: from.to_string(),
        to: to.to_string(),
        rows: facts
            .lines
            .into_iter()
            .map(|l| SalesRow { day: l.day, train_code: l.train_code, class: l.class, counts: counts(&l.counts) })
            .collect(),
        totals: counts(&totals),
        by_channel: channels
            .into_iter()
            .map(|(channel, c)| ChannelSales {
                channel,
                payments: c.paid,
                amount_fen: c.revenue_fen,
                refunds_fen: c.refunds_fen,
            })
            .collect(),
        by_source: sources
            .into_iter()
            .map(|(source, c)| SourceSales { source, placed: c.placed, paid: c.paid })
            .collect(),
        truncated: facts.truncated,
    }
}

/// This node's figures now: orders/s, 余票 of the hottest runs, the outbox, risk decisions,
/// the engine's size. Admin only.
#[utoipa::path(get, path = "/api/v1/admin/live", tag = "admin",
    params(("X-Admin-Key" = String, Header)),
    responses((status = 200, body = LiveFigures), (status = 401, body = ErrorBody)))]
pub async fn live(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<LiveFigures>, ApiError> {
    state.admin.check(&headers)?;
    let now = state.flow.now_ms();
    let counts = state.flow.store.outbox_counts().await?;
    let size =
        state.flow.engine.stats().await?.iter().fold(EngineFigures { runs: 0, live_holds: 0, sold_legs: 0 }, |a, s| {
            EngineFigures {
                runs: a.runs + s.size.runs as u64,
                live_holds: a.live_holds + s.size.live_holds as u64,
                sold_legs: a.sold_legs + s.size.sold_legs as u64,
            }
        });
    let risk = state.risk.decisions();
    Ok(Json(LiveFigures {
        orders_per_s: state.live.orders_per_s(now),
        hottest_runs: hot_runs(&state, now).await?,
        outbox: OutboxFigures {
            pending: counts.pending + counts.sent,
            dead: counts.dead,
            oldest_pending_age_s: counts.oldest_ms.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0),
        },
        risk: RiskFigures { allowed: risk.passed, slow_lane: risk.slow, refused: risk.refused },
        engine: size,
    }))
}

/// This node's replica of the seat engine: per shard, the log position applied and the state's
/// digest there (replicas at one position must agree), the newest snapshot and the live holds.
/// Slow on a large state (the digest encodes all of it). Admin only.
#[utoipa::path(get, path = "/api/v1/admin/engine", tag = "admin",
    params(("X-Admin-Key" = String, Header)),
    responses((status = 200, body = EngineReplica), (status = 401, body = ErrorBody)))]
pub async fn engine(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<EngineReplica>, ApiError> {
    state.admin.check(&headers)?;
    let engine = &state.flow.engine;
    let (digests, stats) = (engine.digests().await?, engine.stats().await?);
    let shards = digests
        .into_iter()
        .zip(stats)
        .enumerate()
        .map(|(i, ((applied, digest), s))| ShardReplica {
            shard: i as u32,
            applied,
            digest: format!("{digest:016x}"),
            snapshot: s.snapshot_lsn,
            live_holds: s.size.live_holds as u64,
        })
        .collect();
    let log = if state.cluster.is_some() { "cluster" } else { "local" };
    Ok(Json(EngineReplica { log: log.into(), shards }))
}

/// The hottest runs with their remaining places from first stop to last, per class.
async fn hot_runs(state: &AppState, now_ms: i64) -> Result<Vec<HotRun>, ApiError> {
    let network = &state.flow.network;
    let mut found = Vec::new();
    for (run_id, orders) in state.live.hottest(now_ms) {
        let Ok(run) = run_id.parse::<RunId>() else { continue };
        let Some(train) = network.train_idx(&run.train) else { continue };
        let last = network.train(train).stops.len().saturating_sub(1) as u16;
        found.push((run_id, orders, JourneyKey { train, run_date: run.date, from_stop: 0, to_stop: last }));
    }
    let keys: Vec<JourneyKey> = found.iter().map(|f| f.2).collect();
    let counts = crate::search::remaining(network, &state.flow.engine, &keys).await?;
    Ok(found
        .into_iter()
        .zip(counts)
        .map(|((run_id, orders, _), classes)| HotRun {
            run_id,
            orders,
            remaining: classes
                .into_iter()
                .map(|(c, n)| ClassRemaining { class: c.as_str().into(), remaining: n })
                .collect(),
        })
        .collect())
}

/// Recompute the audit log's hash chain after entry `after` (0: from the start), at most
/// 1,000,000 entries a call; `next_after` continues. Admin only.
#[utoipa::path(get, path = "/api/v1/admin/audit/verify", tag = "admin",
    params(("after" = Option<i64>, Query, description = "start after this entry (default 0: the first)"),
           ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = AuditVerify), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn audit_verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<AuditVerify>, ApiError> {
    state.admin.check(&headers)?;
    let after: i64 = params.optional("after")?.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_parameter("parameter `after`: 0 or more"));
    }
    let check = chepiao_flow::audit::verify_log(state.flow.store.as_ref(), after, AUDIT_VERIFY_MAX).await?;
    Ok(Json(AuditVerify {
        entries: check.entries,
        last_seq: check.last_seq,
        intact: check.problem.is_none(),
        next_after: (!check.complete).then_some(check.last_seq),
        problem: check.problem,
    }))
}

/// A sale's waiting room: people waiting, people admitted, when it opens. Admin only.
#[utoipa::path(get, path = "/api/v1/admin/sales/{sale_id}/room", tag = "admin",
    params(("sale_id" = String, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = RoomFigures), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn room(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RoomFigures>, ApiError> {
    state.admin.check(&headers)?;
    let id = path(id)?;
    let sale = state.room.sale(&id).ok_or_else(|| ApiError::unknown_sale(format!("no sale {id:?}")))?;
    let backend = &state.room.backend;
    let waiting = backend.waiting(&sale.sale_id).await.map_err(|e| hidden(&e, true))?;
    let admitted = backend.admitted(&sale.sale_id).await.map_err(|e| hidden(&e, true))?;
    Ok(Json(RoomFigures {
        sale_id: sale.sale_id.clone(),
        waiting,
        admitted,
        opens_at: chepiao_flow::rfc3339(sale.opens_at_ms),
    }))
}
