//! The operator's endpoints (`X-Admin-Key`): the risk lists, and the outbox events (the DEAD
//! ones to look at and retry), here; every change is audited. The read-only figures (sales
//! statistics, live figures, the audit check, a sale's waiting room) are in [`figures`].

pub mod figures;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chepiao_api::ops::{EventPage, EventView};
use chepiao_api::queue::RiskList;
use chepiao_flow::relay::Retried;
use chepiao_store::{OUTBOX_BATCH_MAX, OutboxRow, OutboxState};

use crate::hotsale::risk::{ListKind, ListName};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{DEVICE_ID_LEN_MAX, Params, path};
use crate::state::AppState;

fn list_path(list: &str, kind: &str) -> Result<(ListName, ListKind), ApiError> {
    let list = match list {
        "block" => ListName::Block,
        "allow" => ListName::Allow,
        _ => return Err(ApiError::bad_parameter("list: `block` or `allow`")),
    };
    let kind = match kind {
        "user" => ListKind::User,
        "device" => ListKind::Device,
        "ip" => ListKind::Ip,
        _ => return Err(ApiError::bad_parameter("kind: `user`, `device` or `ip`")),
    };
    Ok((list, kind))
}

/// A risk list (`block` or `allow`) of one kind (`user`, `device`, `ip`). Admin only.
#[utoipa::path(get, path = "/api/v1/admin/risk/{list}/{kind}", tag = "admin",
    params(("list" = String, Path), ("kind" = String, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = RiskList), (status = 401, body = ErrorBody)))]
pub async fn risk_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<RiskList>, ApiError> {
    state.admin.check(&headers)?;
    let (list, kind) = path(p)?;
    let (list, kind) = list_path(&list, &kind)?;
    Ok(Json(RiskList { values: state.risk.list(kind, list) }))
}

/// Put a value on a risk list (`PUT`) or take it off (`DELETE`). Admin only.
#[utoipa::path(put, path = "/api/v1/admin/risk/{list}/{kind}/{value}", tag = "admin",
    params(("list" = String, Path), ("kind" = String, Path), ("value" = String, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = RiskList), (status = 401, body = ErrorBody)))]
pub async fn risk_put(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Json<RiskList>, ApiError> {
    risk_change(state, headers, p, true).await
}

#[utoipa::path(delete, path = "/api/v1/admin/risk/{list}/{kind}/{value}", tag = "admin",
    params(("list" = String, Path), ("kind" = String, Path), ("value" = String, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = RiskList), (status = 401, body = ErrorBody)))]
pub async fn risk_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Json<RiskList>, ApiError> {
    risk_change(state, headers, p, false).await
}

async fn risk_change(
    state: AppState,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    add: bool,
) -> Result<Json<RiskList>, ApiError> {
    state.admin.check(&headers)?;
    let (list, kind, value) = path(p)?;
    let (list, kind) = list_path(&list, &kind)?;
    if value.is_empty() || value.len() > DEVICE_ID_LEN_MAX {
        return Err(ApiError::bad_parameter(format!("value: 1 to {} characters", DEVICE_ID_LEN_MAX)));
    }
    if let Some(shared) = &state.shared_lists {
        shared.change(kind, list, &value, add).await.map_err(|e| crate::http::error::hidden(&e, true))?;
    }
    if add {
        state.risk.list_add(kind, list, &value);
    } else {
        state.risk.list_remove(kind, list, &value);
    }
    let entry = chepiao_store::AuditEntry {
        at_ms: state.flow.now_ms(),
        kind: format!("risk.{}", if add { "add" } else { "remove" }),
        subject: value.clone(),
        detail: format!("{list:?} {kind:?}"),
    };
    state.flow.store.audit_append(&entry).await?;
    Ok(Json(RiskList { values: state.risk.list(kind, list) }))
}

fn event_view(r: &OutboxRow) -> EventView {
    EventView {
        id: r.id,
        kind: r.event.kind().into(),
        subject: r.event.subject().into(),
        state: r.state.as_str().into(),
        attempts: r.attempts,
        next_at: chepiao_flow::rfc3339(r.next_at_ms),
        created_at: chepiao_flow::rfc3339(r.created_at_ms),
        last_error: r.last_error.clone(),
    }
}

/// Outbox events in one state (`DEAD` by default), by id, after `after`, at most `limit`
/// (1 to 1,024, default 100). Admin only.
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "admin",
    params(("state" = Option<String>, Query, description = "PENDING, SENT or DEAD (default)"),
           ("after" = Option<i64>, Query), ("limit" = Option<u32>, Query), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<EventPage>, ApiError> {
    state.admin.check(&headers)?;
    let which: String = params.optional("state")?.unwrap_or_else(|| "DEAD".into());
    let which = OutboxState::parse(&which)
        .ok_or_else(|| ApiError::bad_parameter("parameter `state`: PENDING, SENT or DEAD"))?;
    let after: i64 = params.optional("after")?.unwrap_or(0);
    let limit: u32 = params.optional("limit")?.unwrap_or(100);
    if !(1..=OUTBOX_BATCH_MAX).contains(&limit) {
        return Err(ApiError::bad_parameter(format!("parameter `limit`: 1 to {OUTBOX_BATCH_MAX}")));
    }
    let rows = state.flow.store.outbox_list(which, after, limit).await?;
    let next_after = (rows.len() as u32 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    Ok(Json(EventPage { events: rows.iter().map(event_view).collect(), next_after }))
}

/// Retry a DEAD event now, its attempts counted from zero. Admin only; audited.
#[utoipa::path(post, path = "/api/v1/admin/events/{id}/retry", tag = "admin",
    params(("id" = i64, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = EventView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the event is not DEAD (40912)")))]
pub async fn retry_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<i64>, PathRejection>,
) -> Result<Json<EventView>, ApiError> {
    state.admin.check(&headers)?;
    let id = path(p)?;
    match state.flow.relay.retry_dead(id).await? {
        Retried::Now(row) => Ok(Json(event_view(&row))),
        Retried::NotDead(row) => Err(ApiError::event_not_dead(format!("event {id} is {}", row.state))),
        Retried::Unknown => Err(ApiError::unknown_event(format!("no outbox event {id}"))),
    }
}
