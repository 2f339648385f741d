//! Orders (an order holds its seats until paid or expired) and the start of a payment.

use chepiao_domain::SeatClass;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/orders`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The client's key for this purchase (1-64 printable ASCII); a retry sends it again.
    pub idempotency_key: String,
    pub legs: Vec<LegBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LegBody {
    /// e.g. `G1-20261122`
    pub run_id: String,
    /// Boarding station telecode.
    pub from: String,
    /// Alighting station telecode.
    pub to: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "SECOND"))]
    pub class: SeatClass,
    pub passenger_ids: Vec<i64>,
    /// Wanted seat letters (`A`, `F`, ...), at most one per passenger; honoured when possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_prefs: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeatOut {
    pub passenger_id: i64,
    pub coach: u8,
    /// `05A`, `012`, `无座`.
    pub seat: String,
    pub price_fen: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegOut {
    pub run_id: String,
    pub train_code: String,
    pub from: String,
    pub to: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "SECOND"))]
    pub class: SeatClass,
    pub departs_at: String,
    pub arrives_at: String,
    pub seats: Vec<SeatOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentOut {
    pub payment_no: String,
    pub channel: String,
    pub amount_fen: i64,
    /// CREATED, SUCCESS, FAILED, REFUND_PENDING or REFUNDED.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketOut {
    pub ticket_sn: String,
    pub order_no: String,
    pub passenger_id: i64,
    pub run_id: String,
    pub from: String,
    pub to: String,
    pub class: String,
    pub coach: i64,
    pub seat: String,
    pub price_fen: i64,
    /// ISSUED, CHECKED_IN, REFUNDED or REBOOKED.
    pub status: String,
    /// The signed payload the QR code carries.
    pub qr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderOut {
    pub order_no: String,
    /// PENDING_PAYMENT, PAID, TICKETED, CANCELLED, EXPIRED, PARTIALLY_REFUNDED or REFUNDED.
    pub status: String,
    pub amount_fen: i64,
    pub pay_before: String,
    pub created_at: String,
    pub legs: Vec<LegOut>,
    /// On `GET /orders/{order_no}` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payments: Option<Vec<PaymentOut>>,
    /// On `GET /orders/{order_no}` only, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<Vec<TicketOut>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderList {
    pub items: Vec<OrderOut>,
    pub page: u32,
    pub page_size: u32,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// `mockpay`
    pub channel: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PayStarted {
    pub payment_no: String,
    pub amount_fen: i64,
    /// Where the payer pays (for `mockpay`: POST to it).
    pub pay_url: String,
}
