//! Accounts and passengers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    /// 3–32 letters, digits, `_`, `.` or `-`.
    pub username: String,
    /// 8–128 characters.
    pub password: String,
}

/// A password change: the old one proves it is the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    pub old_password: String,
    /// 8–128 characters.
    pub new_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    pub user_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoggedIn {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewPassengerBody {
    pub name: String,
    /// `ID_CARD` (18 characters, check digit verified) or `PASSPORT`.
    pub id_type: String,
    pub id_no: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassengerView {
    pub passenger_id: i64,
    /// Masked: `张*`.
    pub name: String,
    pub id_type: String,
    /// Masked: `1101**********4258`.
    pub id_no_masked: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassengerList {
    pub items: Vec<PassengerView>,
    pub page: u32,
    pub page_size: u32,
    pub total: u32,
}
