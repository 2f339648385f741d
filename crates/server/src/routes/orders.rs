//! Orders and payments as API.md describes them; the work is in `flow::orders`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chepiao_store::{OrderRecord, OrderStatus, PaymentRecord, TicketRecord};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::flow::orders::{self, OrderRequest, StoredLeg, legs_of};
use crate::routes::{ApiJson, Params};

/// A time in ms as RFC 3339 in China time.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&chepiao_domain::types::china_offset())
        .to_rfc3339()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SeatOut {
    pub passenger_id: i64,
    pub coach: u8,
    /// `05A`, `012`, `无座`.
    pub seat: String,
    pub price_fen: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LegOut {
    pub run_id: String,
    pub train_code: String,
    pub from: String,
    pub to: String,
    #[schema(value_type = String, example = "SECOND")]
    pub class: chepiao_domain::SeatClass,
    pub departs_at: String,
    pub arrives_at: String,
    pub seats: Vec<SeatOut>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PaymentOut {
    pub payment_no: String,
    pub channel: String,
    pub amount_fen: i64,
    /// CREATED, SUCCESS, FAILED, REFUND_PENDING or REFUNDED.
    pub status: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TicketOut {
    pub ticket_sn: String,
    pub order_no: String,
    pub passenger_id: i64,
    pub run_id: String,
    pub from: String,
    pub to: String,
    pub class: String,
    pub coach: i64,
    pub seat: String,
    pub price_fen: i64,
    /// ISSUED, CHECKED_IN, REFUNDED or REBOOKED.
    pub status: String,
    /// The signed payload the QR code carries.
    pub qr: String,
}

impl From<&TicketRecord> for TicketOut {
    fn from(t: &TicketRecord) -> Self {
        TicketOut {
            ticket_sn: t.ticket_sn.clone(),
            order_no: t.order_no.clone(),
            passenger_id: t.passenger_id,
            run_id: t.run_id.clone(),
            from: t.from_station.clone(),
            to: t.to_station.clone(),
            class: t.class.clone(),
            coach: t.coach,
            seat: t.seat.clone(),
            price_fen: t.price_fen,
            status: t.status.as_str().into(),
            qr: t.qr.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderOut {
    pub order_no: String,
    /// PENDING_PAYMENT, PAID, TICKETED, CANCELLED, EXPIRED, PARTIALLY_REFUNDED or REFUNDED.
    pub status: String,
    pub amount_fen: i64,
    pub pay_before: String,
    pub created_at: String,
    pub legs: Vec<LegOut>,
    /// On `GET /orders/{order_no}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<Vec<PaymentOut>>,
    /// On `GET /orders/{order_no}` only, once issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tickets: Option<Vec<TicketOut>>,
}

fn leg_out(l: StoredLeg) -> LegOut {
    LegOut {
        run_id: l.run_id,
        train_code: l.train_code,
        from: l.from,
        to: l.to,
        class: l.class,
        departs_at: l.departs_at,
        arrives_at: l.arrives_at,
        seats: l
            .seats
            .into_iter()
            .map(|s| SeatOut { passenger_id: s.passenger_id, coach: s.coach, seat: s.seat, price_fen: s.price_fen })
            .collect(),
    }
}

pub(crate) fn order_out(o: &OrderRecord, status: OrderStatus) -> Result<OrderOut, ApiError> {
    Ok(OrderOut {
        order_no: o.order_no.clone(),
        status: status.as_str().into(),
        amount_fen: o.amount_fen,
        pay_before: rfc3339(o.pay_before_ms),
        created_at: rfc3339(o.created_at_ms),
        legs: legs_of(o)?.into_iter().map(leg_out).collect(),
        payments: None,
        tickets: None,
    })
}

fn payment_out(p: &PaymentRecord) -> PaymentOut {
    PaymentOut {
        payment_no: p.payment_no.clone(),
        channel: p.channel.clone(),
        amount_fen: p.amount_fen,
        status: p.status.as_str().into(),
    }
}

/// Hold seats and create an order. A replay of the idempotency key answers 200 with the body
/// the first call got (its status then is the status at creation; `GET` the order for now).
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = OrderRequest,
    security(("bearer" = [])),
    responses((status = 201, body = OrderOut), (status = 200, body = OrderOut, description = "a replay"),
              (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody, description = "sold out (40903) or key reused (40904)"),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    axum::extract::Extension(crate::middleware::ClientIp(ip)): axum::extract::Extension<crate::middleware::ClientIp>,
    ApiJson(req): ApiJson<OrderRequest>,
) -> Result<Response, ApiError> {
    let device = crate::routes::queue::device_id(&headers)?;
    crate::routes::queue::risk_check(&state, "order", &crate::risk::Subject { user: user.id, device, ip })?;
    check_queue_token(&state, user.id, &headers, &req)?;
    let placed = orders::place(&state, user.id, &req).await?;
    metrics::counter!("chepiao_orders_total", "result" => if placed.created { "created" } else { "replayed" })
        .increment(1);
    let status = if placed.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(order_out(&placed.order, OrderStatus::PendingPayment)?)).into_response())
}

/// An order for a run sold through a waiting room needs the caller's queue token for that sale.
fn check_queue_token(state: &AppState, user_id: i64, headers: &HeaderMap, req: &OrderRequest) -> Result<(), ApiError> {
    let token = headers.get("x-queue-token").and_then(|v| v.to_str().ok());
    for leg in &req.legs {
        let Some(sale) = state.room.sale_of_run(&leg.run_id) else { continue };
        let Some(token) = token else {
            return Err(ApiError::queue_token_required(format!(
                "{} is sold through sale {}",
                leg.run_id, sale.sale_id
            )));
        };
        let checked = state.room.tokens.check(token, &sale.sale_id, user_id, orders::now_ms());
        metrics::counter!("chepiao_queue_token_checks_total", "result" => checked.map_or_else(|e| e.label(), |()| "ok"))
            .increment(1);
        match checked {
            Ok(()) => {}
            Err(crate::queue::TokenError::Forged) => {
                return Err(ApiError::queue_token_invalid("the queue token is not genuine"));
            }
            Err(crate::queue::TokenError::Expired) => {
                return Err(ApiError::queue_token_expired("join the queue again"));
            }
            Err(crate::queue::TokenError::NotYours) => {
                return Err(ApiError::queue_token_not_yours(format!(
                    "the token is not yours for sale {}",
                    sale.sale_id
                )));
            }
        }
    }
    Ok(())
}

/// One of the caller's orders, with its payments and tickets.
#[utoipa::path(get, path = "/api/v1/orders/{order_no}", tag = "orders", security(("bearer" = [])),
    params(("order_no" = String, Path)),
    responses((status = 200, body = OrderOut), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    order_no: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderOut>, ApiError> {
    let Path(order_no) = order_no.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let order = orders::own_order(&state, user.id, &order_no).await?;
    let (payments, tickets) = tokio::try_join!(state.store.payments_of(&order_no), state.store.tickets_of(&order_no))?;
    let mut out = order_out(&order, order.status)?;
    out.payments = Some(payments.iter().map(payment_out).collect());
    out.tickets = Some(tickets.iter().map(TicketOut::from).collect());
    Ok(Json(out))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderList {
    pub items: Vec<OrderOut>,
    pub page: u32,
    pub page_size: u32,
    pub total: u64,
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(("status" = Option<String>, Query), ("page" = Option<u32>, Query, description = "from 1"),
           ("page_size" = Option<u32>, Query, description = "1 to 100, default 20")),
    responses((status = 200, body = OrderList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(State(state): State<AppState>, user: AuthUser, params: Params) -> Result<Json<OrderList>, ApiError> {
    let status = match params.optional::<String>("status")? {
        None => None,
        Some(s) => Some(
            OrderStatus::parse(&s)
                .ok_or_else(|| ApiError::bad_parameter(format!("parameter `status`: {s:?} is not an order status")))?,
        ),
    };
    let page: u32 = params.optional("page")?.unwrap_or(1);
    let page_size: u32 = params.optional("page_size")?.unwrap_or(20);
    if page == 0 || page > 10_000 {
        return Err(ApiError::bad_parameter("parameter `page`: 1 to 10000"));
    }
    if !(1..=chepiao_store::PAGE_SIZE_MAX).contains(&page_size) {
        return Err(ApiError::bad_parameter(format!("parameter `page_size`: 1 to {}", chepiao_store::PAGE_SIZE_MAX)));
    }
    let found = state.store.orders_of(user.id, status, page, page_size).await?;
    let items = found.items.iter().map(|o| order_out(o, o.status)).collect::<Result<_, _>>()?;
    Ok(Json(OrderList { items, page, page_size, total: found.total }))
}

/// Cancel an unpaid order: its seats go back on sale. Cancelling twice answers the same.
#[utoipa::path(post, path = "/api/v1/orders/{order_no}/cancel", tag = "orders", security(("bearer" = [])),
    params(("order_no" = String, Path)),
    responses((status = 200, body = OrderOut), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    order_no: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderOut>, ApiError> {
    let Path(order_no) = order_no.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let order = orders::cancel(&state, user.id, &order_no).await?;
    Ok(Json(order_out(&order, order.status)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// `mockpay`
    pub channel: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PayStarted {
    pub payment_no: String,
    pub amount_fen: i64,
    /// Where the payer pays (for `mockpay`: POST to it).
    pub pay_url: String,
}

/// How clients reach this server: `public_url`, or the request's Host.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// Start paying an order.
#[utoipa::path(post, path = "/api/v1/orders/{order_no}/payments", tag = "payments", request_body = PayRequest,
    security(("bearer" = [])), params(("order_no" = String, Path)),
    responses((status = 201, body = PayStarted), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn pay(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    order_no: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<PayRequest>,
) -> Result<Response, ApiError> {
    let Path(order_no) = order_no.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    start_payment(&state, user.id, &headers, &order_no, &req.channel).await
}

/// Start paying `order_no` and answer 201 with where to pay (orders and wishes alike).
pub(crate) async fn start_payment(
    state: &AppState,
    user_id: i64,
    headers: &HeaderMap,
    order_no: &str,
    channel: &str,
) -> Result<Response, ApiError> {
    let base = base_url(state, headers);
    let (payment, pay_url) = orders::start_payment(state, user_id, order_no, channel, &base).await?;
    let out = PayStarted { payment_no: payment.payment_no, amount_fen: payment.amount_fen, pay_url };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
