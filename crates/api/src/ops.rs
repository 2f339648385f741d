//! Health, readiness, and the operator's view of outbox events.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ready {
    /// `ready`
    pub status: String,
    /// The relational backend in use: `sqlite` or `postgres`.
    pub store: String,
    /// The event bus in use: `in-process` or `nats-jetstream`.
    #[serde(default)]
    pub bus: String,
}

/// An outbox event as the operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    pub id: i64,
    /// `ticket`, `refund` or `ticket_refund`.
    pub kind: String,
    /// The order, payment or refund number it is about.
    pub subject: String,
    /// `PENDING`, `SENT` or `DEAD`.
    pub state: String,
    pub attempts: u32,
    /// When it is due (PENDING) or handed over again unless handled (SENT), RFC 3339.
    pub next_at: String,
    pub created_at: String,
    pub last_error: Option<String>,
}

/// A page of events by id; `next_after` continues it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    pub events: Vec<EventView>,
    pub next_after: Option<i64>,
}
