//! Queue tokens: `Q1.<payload>.<mac>` (base64url), the payload `{sale, uid, exp}` and an
//! HMAC-SHA256 over it. Any API node with the secret checks one without asking the queue, so
//! the buy path pays a hash, not a round trip.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Serialize, Deserialize)]
struct Payload {
    sale: String,
    uid: i64,
    /// Unix ms.
    exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a queue token, or its signature does not match")]
    Forged,
    #[error("the queue token expired")]
    Expired,
    #[error("the queue token is another user's or another sale's")]
    NotYours,
}

impl TokenError {
    /// The `result` label of `chepiao_queue_token_checks_total`.
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Forged => "forged",
            TokenError::Expired => "expired",
            TokenError::NotYours => "not_yours",
        }
    }
}

pub struct QueueTokens {
    /// Keyed once; each token clones it (keying costs two hash blocks per use otherwise).
    mac: Hmac<Sha256>,
    ttl_ms: i64,
}

impl QueueTokens {
    pub fn new(key: &[u8], ttl_s: u64) -> QueueTokens {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        QueueTokens { mac, ttl_ms: ttl_s as i64 * 1000 }
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }

    pub fn issue(&self, sale: &str, uid: i64, exp_ms: i64) -> String {
        let json = serde_json::to_vec(&Payload { sale: sale.into(), uid, exp: exp_ms }).expect("serialises");
        let mut mac = self.mac();
        mac.update(&json);
        format!("Q1.{}.{}", B64URL.encode(&json), B64URL.encode(mac.finalize().into_bytes()))
    }

    /// The token is this user's for this sale, genuine and not expired: its expiry, ms.
    pub fn check(&self, token: &str, sale: &str, uid: i64, now_ms: i64) -> Result<i64, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some("Q1"), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Forged);
        };
        let json = B64URL.decode(body).map_err(|_| TokenError::Forged)?;
        let sig = B64URL.decode(sig).map_err(|_| TokenError::Forged)?;
        let mut mac = self.mac();
        mac.update(&json);
        mac.verify_slice(&sig).map_err(|_| TokenError::Forged)?;
        let p: Payload = serde_json::from_slice(&json).map_err(|_| TokenError::Forged)?;
        if p.sale != sale || p.uid != uid {
            return Err(TokenError::NotYours);
        }
        if p.exp <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(p.exp)
    }

    /// A genuine token's id (its signature): what spending it records.
    pub fn id(token: &str) -> &str {
        token.trim().rsplit('.').next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_user_sale_and_time() {
        let t = QueueTokens::new(b"k", 150);
        let token = t.issue("s1", 7, 1_000);
        assert_eq!(t.check(&token, "s1", 7, 999), Ok(1_000));
        assert_eq!(t.check(&token, "s1", 7, 1_000), Err(TokenError::Expired));
        assert_eq!(t.check(&token, "s1", 8, 999), Err(TokenError::NotYours));
        assert_eq!(t.check(&token, "s2", 7, 999), Err(TokenError::NotYours));
        assert_eq!(QueueTokens::new(b"other", 150).check(&token, "s1", 7, 999), Err(TokenError::Forged));
        let forged =
            t.issue("s1", 7, 9_999).rsplit_once('.').unwrap().0.to_string() + "." + token.rsplit('.').next().unwrap();
        assert_eq!(t.check(&forged, "s1", 7, 999), Err(TokenError::Forged), "payload swapped, signature kept");
        assert_eq!(t.check("garbage", "s1", 7, 999), Err(TokenError::Forged));
    }
}
