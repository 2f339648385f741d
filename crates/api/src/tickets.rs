//! Tickets, refunds, rebooking and the keys gates verify tickets with.

use chepiao_domain::SeatClass;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKey {
    pub key_id: String,
    /// `Ed25519`
    pub algorithm: String,
    /// base64 of the 32-byte public key
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKeys {
    /// The current key first, then retired keys still accepted.
    pub keys: Vec<PublicKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundOut {
    pub ticket_sn: String,
    pub refund_no: String,
    /// What goes back to the payer.
    pub refund_fen: i64,
    /// Kept, by the fee tier of the time left before departure.
    pub fee_fen: i64,
    /// PENDING until the seat and the money went back, then DONE.
    pub status: String,
}

/// `POST /api/v1/tickets/{ticket_sn}/rebook`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RebookRequest {
    /// The run to travel on instead, between the same stations.
    pub run_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "SECOND"))]
    pub class: SeatClass,
    /// One wanted seat letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_prefs: Option<Vec<String>>,
    /// Optional: the same body retried finds the same order; a new key asks again (e.g. after
    /// the first rebook order expired unpaid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}
