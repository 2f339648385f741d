//! What a ticket's QR code says, and how anyone holding the published keys checks it.
//!
//! A code is `CP1.<payload>.<signature>`, both parts base64url without padding. The payload is
//! JSON (ticket_sn, run, seat, journey, a masked passenger hint, the validity window and the
//! key id) signed with Ed25519, so a gate holding only the public keys of
//! `/api/v1/checkin/keys` checks a ticket with no network. The key id is the first 8 bytes of
//! SHA-256 over the public key, hex. The server signs (`chepiao_flow::signing`); the server and
//! offline gates verify with the same [`KeyRing`].

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const QR_PREFIX: &str = "CP1";
/// Longest QR code accepted for checking (a real one is ~400 bytes).
pub const QR_LEN_MAX: usize = 4_096;

/// What a QR code says about its ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrPayload {
    pub sn: String,
    pub run: String,
    pub from: String,
    pub to: String,
    pub class: String,
    pub coach: u8,
    pub seat: String,
    /// Masked passenger name and ID number, for the gate's screen.
    pub pax: String,
    /// Valid from / until, Unix seconds (boarding window around the journey).
    pub nbf: i64,
    pub exp: i64,
    pub kid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("not a chepiao ticket code")]
    Malformed,
    #[error("signed with an unknown key")]
    UnknownKey,
    #[error("the signature does not match")]
    BadSignature,
}

/// The public keys a ticket may be signed with, by key id.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<(String, VerifyingKey)>,
}

/// The key id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A base64 public key.
pub fn parse_public(b64: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = B64
        .decode(b64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{b64:?} is not base64 of 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

impl KeyRing {
    /// From verifying keys, in order (the current one first).
    pub fn new(keys: Vec<VerifyingKey>) -> KeyRing {
        KeyRing { keys: keys.into_iter().map(|k| (key_id(&k), k)).collect() }
    }

    /// From (key id, base64 public key) pairs, as `/api/v1/checkin/keys` lists them. The key
    /// id is recomputed from the key: a listed id that does not match is refused.
    pub fn from_public(keys: &[(String, String)]) -> Result<KeyRing, String> {
        let mut ring = KeyRing::default();
        for (kid, b64) in keys {
            let vk = parse_public(b64)?;
            if key_id(&vk) != *kid {
                return Err(format!("key {kid}: its id does not match the key"));
            }
            ring.keys.push((kid.clone(), vk));
        }
        Ok(ring)
    }

    /// (key id, base64 public key) of every key, in order.
    pub fn public_keys(&self) -> Vec<(String, String)> {
        self.keys.iter().map(|(kid, vk)| (kid.clone(), B64.encode(vk.as_bytes()))).collect()
    }

    /// Check a QR code's signature (strictly: no malleable or small-order signatures) and
    /// return what it says.
    pub fn verify(&self, qr: &str) -> Result<QrPayload, QrError> {
        if qr.len() > QR_LEN_MAX {
            return Err(QrError::Malformed);
        }
        let mut parts = qr.trim().split('.');
        let (Some(QR_PREFIX), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(QrError::Malformed);
        };
        let json = B64URL.decode(body).map_err(|_| QrError::Malformed)?;
        let sig: [u8; 64] = B64URL.decode(sig).ok().and_then(|s| s.try_into().ok()).ok_or(QrError::Malformed)?;
        let payload: QrPayload = serde_json::from_slice(&json).map_err(|_| QrError::Malformed)?;
        let (_, vk) = self.keys.iter().find(|(kid, _)| *kid == payload.kid).ok_or(QrError::UnknownKey)?;
        vk.verify_strict(&json, &Signature::from_bytes(&sig)).map_err(|_| QrError::BadSignature)?;
        Ok(payload)
    }
}

/// A code from a payload and its signature (the signer's half of the format).
pub fn encode(payload_json: &[u8], signature: &[u8; 64]) -> String {
    format!("{QR_PREFIX}.{}.{}", B64URL.encode(payload_json), B64URL.encode(signature))
}
