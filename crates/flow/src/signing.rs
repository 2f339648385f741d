//! Ticket QR codes, signed with Ed25519. The format and its verification are the public
//! contract (`chepiao_api::qr`: gates verify offline with the same code); this is the signer's
//! half. Keys rotate by moving the old public key to `ticket_keys_retired`, which keeps it
//! published and accepted.

use chepiao_api::qr::{self, KeyRing, QrError, QrPayload, parse_public};
use ed25519_dalek::{Signer, SigningKey};

pub struct TicketSigner {
    key: SigningKey,
    kid: String,
    /// Every key a gate should accept: the current one first.
    ring: KeyRing,
}

impl TicketSigner {
    /// `seed` is the current private key; `retired` are base64 public keys still accepted.
    pub fn new(seed: [u8; 32], retired: &[String]) -> Result<TicketSigner, String> {
        let key = SigningKey::from_bytes(&seed);
        let mut keys = vec![key.verifying_key()];
        for r in retired {
            keys.push(parse_public(r).map_err(|e| format!("ticket_keys_retired: {e}"))?);
        }
        Ok(TicketSigner { kid: qr::key_id(&keys[0]), key, ring: KeyRing::new(keys) })
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
        qr::encode(&json, &self.key.sign(&json).to_bytes())
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
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

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
