//! Who may ask, and what is kept secret:
//! - [`auth`]: passwords (argon2id) and login tokens (JWT), the `AuthUser` extractor;
//! - [`pii`]: passenger names and ID numbers encrypted at rest, masked in answers;
//! - [`secrets`]: keys from configuration or from key files created on first start;
//! - [`gates`]: gate devices and their keys; [`admin`]: the operator's key.

pub mod admin;
pub mod auth;
pub mod gates;
pub mod pii;
pub mod secrets;
