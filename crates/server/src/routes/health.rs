//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::time::Duration;

use chepiao_api::ops::{Health, Ready};
use tokio::time::timeout;

use crate::http::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The process is up. Also the server's plain JSON baseline in benchmarks.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// How long each readiness check may take.
const CHECK_TIME_MAX: Duration = Duration::from_secs(2);

/// Everything a purchase needs can make progress: the store (every SQL writer and a reader),
/// the seat engine (every shard) and the event bus. 503 naming the first that cannot.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let flow = &state.flow;
    let within = |what: &'static str| move |_| ApiError::unavailable(format!("{what}: no answer within 2 s"));
    timeout(CHECK_TIME_MAX, flow.store.ping()).await.map_err(within("store"))?.map_err(|e| {
        tracing::warn!(error = %e, "readiness: store");
        ApiError::unavailable("store: cannot make progress")
    })?;
    timeout(CHECK_TIME_MAX, flow.engine.stats()).await.map_err(within("seat engine"))?.map_err(|e| {
        tracing::warn!(error = %e, "readiness: seat engine");
        ApiError::unavailable("seat engine: cannot make progress")
    })?;
    timeout(CHECK_TIME_MAX, flow.relay.ping_bus()).await.map_err(within("event bus"))?.map_err(|e| {
        tracing::warn!(error = %e, "readiness: event bus");
        ApiError::unavailable("event bus: cannot make progress")
    })?;
    Ok(Json(Ready { status: "ready".into(), store: flow.store.backend().into(), bus: flow.relay.bus_name().into() }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::http::metrics::handle().render())
}
