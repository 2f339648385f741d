//! The waiting room over HTTP; `crate::hotsale` does the work.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use chepiao_api::queue::{QueueStatus, SaleOut};
use chepiao_flow::rfc3339;

use crate::hotsale::guard::risk_check;
use crate::hotsale::limits::ClientIp;
use crate::hotsale::risk::Subject;
use crate::hotsale::room::{Lane, Sale, Status};
use crate::http::error::{ApiError, ErrorBody, hidden};
use crate::http::extract::{DeviceId, path};
use crate::security::auth::AuthUser;
use crate::state::AppState;

/// How long one event stream may stay open.
const EVENTS_FOR_MAX: Duration = Duration::from_secs(600);
const EVENTS_EVERY: Duration = Duration::from_secs(1);

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

fn status_out(s: Status) -> Result<QueueStatus, ApiError> {
    let none = QueueStatus::default();
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
    let id = path(id)?;
    state.room.sale(&id).ok_or_else(|| ApiError::unknown_sale(format!("no sale {id:?}")))
}

/// Join a sale's waiting room (joining again keeps the place).
#[utoipa::path(post, path = "/api/v1/queue/{sale_id}/join", tag = "queue", security(("bearer" = [])),
    params(("sale_id" = String, Path), ("X-Device-Id" = Option<String>, Header, description = "optional device fingerprint")),
    responses((status = 200, body = QueueStatus), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    DeviceId(device): DeviceId,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueStatus>, ApiError> {
    let sale = sale(&state, id)?;
    let subject = Subject { user: user.id, device, ip };
    let lane = risk_check(&state.risk, "join", &subject)?;
    let now = state.flow.now_ms();
    let status = state.room.join(sale, user.id, lane, now).await.map_err(|e| hidden(&e, true))?;
    metrics::counter!("chepiao_queue_joins_total", "lane" => if lane == Lane::Slow { "slow" } else { "normal" })
        .increment(1);
    Ok(Json(status_out(status)?))
}

/// Where the caller is in a sale's queue, or its queue token once admitted.
#[utoipa::path(get, path = "/api/v1/queue/{sale_id}/status", tag = "queue", security(("bearer" = [])),
    params(("sale_id" = String, Path)),
    responses((status = 200, body = QueueStatus), (status = 404, body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueStatus>, ApiError> {
    let sale = sale(&state, id)?;
    let now = state.flow.now_ms();
    let status = state.room.status(sale, user.id, now).await.map_err(|e| hidden(&e, true))?;
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
    let slot = Arc::new(state.streams.open(user.id, &sale.sale_id)?);
    let started = tokio::time::Instant::now();
    let stream = futures_util::stream::unfold(Some(()), move |more| {
        let (state, sale, slot) = (state.clone(), sale.clone(), slot.clone());
        async move {
            more?;
            if started.elapsed() > EVENTS_FOR_MAX || !slot.live() {
                return None;
            }
            let now = state.flow.now_ms();
            let (body, done) = match state.room.status(&sale, user.id, now).await {
                Ok(s @ Status::Admitted { .. }) => (status_out(s).map(|o| serde_json::to_string(&o)), true),
                Ok(s) => (status_out(s).map(|o| serde_json::to_string(&o)), false),
                Err(e) => (Err(hidden(&e, true)), false),
            };
            let data = match body {
                Ok(Ok(json)) => json,
                Ok(Err(_)) | Err(_) => "{\"error\":\"not in the queue\"}".to_string(),
            };
            if !done {
                tokio::select! { _ = tokio::time::sleep(EVENTS_EVERY) => {}, _ = slot.shutdown() => {} }
            }
            Some((Ok(Event::default().event("status").data(data)), (!done).then_some(())))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
