//! Passwords and tokens.
//!
//! Passwords are hashed with argon2id (default parameters) on the blocking pool, at most one
//! hash per core at a time: hashing is deliberately slow, and an unbounded number of them would
//! starve the server. An unknown username still costs one verification (against a fixed dummy
//! hash), so response times do not tell which usernames exist.
//!
//! Tokens are JWTs signed with HS256 (jsonwebtoken with only its RustCrypto backend), carrying
//! the user id, the username, `exp`, `iat` and `typ: "access"`. Verification maps failures to
//! the API's codes: 40005 another algorithm, 40006 malformed or bad signature, 40007 expired or
//! missing claims, 40008 not an access token.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::http::error::ApiError;

pub const TOKEN_TYPE_ACCESS: &str = "access";
/// Seconds of clock skew accepted on `exp`.
const LEEWAY_S: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub name: String,
    pub iat: u64,
    pub exp: u64,
    pub typ: String,
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Built once: every request with a token is checked against it.
    validation: Validation,
    pub token_ttl_s: u64,
    hashing: Arc<Semaphore>,
    dummy_hash: String,
}

fn blocking_failed(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("password hashing task failed: {e}"))
}

impl Auth {
    pub fn new(secret: [u8; 32], token_ttl_s: u64) -> Auth {
        let permits = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Auth {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            token_ttl_s,
            hashing: Arc::new(Semaphore::new(permits)),
            dummy_hash: hash_now("not a password of anyone").expect("hashing works"),
        }
    }

    /// A token for `user_id`, and when it expires (Unix seconds).
    pub fn issue(&self, user_id: i64, username: &str, now_s: u64) -> (String, u64) {
        let exp = now_s + self.token_ttl_s;
        let claims =
            Claims { sub: user_id.to_string(), name: username.into(), iat: now_s, exp, typ: TOKEN_TYPE_ACCESS.into() };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signs");
        (token, exp)
    }

    pub fn verify(&self, token: &str) -> Result<(i64, String), ApiError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::InvalidAlgorithm => match jsonwebtoken::decode_header(token) {
                    Ok(header) => {
                        ApiError::bad_signing_method(format!("tokens are signed with HS256, not {:?}", header.alg))
                    }
                    Err(_) => ApiError::bad_signing_method("wrong signing algorithm"),
                },
                ErrorKind::ExpiredSignature => ApiError::invalid_claims("token expired"),
                ErrorKind::MissingRequiredClaim(c) => ApiError::invalid_claims(format!("token lacks `{c}`")),
                ErrorKind::Json(_) => ApiError::invalid_claims("token claims are not chepiao's"),
                _ => ApiError::invalid_token("invalid token"),
            })?;
        if data.claims.typ != TOKEN_TYPE_ACCESS {
            return Err(ApiError::wrong_token_type(format!("a {:?} token cannot be used here", data.claims.typ)));
        }
        let id = data.claims.sub.parse().map_err(|_| ApiError::invalid_claims("token subject is not a user id"))?;
        Ok((id, data.claims.name))
    }

    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        let _permit = self.hashing.acquire().await.expect("semaphore is never closed");
        tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(blocking_failed)?
    }

    /// Whether `password` matches `hash`; with no hash (unknown user), checks against a dummy
    /// so that the answer takes as long.
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let _permit = self.hashing.acquire().await.expect("semaphore is never closed");
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .map_err(blocking_failed)?;
        Ok(ok && known)
    }
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("hashing: {e}")))
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct AuthUser {
    pub id: i64,
    pub username: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser
where
    Arc<Auth>: FromRef<S>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::authentication_required("this needs `Authorization: Bearer <token>` from login")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::invalid_token("the Authorization header must be `Bearer <token>`"))?;
        let (id, username) = Arc::<Auth>::from_ref(state).verify(token.trim())?;
        Ok(AuthUser { id, username })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_fail_with_the_right_codes() {
        let auth = Auth::new([1; 32], 3600);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let (token, exp) = auth.issue(42, "alice", now);
        assert_eq!(exp, now + 3600);
        assert_eq!(auth.verify(&token).unwrap(), (42, "alice".to_string()));
        let code = |t: &str| auth.verify(t).unwrap_err().code;
        assert_eq!(code("garbage"), 40006);
        assert_eq!(code(&Auth::new([2; 32], 60).issue(42, "alice", now).0), 40006, "other key");
        let (old, _) = auth.issue(42, "alice", now - 7200);
        assert_eq!(code(&old), 40007, "expired");
        let claims = Claims { sub: "42".into(), name: "a".into(), iat: now, exp: now + 60, typ: "refresh".into() };
        let key = EncodingKey::from_secret(&[1; 32]);
        let refresh = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert_eq!(code(&refresh), 40008);
        let hs512 = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).unwrap();
        assert_eq!(code(&hs512), 40005);
    }
}
