//! Payment notifies, and the mock provider's pay page; the work is in `chepiao_flow::payments`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chepiao_api::payments::{MockpayPressed, NotifyAck};
use chepiao_flow::payments;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Params, path};
use crate::state::AppState;

/// A payment channel's asynchronous notify (raw JSON body signed in `X-Chepiao-Signature`).
#[utoipa::path(post, path = "/api/v1/payments/notify/{channel}", tag = "payments",
    request_body(content = chepiao_api::payments::NotifyBody, description = "the raw JSON body the signature covers"),
    params(("channel" = String, Path), ("X-Chepiao-Signature" = String, Header, description = "hex HMAC-SHA256 of the raw body")),
    responses((status = 200, body = NotifyAck), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "replayed")))]
pub async fn notify(
    State(state): State<AppState>,
    channel: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<NotifyAck>, ApiError> {
    let channel = path(channel)?;
    let body = body.map_err(|e| ApiError::body_too_large(e.body_text()))?;
    let signature = headers.get(chepiao_api::headers::SIGNATURE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let result = payments::receive_notify(&state.flow, &channel, &body, signature).await?;
    Ok(Json(NotifyAck { result: result.as_str().into() }))
}

/// The mock provider's pay page: the payer presses pay (`?result=FAILED` to decline). The
/// notify is sent asynchronously, signed, as a real provider would.
#[utoipa::path(post, path = "/mockpay/pay/{payment_no}", tag = "payments",
    params(("payment_no" = String, Path), ("result" = Option<String>, Query, description = "SUCCESS (default) or FAILED")),
    responses((status = 202, body = MockpayPressed), (status = 400, body = ErrorBody, description = "a `result` other than SUCCESS or FAILED"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "too many notifies in flight (50303), or not serving yet")))]
pub async fn mockpay_pay(
    State(state): State<AppState>,
    payment_no: Result<Path<String>, PathRejection>,
    params: Params,
) -> Result<Response, ApiError> {
    let payment_no = path(payment_no)?;
    let success = match params.optional::<String>("result")?.as_deref() {
        None | Some("SUCCESS") => true,
        Some("FAILED") => false,
        Some(other) => return Err(ApiError::bad_parameter(format!("parameter `result`: {other:?}"))),
    };
    // Never where the request points (its Host header is the caller's to forge).
    let own = state.config.public_url.clone().or_else(|| state.self_url.get().cloned());
    let own = own.ok_or_else(|| ApiError::unavailable("the server is not serving yet"))?;
    let notify_url = format!("{}/api/v1/payments/notify/mockpay", own.trim_end_matches('/'));
    payments::press_mockpay(&state.flow, &payment_no, success, notify_url).await?;
    let out = MockpayPressed { payment_no, status: "PROCESSING".into() };
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}
