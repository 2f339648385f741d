//! The waitlist (候补) and the notifications it sends.

use chepiao_domain::SeatClass;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/waitlist`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WishRequest {
    pub run_id: String,
    pub from: String,
    pub to: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "SECOND"))]
    pub class: SeatClass,
    pub passenger_ids: Vec<i64>,
    /// RFC 3339; no later than the train's departure from `from`.
    pub deadline: String,
    /// Optional: a retry with the same key finds the same wish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WishOut {
    pub waitlist_id: String,
    /// PENDING_PAYMENT, WAITING, FULFILLED, EXPIRED or CANCELLED.
    pub status: String,
    pub amount_fen: i64,
    /// The order that carries the wish's money; once FULFILLED it holds the seats and tickets.
    pub order_no: String,
    pub run_id: String,
    pub from: String,
    pub to: String,
    pub class: String,
    pub passenger_ids: Vec<i64>,
    pub deadline: String,
    pub pay_before: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationOut {
    pub id: i64,
    /// `wish.fulfilled`, `wish.expired`, `wish.cancelled`.
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationList {
    pub items: Vec<NotificationOut>,
}
