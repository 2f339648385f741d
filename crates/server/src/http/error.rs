//! The stable error model of API.md: an HTTP status and `{code, message, request_id}`.
//!
//! Codes are five digits: the HTTP status followed by a two-digit number (40401, 50301), except
//! the 400-series codes API.md fixes (40001-40009), which later 400 codes continue (40010...).
//! Every code is listed in [`CODES`], which the OpenAPI description prints.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use chepiao_api::ErrorBody;
use chepiao_flow::FlowError;
use chepiao_store::StoreError;

use crate::http::request_id::current_request_id;

/// A failed request, ready to be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

macro_rules! codes {
    ($($name:ident = $code:literal, $status:ident, $doc:literal;)*) => {
        /// Every error code, with its HTTP status and meaning.
        pub const CODES: &[(u32, u16, &str)] = &[$(($code, StatusCode::$status.as_u16(), $doc)),*];
        impl ApiError {
            $(
                #[doc = $doc]
                pub fn $name(message: impl Into<String>) -> ApiError {
                    ApiError { status: StatusCode::$status, code: $code, message: message.into() }
                }
            )*
        }
    };
}

codes! {
    username_exists = 40001, BAD_REQUEST, "username exists";
    bad_parameter = 40002, BAD_REQUEST, "bad parameter: missing, malformed or out of range; the message names it";
    user_not_found = 40003, BAD_REQUEST, "user not found";
    wrong_password = 40004, BAD_REQUEST, "wrong password";
    bad_signing_method = 40005, UNAUTHORIZED, "bad token signing method";
    invalid_token = 40006, UNAUTHORIZED, "invalid token";
    invalid_claims = 40007, UNAUTHORIZED, "invalid claims";
    wrong_token_type = 40008, UNAUTHORIZED, "wrong token type";
    old_password_wrong = 40009, BAD_REQUEST, "old password wrong";
    outside_sale_window = 40010, BAD_REQUEST, "date outside the sale window";
    malformed_body = 40011, BAD_REQUEST, "request body is not valid JSON of the expected shape";
    stale_notify = 40012, BAD_REQUEST, "payment notify `ts` more than 5 minutes from the server's clock";
    amount_mismatch = 40013, BAD_REQUEST, "payment notify amount differs from the payment's (refused and audited)";
    departed = 40014, BAD_REQUEST, "the train leaves the boarding station too soon (or has left)";
    authentication_required = 40101, UNAUTHORIZED, "this needs a token from login (`Authorization: Bearer ...`)";
    bad_signature = 40102, UNAUTHORIZED, "payment notify signature missing or wrong";
    bad_gate_key = 40103, UNAUTHORIZED, "check-in needs `X-Gate-Key` with the secret of the `gate_id` given";
    risk_refused = 40301, FORBIDDEN, "refused by the risk checks (a blocked user, device or IP, or a high score)";
    queue_token_required = 40302, FORBIDDEN, "this run is sold through a waiting room: send `X-Queue-Token` from the queue";
    queue_token_invalid = 40303, FORBIDDEN, "the queue token is malformed or its signature does not match";
    queue_token_expired = 40304, FORBIDDEN, "the queue token expired: join the queue again";
    queue_token_not_yours = 40305, FORBIDDEN, "the queue token is another user's or another sale's";
    queue_token_spent = 40306, FORBIDDEN, "the queue token admitted another order already: join the queue again";
    not_found = 40401, NOT_FOUND, "no such route or resource";
    unknown_station = 40402, NOT_FOUND, "unknown station telecode";
    unknown_run = 40403, NOT_FOUND, "unknown run";
    unknown_order = 40404, NOT_FOUND, "no such order (or not the caller's)";
    unknown_payment = 40405, NOT_FOUND, "no such payment on that channel";
    unknown_ticket = 40406, NOT_FOUND, "no such ticket (or not the caller's)";
    unknown_channel = 40407, NOT_FOUND, "no such payment channel";
    unknown_sale = 40409, NOT_FOUND, "no such sale";
    not_in_queue = 40410, NOT_FOUND, "the caller has not joined this sale's queue (or the admission lapsed)";
    unknown_wish = 40408, NOT_FOUND, "no such waitlist wish (or not the caller's)";
    unknown_event = 40411, NOT_FOUND, "no such outbox event";
    method_not_allowed = 40501, METHOD_NOT_ALLOWED, "method not allowed on this route";
    passenger_exists = 40901, CONFLICT, "that passenger is on the caller's list already";
    passengers_full = 40902, CONFLICT, "the caller's passenger list is full";
    sold_out = 40903, CONFLICT, "not enough seats for the order (nothing was held)";
    idempotency_key_reused = 40904, CONFLICT, "that idempotency key was used for a different order";
    order_not_cancellable = 40905, CONFLICT, "the order is paid or closed: it cannot be cancelled";
    order_not_payable = 40906, CONFLICT, "the order is not waiting for payment (paid, expired or cancelled)";
    notify_replayed = 40907, CONFLICT, "payment notify replayed (its nonce was seen before)";
    already_checked_in = 40908, CONFLICT, "the ticket was checked in already";
    not_refundable = 40909, CONFLICT, "the ticket was checked in or rebooked: it cannot be refunded";
    not_rebookable = 40910, CONFLICT, "the ticket was checked in, refunded or rebooked: it cannot be rebooked";
    wish_not_cancellable = 40911, CONFLICT, "the wish was fulfilled or has ended: it cannot be cancelled";
    event_not_dead = 40912, CONFLICT, "the outbox event is not DEAD: it is retried on its own";
    unpaid_order = 40913, CONFLICT, "the user has an unpaid order: pay or cancel it first (one at a time)";
    trip_overlap = 40914, CONFLICT, "a passenger already has a ticket or a hold on a journey at that time";
    too_many_cancellations = 40915, CONFLICT, "the user cancelled too many orders today: ordering opens again tomorrow";
    rebooked_once = 40916, CONFLICT, "a rebook issued this ticket: a ticket is rebooked once";
    ticket_revoked = 41001, GONE, "the ticket was refunded or rebooked: it is revoked";
    bad_ticket_code = 42201, UNPROCESSABLE_ENTITY, "the ticket code is malformed or its signature does not verify";
    wrong_station = 42202, UNPROCESSABLE_ENTITY, "the ticket does not board at this station";
    outside_validity = 42203, UNPROCESSABLE_ENTITY, "the ticket is not valid at this time (wrong date)";
    rate_limited = 42901, TOO_MANY_REQUESTS, "too many requests from this user, device or IP; see `Retry-After`";
    body_too_large = 41301, PAYLOAD_TOO_LARGE, "request body larger than the limit";
    unsupported_media_type = 41501, UNSUPPORTED_MEDIA_TYPE, "request body must be application/json";
    internal = 50001, INTERNAL_SERVER_ERROR, "internal error (a bug: the request id finds it in the logs)";
    unavailable = 50301, SERVICE_UNAVAILABLE, "a store is unreachable; retry later";
    timeout = 50302, SERVICE_UNAVAILABLE, "the request took longer than the server's limit; retry later";
    busy = 50303, SERVICE_UNAVAILABLE, "a bounded queue is full (seat engine, mockpay notifies); retry shortly";
    overloaded = 50304, SERVICE_UNAVAILABLE, "the server is at its concurrency limit; see `Retry-After`";
    queue_full = 50305, SERVICE_UNAVAILABLE, "the sale's waiting room is full";
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Shedding answers by the thousand under overload: counted in metrics, not logged.
        let shed = self.code == 50304 || self.status == StatusCode::TOO_MANY_REQUESTS;
        if self.status.is_server_error() && !shed {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        let retry = self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE;
        let body = ErrorBody { code: self.code, message: self.message, request_id: current_request_id() };
        let mut response = (self.status, Json(body)).into_response();
        if retry {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// What a client is told when a store or the engine failed: the detail (a database's error
/// text, a table name) goes to the log with the request id, never to the client.
pub fn hidden(e: &dyn std::fmt::Display, unavailable: bool) -> ApiError {
    let id = current_request_id();
    tracing::warn!(request_id = %id, error = %e, "a store or the engine failed");
    if unavailable {
        ApiError::unavailable("a store is unavailable; retry later")
    } else {
        ApiError::internal("internal error; the request id finds it in the server's log")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(_) => hidden(&e, true),
            StoreError::Limit(m) => ApiError::bad_parameter(m),
            StoreError::Migration(_) | StoreError::Corrupt { .. } | StoreError::Panicked(_) => hidden(&e, false),
        }
    }
}

impl From<chepiao_engine::EngineError> for ApiError {
    fn from(e: chepiao_engine::EngineError) -> Self {
        FlowError::from(e).into()
    }
}

/// The one place the flow's refusals become the API's codes.
impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        use FlowError::*;
        match e {
            BadParameter(m) => ApiError::bad_parameter(m),
            UnknownRun(m) => ApiError::unknown_run(m),
            UnknownPassenger(m) => ApiError::not_found(m),
            Departed(m) => ApiError::departed(m),
            OutsideSaleWindow(m) => ApiError::outside_sale_window(m),
            SoldOut(m) => ApiError::sold_out(m),
            KeyReused(m) => ApiError::idempotency_key_reused(m),
            UnknownOrder(m) => ApiError::unknown_order(m),
            NotCancellable(m) => ApiError::order_not_cancellable(m),
            NotPayable(m) => ApiError::order_not_payable(m),
            UnknownChannel(m) => ApiError::unknown_channel(m),
            UnknownPayment(m) => ApiError::unknown_payment(m),
            MalformedNotify(m) => ApiError::malformed_body(m),
            BadSignature(m) => ApiError::bad_signature(m),
            StaleNotify(m) => ApiError::stale_notify(m),
            NotifyReplayed(m) => ApiError::notify_replayed(m),
            AmountMismatch(m) => ApiError::amount_mismatch(m),
            UnknownTicket(m) => ApiError::unknown_ticket(m),
            NotRefundable(m) => ApiError::not_refundable(m),
            NotRebookable(m) => ApiError::not_rebookable(m),
            RebookedOnce(m) => ApiError::rebooked_once(m),
            UnpaidOrder(m) => ApiError::unpaid_order(m),
            TripOverlap(m) => ApiError::trip_overlap(m),
            TooManyCancellations(m) => ApiError::too_many_cancellations(m),
            UnknownWish(m) => ApiError::unknown_wish(m),
            WishNotCancellable(m) => ApiError::wish_not_cancellable(m),
            BadTicketCode(m) => ApiError::bad_ticket_code(m),
            WrongStation(m) => ApiError::wrong_station(m),
            OutsideValidity(m) => ApiError::outside_validity(m),
            AlreadyCheckedIn(m) => ApiError::already_checked_in(m),
            Revoked(m) => ApiError::ticket_revoked(m),
            Busy(m) => ApiError::busy(m),
            Unavailable(m) => hidden(&m, true),
            Internal(m) => hidden(&m, false),
            Store(e) => e.into(),
        }
    }
}
