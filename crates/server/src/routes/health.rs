//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chepiao_api::ops::{Health, Ready};

use crate::http::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The process is up. Also the server's plain JSON baseline in benchmarks.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// The stores answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.flow.store.ping().await?;
    Ok(Json(Ready { status: "ready".into(), store: state.flow.store.backend().into() }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::http::metrics::handle().render())
}
