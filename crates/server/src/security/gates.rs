//! Gates are devices, not passengers: check-in calls carry `X-Gate-Key`, the secret of the
//! `gate_id` they name. Secrets are kept as SHA-256 digests and compared as digests.

use std::collections::HashMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::security::secrets::Secret;

/// gate_id → SHA-256 of its secret.
pub struct Gates(HashMap<String, Vec<u8>>);

fn key_digest(headers: &HeaderMap) -> Vec<u8> {
    let key = headers.get(chepiao_api::headers::GATE_KEY).and_then(|v| v.to_str().ok()).unwrap_or("");
    Sha256::digest(key.as_bytes()).to_vec()
}

impl Gates {
    /// From the configured `gate_id=secret` entries; malformed entries are left out.
    pub fn new(configured: &[Secret]) -> Gates {
        Gates(
            configured
                .iter()
                .filter_map(|entry| entry.0.split_once('='))
                .filter(|(id, key)| !id.is_empty() && !key.is_empty())
                .map(|(id, key)| (id.to_string(), Sha256::digest(key.as_bytes()).to_vec()))
                .collect(),
        )
    }

    /// The gate `gate_id` is configured and sent its own secret.
    pub fn check(&self, headers: &HeaderMap, gate_id: &str) -> Result<(), ApiError> {
        if self.0.get(gate_id).is_none_or(|k| *k != key_digest(headers)) {
            return Err(ApiError::bad_gate_key(format!("gate {gate_id:?} is not known with that key")));
        }
        Ok(())
    }

    /// Some configured gate sent its secret (calls that name no gate: the revocation list).
    pub fn check_any(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let key = key_digest(headers);
        if !self.0.values().any(|k| *k == key) {
            return Err(ApiError::bad_gate_key("revocations are for gates: send `X-Gate-Key`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_keys_come_from_config_and_malformed_entries_are_left_out() {
        let gates =
            Gates::new(&[Secret("a=1".into()), Secret("bad".into()), Secret("c=".into()), Secret("b=2".into())]);
        let mut ids: Vec<_> = gates.0.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        let mut headers = HeaderMap::new();
        headers.insert(chepiao_api::headers::GATE_KEY, "2".parse().unwrap());
        assert!(gates.check(&headers, "b").is_ok());
        assert_eq!(gates.check(&headers, "a").unwrap_err().code, 40103);
        assert!(gates.check_any(&headers).is_ok());
    }
}
