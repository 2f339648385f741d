//! The waitlist (候补) and the notifications it sends; the work is in `chepiao_flow::waitlist`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chepiao_api::orders::{PayRequest, PayStarted};
use chepiao_api::waitlist::{NotificationList, NotificationOut, WishOut, WishRequest};
use chepiao_flow::rfc3339;
use chepiao_flow::waitlist::{self, WishView};

use crate::hotsale::guard::risk_check;
use crate::hotsale::limits::ClientIp;
use crate::hotsale::risk::Subject;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Buyer, path};
use crate::routes::orders::{admit, created_or_replayed, spent_on};
use crate::security::auth::AuthUser;
use crate::state::AppState;

fn wish_out(v: &WishView) -> WishOut {
    WishOut {
        waitlist_id: v.wish.wish_id.clone(),
        status: v.status().into(),
        amount_fen: v.order.amount_fen,
        order_no: v.order.order_no.clone(),
        run_id: v.wish.run_id.clone(),
        from: v.wish.from_station.clone(),
        to: v.wish.to_station.clone(),
        class: v.wish.class.clone(),
        passenger_ids: v.wish.passenger_ids.clone(),
        deadline: rfc3339(v.wish.deadline_ms),
        pay_before: rfc3339(v.order.pay_before_ms),
        created_at: rfc3339(v.wish.created_at_ms),
    }
}

/// Join the waitlist for a sold-out run; pay the wish through `/waitlist/{id}/payments`.
#[utoipa::path(post, path = "/api/v1/waitlist", tag = "waitlist", request_body = WishRequest,
    security(("bearer" = [])),
    params(("X-Device-Id" = Option<String>, Header, description = "optional device fingerprint"),
           ("X-Queue-Token" = Option<String>, Header, description = "for a run sold through a waiting room"),
           ("X-Client" = Option<String>, Header, description = "web, app, api or console (statistics; anything else counts as api)")),
    responses((status = 201, body = WishOut), (status = 200, body = WishOut, description = "a replay"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Buyer { device, queue_token: token, source }: Buyer,
    ApiJson(req): ApiJson<WishRequest>,
) -> Result<Response, ApiError> {
    // A sale's runs are sold through its waiting room: a wish on them needs its token too.
    risk_check(&state.risk, "waitlist", &Subject { user: user.id, device, ip })?;
    // Without an idempotency key every wish is a new one: each spends a token of its own.
    let key = match req.idempotency_key.as_deref() {
        Some(k) => format!("wish:{k}"),
        None => format!("wish:{}", uuid::Uuid::new_v4().simple()),
    };
    let admitted = admit(&state, user.id, token.as_deref(), [req.run_id.as_str()], &key).await?;
    let joined = waitlist::join(&state.flow, user.id, &req, source).await;
    let (view, created) = spent_on(&state, admitted.as_ref(), &key, joined).await?;
    Ok((created_or_replayed(created), Json(wish_out(&view))).into_response())
}

/// One of the caller's wishes.
#[utoipa::path(get, path = "/api/v1/waitlist/{waitlist_id}", tag = "waitlist", security(("bearer" = [])),
    params(("waitlist_id" = String, Path)),
    responses((status = 200, body = WishOut), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WishOut>, ApiError> {
    let view = waitlist::own_wish(&state.flow, user.id, &path(id)?).await?;
    Ok(Json(wish_out(&view)))
}

/// Pay for a wish (exactly as for an order).
#[utoipa::path(post, path = "/api/v1/waitlist/{waitlist_id}/payments", tag = "waitlist", request_body = PayRequest,
    security(("bearer" = [])), params(("waitlist_id" = String, Path)),
    responses((status = 201, body = PayStarted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pay(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<PayRequest>,
) -> Result<Response, ApiError> {
    let view = waitlist::own_wish(&state.flow, user.id, &path(id)?).await?;
    if view.status() != "PENDING_PAYMENT" {
        return Err(ApiError::order_not_payable(format!("wish {} is {}", view.wish.wish_id, view.status())));
    }
    crate::routes::orders::start_payment(&state, user.id, &headers, &view.order.order_no, &req.channel).await
}

/// Cancel a wish not yet fulfilled; a paid wish is refunded in full.
#[utoipa::path(post, path = "/api/v1/waitlist/{waitlist_id}/cancel", tag = "waitlist", security(("bearer" = [])),
    params(("waitlist_id" = String, Path)),
    responses((status = 200, body = WishOut), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "fulfilled or ended (40911)")))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WishOut>, ApiError> {
    let view = waitlist::cancel(&state.flow, user.id, &path(id)?).await?;
    Ok(Json(wish_out(&view)))
}

/// The caller's latest notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "waitlist", security(("bearer" = [])),
    responses((status = 200, body = NotificationList)))]
pub async fn notifications(State(state): State<AppState>, user: AuthUser) -> Result<Json<NotificationList>, ApiError> {
    let found = state.flow.store.notifications(user.id, chepiao_store::NOTIFICATIONS_PAGE_MAX).await?;
    let items = found
        .into_iter()
        .map(|n| NotificationOut {
            id: n.id,
            kind: n.kind,
            subject: n.subject,
            body: n.body,
            created_at: rfc3339(n.created_at_ms),
        })
        .collect();
    Ok(Json(NotificationList { items }))
}
