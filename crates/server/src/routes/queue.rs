//! The waiting room over HTTP (`crate::queue` does the work), and the admin endpoints of the
//! risk lists.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::middleware::ClientIp;
use crate::queue::{Lane, Sale, Status};
use crate::risk::{Decision, ListKind, ListName, Subject};
use crate::routes::orders::rfc3339;

/// How long one event stream may stay open.
const EVENTS_FOR_MAX: Duration = Duration::from_secs(600);
const EVENTS_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize, utoipa::ToSchema)]
pub struct SaleOut {
    pub sale_id: String,
    pub opens_at: String,
    pub run_ids: Vec<String>,
}

/// The sales with a waiting room.
#[utoipa::path(get, path = "/api/v1/sales", tag = "queue", responses((status = 200, body = [SaleOut])))]
pub async fn sales(State(state): State<AppState>) -> Json<Vec<SaleOut>> {
    Json(
        state
            .room
            .sales()
            .iter()
            .map(|s| SaleOut {
                sale_id: s.sale_id.clone(),
                opens_at: rfc3339(s.opens_at_ms),
                run_ids: s.run_ids.clone(),
            })
            .collect(),
    )
}

/// `{position}` while waiting; `{admitted: true, queue_token, expires_at}` once admitted.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QueueStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn status_out(s: Status) -> Result<QueueStatus, ApiError> {
    let none = QueueStatus { position: None, admitted: None, queue_token: None, expires_at: None };
    match s {
        Status::Waiting { position } => Ok(QueueStatus { position: Some(position), ..none }),
        Status::Admitted { token, expires_at_ms } => Ok(QueueStatus {
            admitted: Some(true),
            queue_token: Some(token),
            expires_at: Some(rfc3339(expires_at_ms)),
            ..none
        }),
        Status::Full => Err(ApiError::queue_full("the waiting room is full")),
        Status::NotJoined => Err(ApiError::not_in_queue("join the queue first")),
    }
}

fn sale(state: &AppState, id: Result<Path<String>, PathRejection>) -> Result<&Sale, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    state.room.sale(&id).ok_or_else(|| ApiError::unknown_sale(format!("no sale {id:?}")))
}

/// The device fingerprint the client app sends.
pub fn device_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("x-device-id").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) if !v.is_empty() && v.len() <= crate::risk::DEVICE_ID_LEN_MAX => Ok(Some(v.to_string())),
        Some(_) => Err(ApiError::bad_parameter(format!(
            "header `X-Device-Id`: 1 to {} visible ASCII characters",
            crate::risk::DEVICE_ID_LEN_MAX
        ))),
    }
}

/// The caller's device fingerprint (`X-Device-Id`), read without copying the other headers.
pub struct DeviceId(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for DeviceId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        device_id(&parts.headers).map(DeviceId)
    }
}

/// Run the risk checks for `check`; the lane to join in, or the refusal.
pub fn risk_check(state: &AppState, check: &'static str, subject: &Subject) -> Result<Lane, ApiError> {
    match state.risk.check(check, subject) {
        Decision::Pass => Ok(Lane::Normal),
        Decision::Slow { .. } => Ok(Lane::Slow),
        Decision::Refuse { reason } => Err(ApiError::risk_refused(format!("refused ({reason})"))),
        Decision::Limited { what } => Err(ApiError::rate_limited(format!("slow down ({what})"))),
    }
}

/// Join a sale's waiting room (joining again keeps the place).
#[utoipa::path(post, path = "/api/v1/queue/{sale_id}/join", tag = "queue", security(("bearer" = [])),
    params(("sale_id" = String, Path), ("X-Device-Id" = Option<String>, Header, description = "device fingerprint")),
    responses((status = 200, body = QueueStatus), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    DeviceId(device): DeviceId,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueStatus>, ApiError> {
    let sale = sale(&state, id)?;
    let subject = Subject { user: user.id, device, ip };
    let lane = risk_check(&state, "join", &subject)?;
    let now = crate::flow::orders::now_ms();
    let status = state.room.join(sale, user.id, lane, now).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    metrics::counter!("chepiao_queue_joins_total", "lane" => if lane == Lane::Slow { "slow" } else { "normal" })
        .increment(1);
    Ok(Json(status_out(status)?))
}

/// Where the caller is in a sale's queue, or its queue token once admitted.
#[utoipa::path(get, path = "/api/v1/queue/{sale_id}/status", tag = "queue", security(("bearer" = [])),
    params(("sale_id" = String, Path)),
    responses((status = 200, body = QueueStatus), (status = 404, body = crate::error::ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueStatus>, ApiError> {
    let sale = sale(&state, id)?;
    let now = crate::flow::orders::now_ms();
    let status = state.room.status(sale, user.id, now).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(status_out(status)?))
}

/// The caller's queue status as Server-Sent Events (`status` events, one a second), until
/// admitted (the last event carries the token) or ten minutes pass.
#[utoipa::path(get, path = "/api/v1/queue/{sale_id}/events", tag = "queue", security(("bearer" = [])),
    params(("sale_id" = String, Path)), responses((status = 200, description = "text/event-stream")))]
pub async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let sale = sale(&state, id)?.clone();
    let started = tokio::time::Instant::now();
    let stream = futures_util::stream::unfold(Some(()), move |more| {
        let (state, sale) = (state.clone(), sale.clone());
        async move {
            more?;
            if started.elapsed() > EVENTS_FOR_MAX {
                return None;
            }
            let now = crate::flow::orders::now_ms();
            let (body, done) = match state.room.status(&sale, user.id, now).await {
                Ok(s @ Status::Admitted { .. }) => (status_out(s).map(|o| serde_json::to_string(&o)), true),
                Ok(s) => (status_out(s).map(|o| serde_json::to_string(&o)), false),
                Err(e) => (Err(ApiError::unavailable(e.to_string())), false),
            };
            let data = match body {
                Ok(Ok(json)) => json,
                Ok(Err(_)) | Err(_) => "{\"error\":\"not in the queue\"}".to_string(),
            };
            if !done {
                tokio::time::sleep(EVENTS_EVERY).await;
            }
            Some((Ok(Event::default().event("status").data(data)), (!done).then_some(())))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers.get("x-admin-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    match &state.admin_key {
        Some(k) if *k == Sha256::digest(given.as_bytes()).to_vec() => Ok(()),
        _ => Err(ApiError::invalid_token("admin endpoints need `X-Admin-Key`")),
    }
}

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

#[derive(Serialize, utoipa::ToSchema)]
pub struct RiskList {
    pub values: Vec<String>,
}

/// A risk list (`block` or `allow`) of one kind (`user`, `device`, `ip`). Admin only.
#[utoipa::path(get, path = "/api/v1/admin/risk/{list}/{kind}", tag = "queue",
    params(("list" = String, Path), ("kind" = String, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = RiskList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn risk_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<RiskList>, ApiError> {
    check_admin(&state, &headers)?;
    let Path((list, kind)) = p.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let (list, kind) = list_path(&list, &kind)?;
    Ok(Json(RiskList { values: state.risk.list(kind, list) }))
}

/// Put a value on a risk list (`PUT`) or take it off (`DELETE`). Admin only.
#[utoipa::path(put, path = "/api/v1/admin/risk/{list}/{kind}/{value}", tag = "queue",
    params(("list" = String, Path), ("kind" = String, Path), ("value" = String, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = RiskList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn risk_put(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Json<RiskList>, ApiError> {
    risk_change(state, headers, p, true).await
}

#[utoipa::path(delete, path = "/api/v1/admin/risk/{list}/{kind}/{value}", tag = "queue",
    params(("list" = String, Path), ("kind" = String, Path), ("value" = String, Path), ("X-Admin-Key" = String, Header)),
    responses((status = 200, body = RiskList), (status = 401, body = crate::error::ErrorBody)))]
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
    check_admin(&state, &headers)?;
    let Path((list, kind, value)) = p.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let (list, kind) = list_path(&list, &kind)?;
    if value.is_empty() || value.len() > crate::risk::DEVICE_ID_LEN_MAX {
        return Err(ApiError::bad_parameter(format!("value: 1 to {} characters", crate::risk::DEVICE_ID_LEN_MAX)));
    }
    if add {
        state.risk.list_add(kind, list, &value);
    } else {
        state.risk.list_remove(kind, list, &value);
    }
    let entry = chepiao_store::AuditEntry {
        at_ms: crate::flow::orders::now_ms(),
        kind: format!("risk.{}", if add { "add" } else { "remove" }),
        subject: value.clone(),
        detail: format!("{list:?} {kind:?}"),
    };
    state.store.audit_append(&entry).await?;
    Ok(Json(RiskList { values: state.risk.list(kind, list) }))
}
