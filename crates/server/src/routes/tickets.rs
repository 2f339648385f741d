//! Tickets and the public keys gates verify them with.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chepiao_store::TicketRecord;
use serde::Serialize;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::routes::ApiJson;
use crate::routes::orders::TicketOut;

async fn own_ticket(state: &AppState, user_id: i64, sn: &str) -> Result<TicketRecord, ApiError> {
    match state.store.ticket(sn).await? {
        Some(t) if t.user_id == user_id => Ok(t),
        _ => Err(ApiError::unknown_ticket(format!("no ticket {sn}"))),
    }
}

/// One of the caller's tickets, with its signed QR payload.
#[utoipa::path(get, path = "/api/v1/tickets/{ticket_sn}", tag = "tickets", security(("bearer" = [])),
    params(("ticket_sn" = String, Path)),
    responses((status = 200, body = TicketOut), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    sn: Result<Path<String>, PathRejection>,
) -> Result<Json<TicketOut>, ApiError> {
    let Path(sn) = sn.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    Ok(Json(TicketOut::from(&own_ticket(&state, user.id, &sn).await?)))
}

/// The ticket's QR code as SVG.
#[utoipa::path(get, path = "/api/v1/tickets/{ticket_sn}/qr.svg", tag = "tickets", security(("bearer" = [])),
    params(("ticket_sn" = String, Path)),
    responses((status = 200, content_type = "image/svg+xml"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn qr_svg(
    State(state): State<AppState>,
    user: AuthUser,
    sn: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(sn) = sn.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let ticket = own_ticket(&state, user.id, &sn).await?;
    let svg = crate::flow::signing::qr_svg(&ticket.qr).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PublicKey {
    pub key_id: String,
    /// `Ed25519`
    pub algorithm: &'static str,
    /// base64 of the 32-byte public key
    pub public_key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PublicKeys {
    /// The current key first, then retired keys still accepted.
    pub keys: Vec<PublicKey>,
}

/// The keys ticket QR codes are signed with, for gates.
#[utoipa::path(get, path = "/api/v1/checkin/keys", tag = "tickets", responses((status = 200, body = PublicKeys)))]
pub async fn keys(State(state): State<AppState>) -> Json<PublicKeys> {
    let keys = state
        .signer
        .public_keys()
        .into_iter()
        .map(|(key_id, public_key)| PublicKey { key_id, algorithm: "Ed25519", public_key })
        .collect();
    Json(PublicKeys { keys })
}

#[derive(Serialize, utoipa::ToSchema)]
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

/// Refund one of the caller's tickets; the seat goes back on sale and the ticket is revoked.
/// Asking again answers the same refund.
#[utoipa::path(post, path = "/api/v1/tickets/{ticket_sn}/refund", tag = "tickets", security(("bearer" = [])),
    params(("ticket_sn" = String, Path)),
    responses((status = 200, body = RefundOut), (status = 400, body = crate::error::ErrorBody, description = "departed (40014)"),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody, description = "checked in or rebooked (40909)")))]
pub async fn refund(
    State(state): State<AppState>,
    user: AuthUser,
    sn: Result<Path<String>, PathRejection>,
) -> Result<Json<RefundOut>, ApiError> {
    let Path(sn) = sn.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let r = crate::flow::refunds::refund(&state, user.id, &sn).await?;
    Ok(Json(RefundOut {
        ticket_sn: r.ticket_sn,
        refund_no: r.refund_no,
        refund_fen: r.refund_fen,
        fee_fen: r.fee_fen,
        status: r.status.as_str().into(),
    }))
}

/// Trade one of the caller's issued tickets for a seat on another run (between the same
/// stations) or in another class. The answer is the new ticket's order: PENDING_PAYMENT for the
/// fare difference when the new fare is dearer, otherwise PAID at once (any difference comes
/// back with the old ticket's seat). If no seat can be held, nothing changes.
#[utoipa::path(post, path = "/api/v1/tickets/{ticket_sn}/rebook", tag = "tickets", security(("bearer" = [])),
    params(("ticket_sn" = String, Path)), request_body = crate::flow::rebook::RebookRequest,
    responses((status = 201, body = crate::routes::orders::OrderOut), (status = 200, body = crate::routes::orders::OrderOut, description = "a replay"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody, description = "sold out (40903) or not rebookable (40910)")))]
pub async fn rebook(
    State(state): State<AppState>,
    user: AuthUser,
    sn: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<crate::flow::rebook::RebookRequest>,
) -> Result<Response, ApiError> {
    let Path(sn) = sn.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let placed = crate::flow::rebook::rebook(&state, user.id, &sn, &req).await?;
    let status = if placed.created { StatusCode::CREATED } else { StatusCode::OK };
    let out = crate::routes::orders::order_out(&placed.order, placed.order.status)?;
    Ok((status, Json(out)).into_response())
}
