//! A payment channel's signed notify, and the mock provider's pay page.

use serde::{Deserialize, Serialize};

/// A notify body as API.md fixes it; signed in `X-Chepiao-Signature` (hex HMAC-SHA256 of the
/// raw body with the channel's secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NotifyBody {
    pub out_trade_no: String,
    pub payment_no: String,
    pub amount_fen: i64,
    /// `SUCCESS` or `FAILED`.
    pub status: String,
    pub txn_id: String,
    /// Unix seconds.
    pub ts: i64,
    pub nonce: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyAck {
    /// What the notify did: PAID, REFUND_DUE, DUPLICATE or FAILED.
    pub result: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MockpayPressed {
    pub payment_no: String,
    /// PROCESSING: the notify follows asynchronously.
    pub status: String,
}
