//! Optional request headers a client may send (API.md).

/// A device fingerprint; risk checks use it and never refuse a request only for lacking it.
pub const DEVICE_ID: &str = "x-device-id";
/// `web`, `app`, `api` or `console`: the order's source in the statistics (anything else
/// counts as `api`).
pub const CLIENT: &str = "x-client";
/// The queue token of a sale's waiting room, on orders for the sale's runs.
pub const QUEUE_TOKEN: &str = "x-queue-token";
/// A gate's secret, on check-in calls.
pub const GATE_KEY: &str = "x-gate-key";
/// The operator's secret, on admin calls.
pub const ADMIN_KEY: &str = "x-admin-key";
/// A payment channel's HMAC-SHA256 of a notify's raw body, hex.
pub const SIGNATURE: &str = "x-chepiao-signature";
/// The client's address as a trusted proxy saw it.
pub const REAL_IP: &str = "x-real-ip";
/// The request id, echoed in every answer.
pub const REQUEST_ID: &str = "x-request-id";
