//! Check-in at the gate, online and offline uploads, and the revocation list; gates prove
//! themselves with `X-Gate-Key` (`crate::security::gates`), the decisions are in
//! `chepiao_flow::checkin`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chepiao_api::checkin::{
    CheckInAccepted, CheckInRequest, RevocationPage, Revoked, ScanUpload, UPLOAD_SCANS_MAX, UploadReport,
};
use chepiao_flow::{checkin, rfc3339};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Params};
use crate::state::AppState;

/// Check a ticket in (gates only: `X-Gate-Key`).
#[utoipa::path(post, path = "/api/v1/checkin", tag = "tickets", request_body = CheckInRequest,
    params(("X-Gate-Key" = String, Header, description = "the gate's secret")),
    responses((status = 200, body = CheckInAccepted), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "checked in already (40908)"),
              (status = 410, body = ErrorBody, description = "revoked (41001)"),
              (status = 422, body = ErrorBody, description = "bad code 42201, wrong station 42202, wrong date 42203")))]
pub async fn check_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CheckInRequest>,
) -> Result<Json<CheckInAccepted>, ApiError> {
    state.gates.check(&headers, &req.gate_id)?;
    let ticket_sn = checkin::check_in(&state.flow, &req.gate_id, &req.qr, &req.station).await?;
    Ok(Json(CheckInAccepted { ticket_sn, result: "ACCEPTED".into() }))
}

/// Upload an offline gate's scans. Each is checked in as of its scan time, exactly once (I5):
/// the report names every duplicate with both scans, and every ticket that was revoked. Uploading
/// the same scans again answers the same.
#[utoipa::path(post, path = "/api/v1/checkin/uploads", tag = "tickets", request_body = ScanUpload,
    params(("X-Gate-Key" = String, Header, description = "the gate's secret")),
    responses((status = 200, body = UploadReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ScanUpload>,
) -> Result<Json<UploadReport>, ApiError> {
    state.gates.check(&headers, &req.gate_id)?;
    if req.scans.len() > UPLOAD_SCANS_MAX {
        return Err(ApiError::bad_parameter(format!("`scans`: at most {UPLOAD_SCANS_MAX} per upload")));
    }
    let mut results = Vec::with_capacity(req.scans.len());
    for scan in &req.scans {
        results.push(checkin::apply_scan(&state.flow, &req.gate_id, scan).await?);
    }
    Ok(Json(UploadReport { results }))
}

/// Revocations one call returns.
pub const REVOCATIONS_PAGE_MAX: u32 = 1_000;

/// Tickets gates must refuse (refunded, rebooked), after cursor `since` (start with 0). Gates
/// only: `X-Gate-Key` of any configured gate.
#[utoipa::path(get, path = "/api/v1/checkin/revocations", tag = "tickets",
    params(("since" = i64, Query, description = "cursor; 0 for everything"),
           ("X-Gate-Key" = String, Header, description = "a gate's secret")),
    responses((status = 200, body = RevocationPage), (status = 401, body = ErrorBody)))]
pub async fn revocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<RevocationPage>, ApiError> {
    state.gates.check_any(&headers)?;
    let since: i64 = params.required("since")?;
    if since < 0 {
        return Err(ApiError::bad_parameter("parameter `since`: a cursor from 0"));
    }
    let found = state.flow.store.revocations(since, REVOCATIONS_PAGE_MAX).await?;
    let next = found.last().map_or(since, |r| r.seq);
    let revoked =
        found.into_iter().map(|r| Revoked { ticket_sn: r.ticket_sn, revoked_at: rfc3339(r.revoked_at_ms) }).collect();
    Ok(Json(RevocationPage { revoked, next }))
}
