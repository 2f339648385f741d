//! The error body every failed request answers with.

use serde::{Deserialize, Serialize};

/// `{code, message, request_id}`: the HTTP status says what kind of failure, the code which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code (see the table in the API description).
    pub code: u32,
    /// Human-readable explanation.
    pub message: String,
    /// The request id, also in the `x-request-id` response header.
    pub request_id: String,
}
