//! What every route shares: the error model ([`error`]: one code per meaning, and the one place
//! the flow's errors become codes), request ids, extractors, middleware (limits, panics, access
//! logs, per-route metrics), the Prometheus recorder and the OpenAPI document.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod request_id;
