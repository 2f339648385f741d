//! The offline gate: the client side of check-in, for a gate device that may lose its network.
//!
//! While online, the gate *syncs*: it fetches the public keys tickets are signed with
//! (`/api/v1/checkin/keys`, current and retired) and the revocation list from its cursor
//! (`/api/v1/checkin/revocations?since=`). Offline, it *scans*: it verifies a code with those
//! keys alone (the same [`KeyRing`] as the server), checks the station and the validity window
//! with a bounded allowance for its own clock's drift, refuses tickets revoked as of its last
//! sync and tickets it scanned itself before, and keeps every accepted scan in its state file.
//! Back online, it *uploads*: the server checks each scan in as of its scan time, exactly
//! once, and reports duplicates (with both scans) and tickets revoked after the gate's last
//! sync, which the gate could not have known.
//!
//! The state is one JSON file, replaced atomically (written aside, then renamed) after each
//! change, so a gate that loses power keeps every scan it accepted.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Client;
use crate::checkin::{OfflineScan, ScanUpload, UPLOAD_SCANS_MAX, UploadReport};
use crate::qr::{KeyRing, QrPayload};

/// The most a gate's clock may be trusted to be off by.
pub const CLOCK_SKEW_MAX_S: i64 = 900;
/// Scans kept on the gate; when full, the gate refuses to scan until an upload frees room.
pub const LOCAL_SCANS_MAX: usize = 200_000;
/// Revocation pages one sync reads (each up to 1,000 entries).
pub const SYNC_PAGES_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("gate state {0}: {1}")]
    State(String, String),
    #[error("server: {0}")]
    Server(String),
}

fn server_err(e: impl std::fmt::Display) -> GateError {
    GateError::Server(e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalScan {
    pub qr: String,
    pub ticket_sn: String,
    pub station: String,
    /// RFC 3339, the gate's clock.
    pub scanned_at: String,
    /// The ticket's own expiry (Unix s): an uploaded scan is forgotten after it.
    pub exp: i64,
    pub uploaded: bool,
}

/// Everything a gate keeps between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GateState {
    pub server: String,
    pub gate_id: String,
    /// (key id, base64 public key).
    pub keys: Vec<(String, String)>,
    pub revoked: BTreeSet<String>,
    /// The revocation cursor to sync from.
    pub cursor: i64,
    pub synced_at_ms: i64,
    pub scans: Vec<LocalScan>,
}

/// What a scan decided, on the gate alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept(Box<QrPayload>),
    /// `code` is one of BAD_CODE, WRONG_STATION, OUTSIDE_VALIDITY, REVOKED, ALREADY_SCANNED, FULL.
    Reject {
        code: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub keys: usize,
    pub new_revocations: usize,
    pub cursor: i64,
}

impl GateState {
    /// The state at `path`, or a new one for (`server`, `gate_id`) if there is none yet.
    pub fn load(path: &Path) -> Result<GateState, GateError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| GateError::State(path.display().to_string(), e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GateState::default()),
            Err(e) => Err(GateError::State(path.display().to_string(), e.to_string())),
        }
    }

    /// Write aside, flush, rename: the old state or the new one survives a power cut.
    pub fn save(&self, path: &Path) -> Result<(), GateError> {
        let fail = |e: std::io::Error| GateError::State(path.display().to_string(), e.to_string());
        let aside = path.with_extension("tmp");
        let mut f = std::fs::File::create(&aside).map_err(fail)?;
        std::io::Write::write_all(&mut f, &serde_json::to_vec(self).expect("state serialises")).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&aside, path).map_err(fail)
    }

    /// Fetch the keys and every revocation after the cursor.
    pub async fn sync(&mut self, http: &reqwest::Client, gate_key: &str, now_ms: i64) -> Result<SyncReport, GateError> {
        let api = Client::with_http(http.clone(), &self.server);
        let keys = api.keys().await.map_err(server_err)?;
        let keys: Vec<(String, String)> = keys.keys.into_iter().map(|k| (k.key_id, k.public_key)).collect();
        KeyRing::from_public(&keys).map_err(GateError::Server)?;
        self.keys = keys;
        let mut new_revocations = 0;
        for _ in 0..SYNC_PAGES_MAX {
            let page = api.revocations(gate_key, self.cursor).await.map_err(server_err)?;
            if page.next == self.cursor {
                break;
            }
            new_revocations += page.revoked.len();
            self.revoked.extend(page.revoked.into_iter().map(|r| r.ticket_sn));
            self.cursor = page.next;
        }
        self.synced_at_ms = now_ms;
        Ok(SyncReport { keys: self.keys.len(), new_revocations, cursor: self.cursor })
    }

    /// Decide a scan with no network; an accepted one is kept for upload.
    pub fn scan(&mut self, qr: &str, station: &str, now_ms: i64, skew_s: i64) -> Verdict {
        let skew_s = skew_s.clamp(0, CLOCK_SKEW_MAX_S);
        let reject = |code, message: String| Verdict::Reject { code, message };
        if self.scans.len() >= LOCAL_SCANS_MAX {
            return reject("FULL", format!("{LOCAL_SCANS_MAX} scans kept: upload before scanning more"));
        }
        let ring = match KeyRing::from_public(&self.keys) {
            Ok(ring) => ring,
            Err(e) => return reject("BAD_CODE", format!("the gate's keys are unusable ({e}): sync first")),
        };
        let p = match ring.verify(qr) {
            Ok(p) => p,
            Err(e) => return reject("BAD_CODE", e.to_string()),
        };
        if p.from != station.trim() {
            return reject("WRONG_STATION", format!("ticket {} boards at {}, not {station}", p.sn, p.from));
        }
        let now_s = now_ms / 1000;
        if now_s + skew_s < p.nbf || now_s - skew_s > p.exp {
            return reject(
                "OUTSIDE_VALIDITY",
                format!("ticket {} is valid from {} to {} (Unix s)", p.sn, p.nbf, p.exp),
            );
        }
        if self.revoked.contains(&p.sn) {
            return reject("REVOKED", format!("ticket {} was refunded or rebooked", p.sn));
        }
        if let Some(before) = self.scans.iter().find(|s| s.ticket_sn == p.sn) {
            return reject("ALREADY_SCANNED", format!("ticket {} was scanned here at {}", p.sn, before.scanned_at));
        }
        self.scans.push(LocalScan {
            qr: qr.trim().to_string(),
            ticket_sn: p.sn.clone(),
            station: station.trim().to_string(),
            scanned_at: rfc3339(now_ms),
            exp: p.exp,
            uploaded: false,
        });
        Verdict::Accept(Box::new(p))
    }

    /// Upload the scans not yet uploaded; each batch is marked uploaded once the server
    /// answered it (a lost answer uploads it again, which the server answers the same).
    pub async fn upload(
        &mut self,
        http: &reqwest::Client,
        gate_key: &str,
        now_ms: i64,
    ) -> Result<UploadReport, GateError> {
        let api = Client::with_http(http.clone(), &self.server);
        let mut report = UploadReport { results: Vec::new() };
        let pending: Vec<usize> = (0..self.scans.len()).filter(|&i| !self.scans[i].uploaded).collect();
        for chunk in pending.chunks(UPLOAD_SCANS_MAX) {
            let scans: Vec<OfflineScan> = chunk
                .iter()
                .map(|&i| OfflineScan {
                    qr: self.scans[i].qr.clone(),
                    station: self.scans[i].station.clone(),
                    scanned_at: self.scans[i].scanned_at.clone(),
                })
                .collect();
            let upload = ScanUpload { gate_id: self.gate_id.clone(), scans };
            let part = api.upload_scans(gate_key, &upload).await.map_err(server_err)?;
            for &i in chunk {
                self.scans[i].uploaded = true;
            }
            report.results.extend(part.results);
        }
        // Forget uploaded scans of tickets that have expired: they cannot be scanned again.
        self.scans.retain(|s| !s.uploaded || s.exp + CLOCK_SKEW_MAX_S >= now_ms / 1000);
        Ok(report)
    }
}

/// A time in ms as RFC 3339 in China time.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&chepiao_domain::types::china_offset())
        .to_rfc3339()
}
