//! HTTP handlers, one module per resource of the API (the operator's routes in `admin/`: the
//! risk lists and outbox events, and the figures), and the router that puts them under the
//! middleware.

pub mod admin;
pub mod checkin;
pub mod health;
pub mod network;
pub mod orders;
pub mod payments;
pub mod queue;
pub mod tickets;
pub mod users;
pub mod waitlist;
pub mod web;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;

use crate::hotsale::limits::{buy_guard, ip_rate_limit, overloaded};
use crate::http::error::ApiError;
use crate::http::middleware::{self, Limits};
use crate::state::AppState;

/// The buy path: orders, payments, queue joins; its own IP limit and tighter time limit.
fn buy_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/orders", get(orders::list).post(orders::create))
        .route("/api/v1/orders/{order_no}/payments", post(orders::pay))
        .route("/api/v1/queue/{sale_id}/join", post(queue::join))
        .route_layer(from_fn_with_state(state.ip_limits.clone(), buy_guard))
}

/// The rest of the API, behind the per-IP limit.
fn api_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/stations", get(network::stations))
        .route("/api/v1/trains", get(network::trains))
        .route("/api/v1/runs/{run_id}", get(network::run))
        .route("/api/v1/runs/{run_id}/seats", get(network::seats))
        .route("/api/v1/auth/register", post(users::register))
        .route("/api/v1/auth/login", post(users::login))
        .route("/api/v1/auth/password", post(users::change_password))
        .route("/api/v1/auth/logout", post(users::logout))
        .route("/api/v1/passengers", get(users::passengers).post(users::add_passenger))
        .route("/api/v1/orders/{order_no}", get(orders::get))
        .route("/api/v1/orders/{order_no}/cancel", post(orders::cancel))
        .route("/api/v1/payments/notify/{channel}", post(payments::notify))
        .route("/mockpay/pay/{payment_no}", post(payments::mockpay_pay))
        .route("/api/v1/tickets/{ticket_sn}", get(tickets::get))
        .route("/api/v1/tickets/{ticket_sn}/qr.svg", get(tickets::qr_svg))
        .route("/api/v1/tickets/{ticket_sn}/refund", post(tickets::refund))
        .route("/api/v1/tickets/{ticket_sn}/rebook", post(tickets::rebook))
        .route("/api/v1/checkin/keys", get(tickets::keys))
        .route("/api/v1/checkin", post(checkin::check_in))
        .route("/api/v1/checkin/revocations", get(checkin::revocations))
        .route("/api/v1/checkin/uploads", post(checkin::upload))
        .route("/api/v1/waitlist", post(waitlist::join))
        .route("/api/v1/waitlist/{waitlist_id}", get(waitlist::get))
        .route("/api/v1/waitlist/{waitlist_id}/payments", post(waitlist::pay))
        .route("/api/v1/waitlist/{waitlist_id}/cancel", post(waitlist::cancel))
        .route("/api/v1/notifications", get(waitlist::notifications))
        .route("/api/v1/sales", get(queue::sales))
        .route("/api/v1/queue/{sale_id}/status", get(queue::status))
        .route("/api/v1/queue/{sale_id}/events", get(queue::events))
        .route("/api/v1/admin/risk/{list}/{kind}", get(admin::risk_list))
        .route("/api/v1/admin/risk/{list}/{kind}/{value}", put(admin::risk_put).delete(admin::risk_delete))
        .route("/api/v1/admin/events", get(admin::events))
        .route("/api/v1/admin/events/{id}/retry", post(admin::retry_event))
        .route("/api/v1/admin/stats/sales", get(admin::figures::sales))
        .route("/api/v1/admin/live", get(admin::figures::live))
        .route("/api/v1/admin/engine", get(admin::figures::engine))
        .route("/api/v1/admin/audit/verify", get(admin::figures::audit_verify))
        .route("/api/v1/admin/sales/{sale_id}/room", get(admin::figures::room))
        .route_layer(from_fn_with_state(state.ip_limits.clone(), ip_rate_limit))
}

/// Every route under the middleware: request id and time limit outermost, then panic capture,
/// load shedding (beyond `concurrency_max` in flight, 503 at once), body limits, per-route
/// metrics.
pub fn router(state: AppState) -> Router {
    // The recorder first: the route metrics keep the handles they register.
    crate::http::metrics::handle();
    let limits = Limits {
        body_len_max: state.config.body_len_max,
        request_timeout: Duration::from_millis(state.config.request_timeout_ms),
    };
    let shed = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::ConcurrencyLimitLayer::new(state.config.concurrency_max));
    Router::new()
        .route("/", get(web::index))
        .route("/assets/{*file}", get(web::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(crate::http::openapi::serve))
        .merge(api_routes(&state))
        .merge(buy_routes(&state))
        .route_layer(from_fn(middleware::track_metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed("method not allowed on this route") })
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.body_len_max))
        .layer(from_fn_with_state(limits.body_len_max, middleware::chunked_body))
        .layer(shed)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(from_fn_with_state(limits, middleware::request_context))
}
