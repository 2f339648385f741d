//! The operator's key for the admin endpoints (`X-Admin-Key`), kept as a SHA-256 digest.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;

/// None: the admin endpoints are closed.
pub struct AdminKey(Option<Vec<u8>>);

impl AdminKey {
    pub fn new(key: Option<&str>) -> AdminKey {
        AdminKey(key.filter(|k| !k.is_empty()).map(|k| Sha256::digest(k.as_bytes()).to_vec()))
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let given = headers.get(chepiao_api::headers::ADMIN_KEY).and_then(|v| v.to_str().ok()).unwrap_or("");
        match &self.0 {
            Some(k) if *k == Sha256::digest(given.as_bytes()).to_vec() => Ok(()),
            _ => Err(ApiError::invalid_token("admin endpoints need `X-Admin-Key`")),
        }
    }
}
