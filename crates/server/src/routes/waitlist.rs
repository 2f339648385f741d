//! The waitlist (候补) and the notifications it sends; the work is in `flow::waitlist`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::flow::waitlist::{self, WishRequest, WishView};
use crate::routes::ApiJson;
use crate::routes::orders::{PayRequest, PayStarted, rfc3339};

#[derive(Serialize, utoipa::ToSchema)]
pub struct WishOut {
    pub waitlist_id: String,
    /// PENDING_PAYMENT, WAITING, FULFILLED, EXPIRED or CANCELLED.
    pub status: &'static str,
    pub amount_fen: i64,
    /// The order that carries the wish's money; once FULFILLED it holds the seats and tickets.
    pub order_no: String,
    pub run_id: String,
    pub from: String,
    pub to: String,
    pub class: String,
    pub passenger_ids: Vec<i64>,
    pub deadline: String,
    pub pay_before: String,
    pub created_at: String,
}

fn wish_out(v: &WishView) -> WishOut {
    WishOut {
        waitlist_id: v.wish.wish_id.clone(),
        status: v.status(),
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

fn path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(p)| p).map_err(|e| ApiError::bad_parameter(e.body_text()))
}

/// Join the waitlist for a sold-out run; pay the wish through `/waitlist/{id}/payments`.
#[utoipa::path(post, path = "/api/v1/waitlist", tag = "waitlist", request_body = WishRequest,
    security(("bearer" = [])),
    responses((status = 201, body = WishOut), (status = 200, body = WishOut, description = "a replay"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<WishRequest>,
) -> Result<Response, ApiError> {
    let (view, created) = waitlist::join(&state, user.id, &req).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(wish_out(&view))).into_response())
}

/// One of the caller's wishes.
#[utoipa::path(get, path = "/api/v1/waitlist/{waitlist_id}", tag = "waitlist", security(("bearer" = [])),
    params(("waitlist_id" = String, Path)),
    responses((status = 200, body = WishOut), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WishOut>, ApiError> {
    let view = waitlist::own_wish(&state, user.id, &path(id)?).await?;
    Ok(Json(wish_out(&view)))
}

/// Pay for a wish (exactly as for an order).
#[utoipa::path(post, path = "/api/v1/waitlist/{waitlist_id}/payments", tag = "waitlist", request_body = PayRequest,
    security(("bearer" = [])), params(("waitlist_id" = String, Path)),
    responses((status = 201, body = PayStarted), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn pay(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<PayRequest>,
) -> Result<Response, ApiError> {
    let view = waitlist::own_wish(&state, user.id, &path(id)?).await?;
    if view.status() != "PENDING_PAYMENT" {
        return Err(ApiError::order_not_payable(format!("wish {} is {}", view.wish.wish_id, view.status())));
    }
    crate::routes::orders::start_payment(&state, user.id, &headers, &view.order.order_no, &req.channel).await
}

/// Cancel a wish not yet fulfilled; a paid wish is refunded in full.
#[utoipa::path(post, path = "/api/v1/waitlist/{waitlist_id}/cancel", tag = "waitlist", security(("bearer" = [])),
    params(("waitlist_id" = String, Path)),
    responses((status = 200, body = WishOut), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody, description = "fulfilled or ended (40911)")))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WishOut>, ApiError> {
    let view = waitlist::cancel(&state, user.id, &path(id)?).await?;
    Ok(Json(wish_out(&view)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationOut {
    pub id: i64,
    /// `wish.fulfilled`, `wish.expired`, `wish.cancelled`.
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationList {
    pub items: Vec<NotificationOut>,
}

/// The caller's latest notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "waitlist", security(("bearer" = [])),
    responses((status = 200, body = NotificationList)))]
pub async fn notifications(State(state): State<AppState>, user: AuthUser) -> Result<Json<NotificationList>, ApiError> {
    let found = state.store.notifications(user.id, chepiao_store::NOTIFICATIONS_PAGE_MAX).await?;
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
