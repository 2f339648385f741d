//! Ticket QR payloads, signed with Ed25519.
//!
//! A QR code carries `CP1.<payload>.<signature>`, both parts base64url without padding. The
//! payload is JSON (ticket_sn, run, seat, journey, a masked passenger hint, the validity window
//! and the key id), so a gate that holds only the published public keys can check a ticket with
//! no network. The key id is the first 8 bytes of SHA-256 over the public key, hex: keys rotate
//! by moving the old public key to `ticket_keys_retired`, which keeps it published and accepted.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const QR_PREFIX: &str = "CP1";

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

pub struct TicketSigner {
    key: SigningKey,
    kid: String,
    /// Every key a gate should accept: the current one first.
    ring: KeyRing,
}

/// The public keys a ticket may be signed with, by key id. The server's and an offline gate's
/// (synced from `/api/v1/checkin/keys`) verify alike.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<(String, VerifyingKey)>,
}

impl KeyRing {
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

fn parse_public(b64: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = B64
        .decode(b64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{b64:?} is not base64 of 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

pub fn key_id(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl TicketSigner {
    /// `seed` is the current private key; `retired` are base64 public keys still accepted.
    pub fn new(seed: [u8; 32], retired: &[String]) -> Result<TicketSigner, String> {
        let key = SigningKey::from_bytes(&seed);
        let current = key.verifying_key();
        let kid = key_id(&current);
        let mut keys = vec![(kid.clone(), current)];
        for r in retired {
            let vk = parse_public(r).map_err(|e| format!("ticket_keys_retired: {e}"))?;
            keys.push((key_id(&vk), vk));
        }
        Ok(TicketSigner { key, kid, ring: KeyRing { keys } })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// (key id, base64 public key) of every accepted key, current first.
    pub fn public_keys(&self) -> Vec<(String, String)> {
        self.ring.public_keys()
    }

    pub fn sign(&self, payload: &QrPayload) -> String {
        debug_assert_eq!(payload.kid, self.kid);
        let json = serde_json::to_vec(payload).expect("a payload always serialises");
        let sig = self.key.sign(&json);
        format!("{QR_PREFIX}.{}.{}", B64URL.encode(&json), B64URL.encode(sig.to_bytes()))
    }

    /// Check a QR code's signature against the accepted keys and return what it says.
    pub fn verify(&self, qr: &str) -> Result<QrPayload, QrError> {
        self.ring.verify(qr)
    }
}

/// The QR code of `text` as an SVG image.
pub fn qr_svg(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).map_err(|e| e.to_string())?;
    Ok(code.render::<qrcode::render::svg::Color>().min_dimensions(256, 256).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(kid: &str) -> QrPayload {
        QrPayload {
            sn: "E1000".into(),
            run: "G1-20261122".into(),
            from: "VNP".into(),
            to: "AOH".into(),
            class: "SECOND".into(),
            coach: 5,
            seat: "05A".into(),
            pax: "张* 1101**********0011".into(),
            nbf: 1,
            exp: 2,
            kid: kid.into(),
        }
    }

    #[test]
    fn signed_codes_verify_and_tampering_is_caught() {
        let signer = TicketSigner::new([1; 32], &[]).unwrap();
        let qr = signer.sign(&payload(signer.kid()));
        assert_eq!(signer.verify(&qr).unwrap(), payload(signer.kid()));
        // Change the seat inside the payload, keep the signature.
        let mut forged = payload(signer.kid());
        forged.seat = "01A".into();
        let body = B64URL.encode(serde_json::to_vec(&forged).unwrap());
        let sig = qr.rsplit('.').next().unwrap();
        assert_eq!(signer.verify(&format!("CP1.{body}.{sig}")), Err(QrError::BadSignature));
        assert_eq!(signer.verify("CP1.x"), Err(QrError::Malformed));
        // Another key's code is unknown here, until its public key is listed as retired.
        let other = TicketSigner::new([2; 32], &[]).unwrap();
        let old_qr = other.sign(&payload(other.kid()));
        assert_eq!(signer.verify(&old_qr), Err(QrError::UnknownKey));
        let (_, old_public) = other.public_keys().remove(0);
        let rotated = TicketSigner::new([1; 32], &[old_public]).unwrap();
        assert_eq!(rotated.verify(&old_qr).unwrap().sn, "E1000");
        assert_eq!(rotated.public_keys().len(), 2);
        assert!(qr_svg(&qr).unwrap().starts_with("<?xml"));
        // A gate's ring, built from the published keys, verifies offline what the server does.
        let gate = KeyRing::from_public(&rotated.public_keys()).unwrap();
        assert_eq!(gate.verify(&old_qr).unwrap().sn, "E1000");
        assert_eq!(gate.verify(&qr).unwrap().sn, "E1000");
        let mut lying = rotated.public_keys();
        lying[0].0 = "0011223344556677".into();
        assert!(KeyRing::from_public(&lying).is_err(), "a key id that does not match its key is refused");
    }
}
