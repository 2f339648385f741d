//! Payment notifies, and the mock provider's pay page.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chepiao_store::{NotifyOutcome, PaymentStatus};
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::Params;
use crate::routes::orders::base_url;

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotifyAck {
    /// What the notify did: PAID, REFUND_DUE, DUPLICATE or FAILED.
    pub result: &'static str,
}

/// A payment channel's asynchronous notify (raw JSON body signed in `X-Chepiao-Signature`).
#[utoipa::path(post, path = "/api/v1/payments/notify/{channel}", tag = "payments",
    params(("channel" = String, Path), ("X-Chepiao-Signature" = String, Header, description = "hex HMAC-SHA256 of the raw body")),
    responses((status = 200, body = NotifyAck), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody, description = "replayed")))]
pub async fn notify(
    State(state): State<AppState>,
    channel: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<NotifyAck>, ApiError> {
    let Path(channel) = channel.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let body = body.map_err(|e| ApiError::body_too_large(e.body_text()))?;
    let ch =
        state.channels.get(&channel).ok_or_else(|| ApiError::unknown_channel(format!("no channel {channel:?}")))?;
    let signature = headers.get("x-chepiao-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ch.verify(&body, signature) {
        metrics::counter!("chepiao_notifies_total", "result" => "bad_signature").increment(1);
        return Err(ApiError::bad_signature("X-Chepiao-Signature does not sign this body"));
    }
    let n = crate::flow::payments::parse_notify(ch.name(), &body, chrono::Utc::now().timestamp())?;
    let outcome = state.notify_batcher.submit(n.clone()).await?;
    let (label, result) = match outcome {
        NotifyOutcome::UnknownPayment => {
            ("unknown_payment", Err(ApiError::unknown_payment(format!("no payment {}", n.payment_no))))
        }
        NotifyOutcome::Replayed => {
            ("replayed", Err(ApiError::notify_replayed(format!("nonce {:?} was seen before", n.nonce))))
        }
        NotifyOutcome::AmountMismatch { expected_fen } => (
            "amount_mismatch",
            Err(ApiError::amount_mismatch(format!(
                "payment {} is {expected_fen} fen, the notify says {}",
                n.payment_no, n.amount_fen
            ))),
        ),
        NotifyOutcome::Duplicate { .. } => ("DUPLICATE", Ok("DUPLICATE")),
        NotifyOutcome::Failed => ("FAILED", Ok("FAILED")),
        NotifyOutcome::Paid { .. } => ("PAID", Ok("PAID")),
        NotifyOutcome::RefundDue { .. } => ("REFUND_DUE", Ok("REFUND_DUE")),
    };
    metrics::counter!("chepiao_notifies_total", "result" => label).increment(1);
    if matches!(label, "PAID" | "REFUND_DUE") {
        // An outbox row was committed: publish it now rather than at the next poll.
        state.relay.wake();
    }
    result.map(|result| Json(NotifyAck { result }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MockpayPressed {
    pub payment_no: String,
    /// PROCESSING: the notify follows asynchronously.
    pub status: &'static str,
}

/// The mock provider's pay page: the payer presses pay (`?result=FAILED` to decline). The
/// notify is sent asynchronously, signed, as a real provider would.
#[utoipa::path(post, path = "/mockpay/pay/{payment_no}", tag = "payments",
    params(("payment_no" = String, Path), ("result" = Option<String>, Query, description = "SUCCESS (default) or FAILED")),
    responses((status = 202, body = MockpayPressed), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn mockpay_pay(
    State(state): State<AppState>,
    headers: HeaderMap,
    payment_no: Result<Path<String>, PathRejection>,
    params: Params,
) -> Result<Response, ApiError> {
    let Path(payment_no) = payment_no.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let success = match params.optional::<String>("result")?.as_deref() {
        None | Some("SUCCESS") => true,
        Some("FAILED") => false,
        Some(other) => return Err(ApiError::bad_parameter(format!("parameter `result`: {other:?}"))),
    };
    let payment = state
        .store
        .payment(&payment_no)
        .await?
        .filter(|p| p.channel == "mockpay")
        .ok_or_else(|| ApiError::unknown_payment(format!("no mockpay payment {payment_no}")))?;
    if payment.status != PaymentStatus::Created {
        return Err(ApiError::order_not_payable(format!("payment {payment_no} is {}", payment.status)));
    }
    let notify_url = format!("{}/api/v1/payments/notify/mockpay", base_url(&state, &headers));
    state.mockpay.press_pay(&payment, notify_url, success);
    Ok((StatusCode::ACCEPTED, Json(MockpayPressed { payment_no, status: "PROCESSING" })).into_response())
}
