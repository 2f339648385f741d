//! The operator's endpoints (`X-Admin-Key`): the risk lists. Every change is audited.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chepiao_api::queue::RiskList;

use crate::hotsale::risk::{ListKind, ListName};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{DEVICE_ID_LEN_MAX, path};
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
