//! Accounts and their passengers. Passenger PII is encrypted by the caller before it gets here;
//! the store keeps a keyed hash of the ID number to refuse a duplicate without the number, and
//! the masked form (`张* 1101**********4258`) that tickets print, so that issuing a ticket
//! needs no decryption key.

use crate::error::Result;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    /// Tokens carry it; a password change or a logout bumps it, so earlier tokens stop working.
    pub token_version: u32,
}

/// A passenger to store; PII already encrypted by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPassenger {
    pub user_id: i64,
    pub name_enc: Vec<u8>,
    pub id_type: String,
    pub id_no_enc: Vec<u8>,
    /// Keyed hash of the ID number: unique per user.
    pub id_no_index: Vec<u8>,
    /// Masked name and ID number, as a ticket prints them.
    pub masked: String,
    pub created_at_ms: i64,
}

/// A passenger as stored (PII still encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassengerRecord {
    pub id: i64,
    pub user_id: i64,
    pub name_enc: Vec<u8>,
    pub id_type: String,
    pub id_no_enc: Vec<u8>,
    /// Keyed hash of the ID number: one person, whichever account adds them.
    pub id_no_index: Vec<u8>,
    pub masked: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddPassenger {
    Added(i64),
    /// The user already has a passenger with this ID number.
    Duplicate,
    /// The user has the most passengers allowed.
    TooMany,
}

#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Create a user; None when the username is taken.
    async fn create_user(&self, username: &str, password_hash: &str, created_at_ms: i64) -> Result<Option<i64>>;

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>>;

    /// Add a passenger to a user's list, unless it is a duplicate or the list is full
    /// (`max_per_user`).
    async fn add_passenger(&self, p: &NewPassenger, max_per_user: u32) -> Result<AddPassenger>;

    /// A user's passengers, oldest first.
    async fn passengers(&self, user_id: i64) -> Result<Vec<PassengerRecord>>;

    /// The user's token version (None: no such user).
    async fn token_version(&self, user_id: i64) -> Result<Option<u32>>;

    /// Set a new password hash and bump the token version; the new version.
    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<u32>;

    /// Bump the token version (a logout); the new version.
    async fn bump_token_version(&self, user_id: i64) -> Result<u32>;
}
