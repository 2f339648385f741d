//! Online check-in at the gate. Gates are devices with secrets of their own (`gates` in config,
//! `CHEPIAO_GATE_KEYS`), not passengers: a passenger's token cannot check anyone in.
//!
//! The gate sends the QR code it scanned. Its Ed25519 signature, the station and the validity
//! window are checked first (422 with a code that says which); then one SQL update moves the
//! ticket ISSUED → CHECKED_IN, so a ticket checks in once, ever (I5): a second scan is 409, a
//! refunded or rebooked ticket 410.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chepiao_store::CheckIn;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::flow::signing::QrError;
use crate::routes::ApiJson;
use crate::secrets::Secret;

/// gate_id → SHA-256 of its secret, from the configured `gate_id=secret` entries and the
/// environment's comma-separated list.
pub fn gate_keys(configured: &[Secret], env: Option<&str>) -> HashMap<String, Vec<u8>> {
    let from_env = env.unwrap_or("").split(',').map(str::trim).filter(|e| !e.is_empty());
    configured
        .iter()
        .map(|s| s.0.as_str())
        .chain(from_env)
        .filter_map(|entry| entry.split_once('='))
        .filter(|(id, key)| !id.is_empty() && !key.is_empty())
        .map(|(id, key)| (id.to_string(), Sha256::digest(key.as_bytes()).to_vec()))
        .collect()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckInRequest {
    /// The scanned code (`CP1.…`).
    pub qr: String,
    /// Telecode of the gate's station.
    pub station: String,
    pub gate_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckInAccepted {
    pub ticket_sn: String,
    /// `ACCEPTED`
    pub result: &'static str,
}

/// Check a ticket in (gates only: `X-Gate-Key`).
#[utoipa::path(post, path = "/api/v1/checkin", tag = "tickets", request_body = CheckInRequest,
    params(("X-Gate-Key" = String, Header, description = "the gate's secret")),
    responses((status = 200, body = CheckInAccepted), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody, description = "checked in already (40908)"),
              (status = 410, body = crate::error::ErrorBody, description = "revoked (41001)"),
              (status = 422, body = crate::error::ErrorBody, description = "bad code 42201, wrong station 42202, wrong date 42203")))]
pub async fn check_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CheckInRequest>,
) -> Result<Json<CheckInAccepted>, ApiError> {
    check_gate(&state, &headers, &req.gate_id)?;
    let payload = state.signer.verify(&req.qr).map_err(|e| ApiError::bad_ticket_code(qr_error(&e)))?;
    if payload.from != req.station.trim() {
        return Err(ApiError::wrong_station(format!(
            "ticket {} boards at {}, not {}",
            payload.sn, payload.from, req.station
        )));
    }
    let now_ms = crate::flow::orders::now_ms();
    let now_s = now_ms / 1000;
    if now_s < payload.nbf || now_s > payload.exp {
        return Err(ApiError::outside_validity(format!(
            "ticket {} is valid from {} to {}",
            payload.sn,
            crate::routes::orders::rfc3339(payload.nbf * 1000),
            crate::routes::orders::rfc3339(payload.exp * 1000)
        )));
    }
    let result = state.store.check_in(&payload.sn, &req.gate_id, &payload.from, now_ms).await?;
    metrics::counter!("chepiao_checkins_total", "result" => match &result {
        CheckIn::Accepted => "accepted",
        CheckIn::AlreadyCheckedIn { .. } => "again",
        CheckIn::Revoked(_) => "revoked",
        CheckIn::Unknown => "unknown",
    })
    .increment(1);
    match result {
        CheckIn::Accepted => Ok(Json(CheckInAccepted { ticket_sn: payload.sn, result: "ACCEPTED" })),
        CheckIn::AlreadyCheckedIn { gate_id, at_ms } => Err(ApiError::already_checked_in(format!(
            "ticket {} was checked in at gate {gate_id} at {}",
            payload.sn,
            crate::routes::orders::rfc3339(at_ms)
        ))),
        CheckIn::Revoked(status) => Err(ApiError::ticket_revoked(format!("ticket {} is {status}", payload.sn))),
        CheckIn::Unknown => Err(ApiError::unknown_ticket(format!("no ticket {}", payload.sn))),
    }
}

/// The gate is configured and sent its own secret.
fn check_gate(state: &AppState, headers: &HeaderMap, gate_id: &str) -> Result<(), ApiError> {
    let key = headers.get("x-gate-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    let known = state.gates.get(gate_id);
    if known.is_none_or(|k| *k != Sha256::digest(key.as_bytes()).to_vec()) {
        return Err(ApiError::bad_gate_key(format!("gate {gate_id:?} is not known with that key")));
    }
    Ok(())
}

fn qr_error(e: &QrError) -> &'static str {
    match e {
        QrError::Malformed => "the code is not a chepiao ticket",
        QrError::UnknownKey => "the code is signed with a key this server does not know",
        QrError::BadSignature => "the code's signature does not match its contents",
    }
}

/// Scans one upload may carry.
pub const UPLOAD_SCANS_MAX: usize = 1_000;
/// How far in the future an offline scan's time may be (the gate's clock runs ahead).
pub const UPLOAD_FUTURE_SKEW_S: i64 = 300;

/// `POST /api/v1/checkin/uploads`: what an offline gate accepted while it had no network.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanUpload {
    pub gate_id: String,
    pub scans: Vec<OfflineScan>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfflineScan {
    pub qr: String,
    pub station: String,
    /// When the gate scanned it (RFC 3339, the gate's clock).
    pub scanned_at: String,
}

/// One scan: where and when, by which gate.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanRef {
    pub gate_id: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanResult {
    pub ticket_sn: Option<String>,
    /// ACCEPTED (checked in by this scan, or this same scan uploaded before), DUPLICATE (checked
    /// in before by another scan: `first`), REVOKED (refunded or rebooked before the scan
    /// reached the server), INVALID (bad code, wrong station, a time in the future).
    pub result: String,
    pub message: String,
    /// The scan that checked the ticket in first, for a DUPLICATE.
    pub first: Option<ScanRef>,
    /// This scan.
    pub this: ScanRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadReport {
    pub results: Vec<ScanResult>,
}

/// Upload an offline gate's scans. Each is checked in as of its scan time, exactly once (I5):
/// the report names every duplicate with both scans, and every ticket that was revoked. Uploading
/// the same scans again answers the same.
#[utoipa::path(post, path = "/api/v1/checkin/uploads", tag = "tickets", request_body = ScanUpload,
    params(("X-Gate-Key" = String, Header, description = "the gate's secret")),
    responses((status = 200, body = UploadReport), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ScanUpload>,
) -> Result<Json<UploadReport>, ApiError> {
    check_gate(&state, &headers, &req.gate_id)?;
    if req.scans.len() > UPLOAD_SCANS_MAX {
        return Err(ApiError::bad_parameter(format!("`scans`: at most {UPLOAD_SCANS_MAX} per upload")));
    }
    let mut results = Vec::with_capacity(req.scans.len());
    for scan in &req.scans {
        results.push(apply_scan(&state, &req.gate_id, scan).await?);
    }
    Ok(Json(UploadReport { results }))
}

async fn apply_scan(state: &AppState, gate_id: &str, scan: &OfflineScan) -> Result<ScanResult, ApiError> {
    let this = ScanRef { gate_id: gate_id.to_string(), at: scan.scanned_at.clone() };
    let report = |sn: Option<String>, result: &str, message: String, first: Option<ScanRef>| ScanResult {
        ticket_sn: sn,
        result: result.to_string(),
        message,
        first,
        this: this.clone(),
    };
    let at_ms = match chrono::DateTime::parse_from_rfc3339(&scan.scanned_at) {
        Ok(t) if t.timestamp() <= crate::flow::orders::now_ms() / 1000 + UPLOAD_FUTURE_SKEW_S => t.timestamp_millis(),
        _ => return Ok(report(None, "INVALID", "`scanned_at`: not an RFC 3339 time, or in the future".into(), None)),
    };
    let payload = match state.signer.verify(&scan.qr) {
        Ok(p) => p,
        Err(e) => return Ok(report(None, "INVALID", qr_error(&e).into(), None)),
    };
    let sn = Some(payload.sn.clone());
    if payload.from != scan.station.trim() {
        let message = format!("boards at {}, scanned at {}", payload.from, scan.station);
        return Ok(report(sn, "INVALID", message, None));
    }
    let found = state.store.check_in(&payload.sn, gate_id, &payload.from, at_ms).await?;
    metrics::counter!("chepiao_checkins_offline_total", "result" => match &found {
        CheckIn::Accepted => "accepted",
        CheckIn::AlreadyCheckedIn { .. } => "again",
        CheckIn::Revoked(_) => "revoked",
        CheckIn::Unknown => "unknown",
    })
    .increment(1);
    let out = match found {
        CheckIn::Accepted => report(sn, "ACCEPTED", "checked in".into(), None),
        CheckIn::AlreadyCheckedIn { gate_id: first_gate, at_ms: first_ms }
            if first_gate == gate_id && first_ms == at_ms =>
        {
            report(sn, "ACCEPTED", "this scan was uploaded before".into(), None)
        }
        CheckIn::AlreadyCheckedIn { gate_id: first_gate, at_ms: first_ms } => {
            let first = ScanRef { gate_id: first_gate, at: crate::routes::orders::rfc3339(first_ms) };
            let message = format!("checked in before at gate {} at {}", first.gate_id, first.at);
            audit_scan(state, "checkin.offline.duplicate", &payload.sn, &message, gate_id, &scan.scanned_at).await?;
            report(sn, "DUPLICATE", message, Some(first))
        }
        CheckIn::Revoked(status) => {
            let message = format!("the ticket is {status}: it was revoked");
            audit_scan(state, "checkin.offline.revoked", &payload.sn, &message, gate_id, &scan.scanned_at).await?;
            report(sn, "REVOKED", message, None)
        }
        CheckIn::Unknown => report(sn, "INVALID", "no such ticket".into(), None),
    };
    Ok(out)
}

/// Duplicates and revoked tickets found at upload go into the audit log: someone travelled on
/// a ticket twice, or on one that was refunded.
async fn audit_scan(state: &AppState, kind: &str, sn: &str, what: &str, gate: &str, at: &str) -> Result<(), ApiError> {
    let entry = chepiao_store::AuditEntry {
        at_ms: crate::flow::orders::now_ms(),
        kind: kind.into(),
        subject: sn.into(),
        detail: format!("{what}; offline scan at gate {gate} at {at}"),
    };
    state.store.audit_append(&entry).await?;
    Ok(())
}

/// Revocations one call returns.
pub const REVOCATIONS_PAGE_MAX: u32 = 1_000;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub ticket_sn: String,
    pub revoked_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RevocationPage {
    pub revoked: Vec<Revoked>,
    /// The cursor for the next call (`since=`); equal to the one given when nothing is new.
    pub next: i64,
}

/// Tickets gates must refuse (refunded, rebooked), after cursor `since` (start with 0). Gates
/// only: `X-Gate-Key` of any configured gate.
#[utoipa::path(get, path = "/api/v1/checkin/revocations", tag = "tickets",
    params(("since" = i64, Query, description = "cursor; 0 for everything"),
           ("X-Gate-Key" = String, Header, description = "a gate's secret")),
    responses((status = 200, body = RevocationPage), (status = 401, body = crate::error::ErrorBody)))]
pub async fn revocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: crate::routes::Params,
) -> Result<Json<RevocationPage>, ApiError> {
    let key = Sha256::digest(headers.get("x-gate-key").and_then(|v| v.to_str().ok()).unwrap_or("").as_bytes()).to_vec();
    if !state.gates.values().any(|k| *k == key) {
        return Err(ApiError::bad_gate_key("revocations are for gates: send `X-Gate-Key`"));
    }
    let since: i64 = params.required("since")?;
    if since < 0 {
        return Err(ApiError::bad_parameter("parameter `since`: a cursor from 0"));
    }
    let found = state.store.revocations(since, REVOCATIONS_PAGE_MAX).await?;
    let next = found.last().map_or(since, |r| r.seq);
    let revoked = found
        .into_iter()
        .map(|r| Revoked { ticket_sn: r.ticket_sn, revoked_at: crate::routes::orders::rfc3339(r.revoked_at_ms) })
        .collect();
    Ok(Json(RevocationPage { revoked, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_keys_come_from_config_and_the_environment() {
        let keys = gate_keys(&[Secret("a=1".into()), Secret("bad".into())], Some(" b=2 ,c=, =3,"));
        let mut ids: Vec<_> = keys.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(keys["b"], Sha256::digest(b"2").to_vec());
    }
}
