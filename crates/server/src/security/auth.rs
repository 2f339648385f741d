//! Passwords and tokens.
//!
//! Passwords are hashed with argon2id (default parameters) on the blocking pool, at most one
//! hash per core at a time: hashing is deliberately slow, and an unbounded number of them would
//! starve the server. An unknown username still costs one verification (against a fixed dummy
//! hash), so response times do not tell which usernames exist.
//!
//! Tokens are JWTs signed with HS256 (jsonwebtoken with only its RustCrypto backend), carrying
//! the user id, the username, `exp`, `iat`, `iss: "chepiao"`, `aud: "chepiao-api"`,
//! `typ: "access"` and `ver`, the user's token version. A password change or a logout bumps the
//! version in the store, so every earlier token stops working; versions are cached for
//! [`VERSION_CACHE_TTL`] (a node updates its cache at once; another node within that time).
//! Verification maps failures to the API's codes: 40005 another algorithm, 40006 malformed or
//! bad signature, 40007 expired, missing or wrong claims (a token of an old version too),
//! 40008 not an access token.
//!
//! Logins are throttled per username as well as per address (the layer's IP limit): guessing
//! one account's password from many addresses meets the same bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

use crate::hotsale::risk::KeyedLimiter;
use crate::http::error::ApiError;

pub const TOKEN_TYPE_ACCESS: &str = "access";
pub const ISSUER: &str = "chepiao";
pub const AUDIENCE: &str = "chepiao-api";
/// How long a cached token version is believed.
pub const VERSION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Users whose token version is cached at most (the cache starts over past it).
const VERSION_CACHE_MAX: usize = 1_000_000;
/// Logins per username: a burst of ten, then one every six seconds.
const LOGINS_PER_MINUTE: u32 = 10;
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
    pub iss: String,
    pub aud: String,
    /// The user's token version when it was issued.
    #[serde(default)]
    pub ver: u32,
}

/// Signing and checking tokens: no store, no clock of its own (the fuzz target drives it).
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Built once: every request with a token is checked against it.
    validation: Validation,
    pub token_ttl_s: u64,
}

pub struct Auth {
    pub tokens: Tokens,
    hashing: Arc<Semaphore>,
    dummy_hash: String,
    store: Arc<dyn chepiao_store::Store>,
    versions: Mutex<HashMap<i64, (u32, Instant)>>,
    logins: KeyedLimiter<String>,
}

fn blocking_failed(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("password hashing task failed: {e}"))
}

impl Tokens {
    pub fn new(secret: [u8; 32], token_ttl_s: u64) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        Tokens {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            token_ttl_s,
        }
    }

    /// A token for `user_id` at token version `ver`, and when it expires (Unix seconds).
    pub fn issue(&self, user_id: i64, username: &str, ver: u32, now_s: u64) -> (String, u64) {
        let exp = now_s + self.token_ttl_s;
        let claims = Claims {
            sub: user_id.to_string(),
            name: username.into(),
            iat: now_s,
            exp,
            typ: TOKEN_TYPE_ACCESS.into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            ver,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signs");
        (token, exp)
    }

    /// Signature and claims only (no version check): (user, name, version).
    pub fn verify(&self, token: &str) -> Result<(i64, String, u32), ApiError> {
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
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    ApiError::invalid_claims("token issued by or for another service")
                }
                _ => ApiError::invalid_token("invalid token"),
            })?;
        if data.claims.typ != TOKEN_TYPE_ACCESS {
            return Err(ApiError::wrong_token_type(format!("a {:?} token cannot be used here", data.claims.typ)));
        }
        let id = data.claims.sub.parse().map_err(|_| ApiError::invalid_claims("token subject is not a user id"))?;
        Ok((id, data.claims.name, data.claims.ver))
    }
}

impl Auth {
    pub fn new(secret: [u8; 32], token_ttl_s: u64, store: Arc<dyn chepiao_store::Store>) -> Auth {
        let permits = std::thread::available_parallelism().map_or(1, |n| n.get());
        let quota = governor::Quota::per_minute(std::num::NonZeroU32::new(LOGINS_PER_MINUTE).expect("not zero"));
        Auth {
            tokens: Tokens::new(secret, token_ttl_s),
            hashing: Arc::new(Semaphore::new(permits)),
            dummy_hash: hash_now("not a password of anyone").expect("hashing works"),
            store,
            versions: Mutex::new(HashMap::new()),
            logins: governor::RateLimiter::dashmap_with_hasher(quota, Default::default()),
        }
    }

    /// A login attempt for `username` (429 past the per-username rate).
    pub fn login_attempt(&self, username: &str) -> Result<(), ApiError> {
        self.logins
            .check_key(&username.to_lowercase())
            .map_err(|_| ApiError::rate_limited(format!("too many logins for {username:?}: wait a few seconds")))
    }

    /// Forget idle login buckets (called now and then).
    pub fn tidy(&self) {
        self.logins.retain_recent();
    }

    /// A token for `user_id` at token version `ver`, and when it expires (Unix seconds).
    pub fn issue(&self, user_id: i64, username: &str, ver: u32, now_s: u64) -> (String, u64) {
        self.tokens.issue(user_id, username, ver, now_s)
    }

    /// The token's user and name, if its signature, claims and version hold.
    pub async fn verify_current(&self, token: &str) -> Result<(i64, String), ApiError> {
        let (id, name, ver) = self.verify(token)?;
        if self.version(id).await? != Some(ver) {
            return Err(ApiError::invalid_claims("token revoked (password changed or logged out): log in again"));
        }
        Ok((id, name))
    }

    /// The user's token version, from the cache or the store.
    async fn version(&self, user_id: i64) -> Result<Option<u32>, ApiError> {
        if let Some((v, at)) = self.versions.lock().expect("never poisoned").get(&user_id)
            && at.elapsed() < VERSION_CACHE_TTL
        {
            return Ok(Some(*v));
        }
        let v = self.store.token_version(user_id).await?;
        if let Some(v) = v {
            self.remember_version(user_id, v);
        }
        Ok(v)
    }

    /// The user's new token version (after a password change or a logout).
    pub fn remember_version(&self, user_id: i64, version: u32) {
        let mut versions = self.versions.lock().expect("never poisoned");
        if versions.len() >= VERSION_CACHE_MAX {
            versions.clear();
        }
        versions.insert(user_id, (version, Instant::now()));
    }

    /// Signature and claims only (no version check): (user, name, version).
    pub fn verify(&self, token: &str) -> Result<(i64, String, u32), ApiError> {
        self.tokens.verify(token)
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
        let (id, username) = Arc::<Auth>::from_ref(state).verify_current(token.trim()).await?;
        Ok(AuthUser { id, username })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(typ: &str, iss: &str, now: u64) -> Claims {
        let (iss, aud) = (iss.into(), AUDIENCE.into());
        Claims { sub: "42".into(), name: "a".into(), iat: now, exp: now + 60, typ: typ.into(), iss, aud, ver: 0 }
    }

    #[tokio::test]
    async fn tokens_round_trip_and_fail_with_the_right_codes() {
        let dir = std::env::temp_dir().join(format!("chepiao-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("auth.db");
        let sqlite: Arc<dyn chepiao_store::Store> =
            Arc::new(chepiao_store_sqlite::SqliteStore::open(db.to_str().unwrap()).await.unwrap());
        let store = || sqlite.clone();
        let auth = Auth::new([1; 32], 3600, store());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let (token, exp) = auth.issue(42, "alice", 3, now);
        assert_eq!(exp, now + 3600);
        assert_eq!(auth.verify(&token).unwrap(), (42, "alice".to_string(), 3));
        let code = |t: &str| auth.verify(t).unwrap_err().code;
        assert_eq!(code("garbage"), 40006);
        assert_eq!(code(&Auth::new([2; 32], 60, store()).issue(42, "alice", 0, now).0), 40006, "other key");
        let (old, _) = auth.issue(42, "alice", 0, now - 7200);
        assert_eq!(code(&old), 40007, "expired");
        let key = EncodingKey::from_secret(&[1; 32]);
        let foreign =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(TOKEN_TYPE_ACCESS, "other", now), &key)
                .unwrap();
        assert_eq!(code(&foreign), 40007, "another issuer");
        let claims = claims("refresh", ISSUER, now);
        let refresh = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert_eq!(code(&refresh), 40008);
        let hs512 = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).unwrap();
        assert_eq!(code(&hs512), 40005);
        std::fs::remove_dir_all(&dir).ok();
    }
}
