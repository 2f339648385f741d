//! Hot sales: the waiting room, and the admin endpoints of the risk lists.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleOut {
    pub sale_id: String,
    pub opens_at: String,
    pub run_ids: Vec<String>,
}

/// `{position}` while waiting; `{admitted: true, queue_token, expires_at}` once admitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RiskList {
    pub values: Vec<String>,
}
