//! Check-in at the gate. Which gate may ask is the server's business (gate keys); this decides.
//!
//! Online: the QR code's Ed25519 signature, the station and the validity window are checked
//! first; then one SQL update moves the ticket ISSUED → CHECKED_IN, so a ticket checks in once,
//! ever (I5): a second scan is refused, a refunded or rebooked ticket is revoked.
//!
//! Offline uploads: each scan an offline gate accepted is checked in as of its scan time,
//! exactly once. The report names every duplicate with both scans and every ticket revoked
//! before the scan reached the server; both go into the audit log (someone travelled on a
//! ticket twice, or on one that was refunded).

use chepiao_api::checkin::{OfflineScan, ScanRef, ScanResult};
use chepiao_api::qr::{QrError, QrPayload};
use chepiao_store::{AuditEntry, CheckIn, Scan};

use crate::context::Flow;
use crate::error::{FlowError, Result};
use crate::time::rfc3339;

/// How far in the future an offline scan's time may be (the gate's clock runs ahead).
pub const UPLOAD_FUTURE_SKEW_S: i64 = 300;

pub fn qr_error(e: &QrError) -> &'static str {
    match e {
        QrError::Malformed => "the code is not a chepiao ticket",
        QrError::UnknownKey => "the code is signed with a key this server does not know",
        QrError::BadSignature => "the code's signature does not match its contents",
    }
}

fn checkin_label(c: &CheckIn) -> &'static str {
    match c {
        CheckIn::Accepted => "accepted",
        CheckIn::AlreadyCheckedIn { .. } => "again",
        CheckIn::Revoked(_) => "revoked",
        CheckIn::Unknown => "unknown",
    }
}

/// Check in the ticket of `qr` at `station` by gate `gate_id`, now. Returns its ticket_sn.
pub async fn check_in(flow: &Flow, gate_id: &str, qr: &str, station: &str) -> Result<String> {
    let payload = flow.signer.verify(qr).map_err(|e| FlowError::BadTicketCode(qr_error(&e).into()))?;
    if payload.from != station.trim() {
        return Err(FlowError::WrongStation(format!(
            "ticket {} boards at {}, not {station}",
            payload.sn, payload.from
        )));
    }
    let now_ms = flow.now_ms();
    let now_s = now_ms / 1000;
    if now_s < payload.nbf || now_s > payload.exp {
        return Err(FlowError::OutsideValidity(format!(
            "ticket {} is valid from {} to {}",
            payload.sn,
            rfc3339(payload.nbf * 1000),
            rfc3339(payload.exp * 1000)
        )));
    }
    let scan =
        Scan { ticket_sn: payload.sn.clone(), gate_id: gate_id.into(), station: payload.from.clone(), at_ms: now_ms };
    let result = flow.store.check_in(&scan).await?;
    metrics::counter!("chepiao_checkins_total", "result" => checkin_label(&result)).increment(1);
    match result {
        CheckIn::Accepted => Ok(payload.sn),
        CheckIn::AlreadyCheckedIn { gate_id, at_ms } => Err(FlowError::AlreadyCheckedIn(format!(
            "ticket {} was checked in at gate {gate_id} at {}",
            payload.sn,
            rfc3339(at_ms)
        ))),
        CheckIn::Revoked(status) => Err(FlowError::Revoked(format!("ticket {} is {status}", payload.sn))),
        CheckIn::Unknown => Err(FlowError::UnknownTicket(format!("no ticket {}", payload.sn))),
    }
}

/// Reconcile one offline scan by gate `gate_id` (see the module doc).
pub async fn apply_scan(flow: &Flow, gate_id: &str, scan: &OfflineScan) -> Result<ScanResult> {
    let this = ScanRef { gate_id: gate_id.to_string(), at: scan.scanned_at.clone() };
    let report = |sn: Option<String>, result: &str, message: String, first: Option<ScanRef>| ScanResult {
        ticket_sn: sn,
        result: result.to_string(),
        message,
        first,
        this: this.clone(),
    };
    let at_ms = match chrono::DateTime::parse_from_rfc3339(&scan.scanned_at) {
        Ok(t) if t.timestamp() <= flow.now_ms() / 1000 + UPLOAD_FUTURE_SKEW_S => t.timestamp_millis(),
        _ => return Ok(report(None, "INVALID", "`scanned_at`: not an RFC 3339 time, or in the future".into(), None)),
    };
    let payload: QrPayload = match flow.signer.verify(&scan.qr) {
        Ok(p) => p,
        Err(e) => return Ok(report(None, "INVALID", qr_error(&e).into(), None)),
    };
    let sn = Some(payload.sn.clone());
    if payload.from != scan.station.trim() {
        let message = format!("boards at {}, scanned at {}", payload.from, scan.station);
        return Ok(report(sn, "INVALID", message, None));
    }
    let stored = Scan { ticket_sn: payload.sn.clone(), gate_id: gate_id.into(), station: payload.from.clone(), at_ms };
    let found = flow.store.check_in(&stored).await?;
    metrics::counter!("chepiao_checkins_offline_total", "result" => checkin_label(&found)).increment(1);
    let audit = |kind: &'static str, message: &str| AuditEntry {
        at_ms: flow.now_ms(),
        kind: kind.into(),
        subject: payload.sn.clone(),
        detail: format!("{message}; offline scan at gate {gate_id} at {}", scan.scanned_at),
    };
    Ok(match found {
        CheckIn::Accepted => report(sn, "ACCEPTED", "checked in".into(), None),
        CheckIn::AlreadyCheckedIn { gate_id: first_gate, at_ms: first_ms }
            if first_gate == gate_id && first_ms == at_ms =>
        {
            report(sn, "ACCEPTED", "this scan was uploaded before".into(), None)
        }
        CheckIn::AlreadyCheckedIn { gate_id: first_gate, at_ms: first_ms } => {
            let first = ScanRef { gate_id: first_gate, at: rfc3339(first_ms) };
            let message = format!("checked in before at gate {} at {}", first.gate_id, first.at);
            flow.store.audit_append(&audit("checkin.offline.duplicate", &message)).await?;
            report(sn, "DUPLICATE", message, Some(first))
        }
        CheckIn::Revoked(status) => {
            let message = format!("the ticket is {status}: it was revoked");
            flow.store.audit_append(&audit("checkin.offline.revoked", &message)).await?;
            report(sn, "REVOKED", message, None)
        }
        CheckIn::Unknown => report(sn, "INVALID", "no such ticket".into(), None),
    })
}
