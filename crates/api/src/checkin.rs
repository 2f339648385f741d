//! Check-in at the gate, online and offline (uploads), and the revocation list gates sync.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckInRequest {
    /// The scanned code (`CP1.…`).
    pub qr: String,
    /// Telecode of the gate's station.
    pub station: String,
    pub gate_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckInAccepted {
    pub ticket_sn: String,
    /// `ACCEPTED`
    pub result: String,
}

/// Scans one upload may carry.
pub const UPLOAD_SCANS_MAX: usize = 1_000;

/// `POST /api/v1/checkin/uploads`: what an offline gate accepted while it had no network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScanUpload {
    pub gate_id: String,
    pub scans: Vec<OfflineScan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OfflineScan {
    pub qr: String,
    pub station: String,
    /// When the gate scanned it (RFC 3339, the gate's clock).
    pub scanned_at: String,
}

/// One scan: where and when, by which gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScanRef {
    pub gate_id: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadReport {
    pub results: Vec<ScanResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revoked {
    pub ticket_sn: String,
    pub revoked_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevocationPage {
    pub revoked: Vec<Revoked>,
    /// The cursor for the next call (`since=`); equal to the one given when nothing is new.
    pub next: i64,
}
