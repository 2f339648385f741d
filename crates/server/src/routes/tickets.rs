//! Tickets, refunds, rebooking and the public keys gates verify tickets with.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chepiao_api::orders::{OrderOut, TicketOut};
use chepiao_api::tickets::{PublicKey, PublicKeys, RebookRequest, RefundOut};
use chepiao_flow::refunds::own_ticket;

use crate::hotsale::guard::risk_check;
use crate::hotsale::limits::ClientIp;
use crate::hotsale::risk::Subject;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Buyer, path};
use crate::routes::orders::{admit, created_or_replayed, order_out, spent_on, ticket_out};
use crate::security::auth::AuthUser;
use crate::state::AppState;

/// One of the caller's tickets, with its signed QR payload.
#[utoipa::path(get, path = "/api/v1/tickets/{ticket_sn}", tag = "tickets", security(("bearer" = [])),
    params(("ticket_sn" = String, Path)),
    responses((status = 200, body = TicketOut), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    sn: Result<Path<String>, PathRejection>,
) -> Result<Json<TicketOut>, ApiError> {
    Ok(Json(ticket_out(&own_ticket(&state.flow, user.id, &path(sn)?).await?)))
}

/// The ticket's QR code as SVG.
#[utoipa::path(get, path = "/api/v1/tickets/{ticket_sn}/qr.svg", tag = "tickets", security(("bearer" = [])),
    params(("ticket_sn" = String, Path)),
    responses((status = 200, content_type = "image/svg+xml"), (status = 404, body = ErrorBody)))]
pub async fn qr_svg(
    State(state): State<AppState>,
    user: AuthUser,
    sn: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let ticket = own_ticket(&state.flow, user.id, &path(sn)?).await?;
    let svg = chepiao_flow::signing::qr_svg(&ticket.qr).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// The keys ticket QR codes are signed with, for gates.
#[utoipa::path(get, path = "/api/v1/checkin/keys", tag = "tickets", responses((status = 200, body = PublicKeys)))]
pub async fn keys(State(state): State<AppState>) -> Json<PublicKeys> {
    let keys = state
        .flow
        .signer
        .public_keys()
        .into_iter()
        .map(|(key_id, public_key)| PublicKey { key_id, algorithm: "Ed25519".into(), public_key })
        .collect();
    Json(PublicKeys { keys })
}

/// Refund one of the caller's tickets; the seat goes back on sale and the ticket is revoked.
/// Asking again answers the same refund.
#[utoipa::path(post, path = "/api/v1/tickets/{ticket_sn}/refund", tag = "tickets", security(("bearer" = [])),
    params(("ticket_sn" = String, Path)),
    responses((status = 200, body = RefundOut), (status = 400, body = ErrorBody, description = "departed (40014)"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "checked in or rebooked (40909)")))]
pub async fn refund(
    State(state): State<AppState>,
    user: AuthUser,
    sn: Result<Path<String>, PathRejection>,
) -> Result<Json<RefundOut>, ApiError> {
    let r = chepiao_flow::refunds::refund(&state.flow, user.id, &path(sn)?).await?;
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
    params(("ticket_sn" = String, Path),
           ("X-Device-Id" = Option<String>, Header, description = "optional device fingerprint"),
           ("X-Queue-Token" = Option<String>, Header, description = "for a run sold through a waiting room"),
           ("X-Client" = Option<String>, Header, description = "web, app, api or console (statistics; anything else counts as api)")),
    request_body = RebookRequest,
    responses((status = 201, body = OrderOut), (status = 200, body = OrderOut, description = "a replay"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "sold out (40903), not rebookable (40910), a passenger's journeys overlap (40914), too many cancellations today (40915), or a rebook issued the ticket (40916)"),
              (status = 429, body = ErrorBody)))]
pub async fn rebook(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Buyer { device, queue_token: token, source }: Buyer,
    sn: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<RebookRequest>,
) -> Result<Response, ApiError> {
    // Rebooking onto a sale's run needs its queue token and passes the risk checks, like an order.
    risk_check(&state.risk, "rebook", &Subject { user: user.id, device, ip })?;
    let (flow, sn) = (state.flow.clone(), path(sn)?);
    let key = format!("rebook:{sn}:{}", req.idempotency_key.as_deref().unwrap_or(""));
    let admitted = admit(&state, user.id, token.as_deref(), [req.run_id.as_str()], &key).await?;
    let rebook = async move { chepiao_flow::rebook::rebook(&flow, user.id, &sn, &req, source).await };
    let placed = spent_on(&state, admitted.as_ref(), &key, chepiao_flow::orders::detached(rebook).await).await?;
    let out = order_out(&placed.order, placed.order.status)?;
    Ok((created_or_replayed(placed.created), Json(out)).into_response())
}
