//! Orders and the start of a payment, as API.md describes them; the work is in
//! `chepiao_flow::orders`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chepiao_api::orders::{
    LegOut, OrderList, OrderOut, OrderRequest, PayRequest, PayStarted, PaymentOut, SeatOut, TicketOut,
};
use chepiao_flow::orders;
use chepiao_flow::rfc3339;
use chepiao_flow::stored::{StoredLeg, legs_of};
use chepiao_store::{OrderRecord, OrderStatus, PageQuery, PaymentRecord, TicketRecord};

use crate::hotsale::guard::{Admitted, check_queue_token, risk_check, spend, unspend};
use crate::hotsale::limits::ClientIp;
use crate::hotsale::risk::Subject;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Buyer, Params, path};
use crate::security::auth::AuthUser;
use crate::state::AppState;

pub fn ticket_out(t: &TicketRecord) -> TicketOut {
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

pub fn order_out(o: &OrderRecord, status: OrderStatus) -> Result<OrderOut, ApiError> {
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

/// Check the queue token of a sale's runs and, when tokens are single-use, spend it on the
/// order with idempotency key `key`.
pub async fn admit<'a>(
    state: &AppState,
    user_id: i64,
    token: Option<&str>,
    runs: impl IntoIterator<Item = &'a str>,
    key: &str,
) -> Result<Option<Admitted>, ApiError> {
    let now = state.flow.now_ms();
    let admitted = check_queue_token(&state.room, user_id, token, runs, now)?;
    match admitted {
        Some(a) if state.config.queue_token_single_use => {
            spend(&state.room, &a, key, now).await?;
            Ok(Some(a))
        }
        _ => Ok(None),
    }
}

/// A placement's answer. A refusal that certainly made nothing (sold out, a purchase rule, a
/// request the flow found wrong before holding seats) gives its spent queue token back; any
/// other failure keeps it spent: the key may already carry an order (40904), or a placement
/// cut off by the buy time limit goes on detached and may still record one.
pub async fn spent_on<T>(
    state: &AppState,
    admitted: Option<&Admitted>,
    key: &str,
    r: chepiao_flow::Result<T>,
) -> Result<T, ApiError> {
    if let (Err(e), Some(a)) = (&r, admitted)
        && made_nothing(e)
    {
        unspend(&state.room, a, key).await;
    }
    Ok(r?)
}

/// Whether a refused placement certainly held and recorded nothing.
fn made_nothing(e: &chepiao_flow::FlowError) -> bool {
    use chepiao_flow::FlowError::*;
    matches!(
        e,
        SoldOut(_)
            | UnpaidOrder(_)
            | TripOverlap(_)
            | TooManyCancellations(_)
            | BadParameter(_)
            | UnknownRun(_)
            | UnknownPassenger(_)
            | Departed(_)
            | OutsideSaleWindow(_)
            | UnknownTicket(_)
            | NotRebookable(_)
            | RebookedOnce(_)
    )
}

/// 201 for what this call created, 200 for a replay.
pub fn created_or_replayed(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

/// Hold seats and create an order. A replay of the idempotency key answers 200 with the body
/// the first call got (its status then is the status at creation; `GET` the order for now).
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = OrderRequest,
    security(("bearer" = [])),
    params(("X-Device-Id" = Option<String>, Header, description = "optional device fingerprint"),
           ("X-Queue-Token" = Option<String>, Header, description = "for a run sold through a waiting room"),
           ("X-Client" = Option<String>, Header, description = "web, app, api or console (statistics; anything else counts as api)")),
    responses((status = 201, body = OrderOut), (status = 200, body = OrderOut, description = "a replay"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "sold out (40903) or key reused (40904)"),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Buyer { device, queue_token: token, source }: Buyer,
    ApiJson(req): ApiJson<OrderRequest>,
) -> Result<Response, ApiError> {
    risk_check(&state.risk, "order", &Subject { user: user.id, device, ip })?;
    let runs = req.legs.iter().map(|l| l.run_id.as_str());
    let key = req.idempotency_key.clone();
    let admitted = admit(&state, user.id, token.as_deref(), runs, &key).await?;
    let flow = state.flow.clone();
    let run_ids: Vec<String> = req.legs.iter().map(|l| l.run_id.clone()).collect();
    let placed = orders::detached(async move { orders::place(&flow, user.id, &req, source).await }).await;
    let placed = spent_on(&state, admitted.as_ref(), &key, placed).await?;
    if placed.created {
        state.live.order(state.flow.now_ms(), run_ids.iter().map(String::as_str));
    }
    metrics::counter!("chepiao_orders_total", "result" => if placed.created { "created" } else { "replayed" })
        .increment(1);
    let out = order_out(&placed.order, OrderStatus::PendingPayment)?;
    Ok((created_or_replayed(placed.created), Json(out)).into_response())
}

/// One of the caller's orders, with its payments and tickets.
#[utoipa::path(get, path = "/api/v1/orders/{order_no}", tag = "orders", security(("bearer" = [])),
    params(("order_no" = String, Path)),
    responses((status = 200, body = OrderOut), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    order_no: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderOut>, ApiError> {
    let order_no = path(order_no)?;
    let order = orders::own_order(&state.flow, user.id, &order_no).await?;
    let store = &state.flow.store;
    let (payments, tickets) = tokio::try_join!(store.payments_of(&order_no), store.tickets_of(&order_no))?;
    let mut out = order_out(&order, order.status)?;
    out.payments = Some(payments.iter().map(payment_out).collect());
    out.tickets = Some(tickets.iter().map(ticket_out).collect());
    Ok(Json(out))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(("status" = Option<String>, Query), ("page" = Option<u32>, Query, description = "from 1"),
           ("page_size" = Option<u32>, Query, description = "1 to 100, default 20")),
    responses((status = 200, body = OrderList), (status = 400, body = ErrorBody)))]
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
    let found = state.flow.store.orders_of(PageQuery { user_id: user.id, status, page, page_size }).await?;
    let items = found.items.iter().map(|o| order_out(o, o.status)).collect::<Result<_, _>>()?;
    Ok(Json(OrderList { items, page, page_size, total: found.total }))
}

/// Cancel an unpaid order: its seats go back on sale. Cancelling twice answers the same.
#[utoipa::path(post, path = "/api/v1/orders/{order_no}/cancel", tag = "orders", security(("bearer" = [])),
    params(("order_no" = String, Path)),
    responses((status = 200, body = OrderOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    order_no: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderOut>, ApiError> {
    let order = orders::cancel(&state.flow, user.id, &path(order_no)?).await?;
    Ok(Json(order_out(&order, order.status)?))
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
    responses((status = 201, body = PayStarted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pay(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    order_no: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<PayRequest>,
) -> Result<Response, ApiError> {
    start_payment(&state, user.id, &headers, &path(order_no)?, &req.channel).await
}

/// Start paying `order_no` and answer 201 with where to pay (orders and wishes alike).
pub async fn start_payment(
    state: &AppState,
    user_id: i64,
    headers: &HeaderMap,
    order_no: &str,
    channel: &str,
) -> Result<Response, ApiError> {
    let base = base_url(state, headers);
    let (payment, pay_url) = orders::start_payment(&state.flow, user_id, order_no, channel, &base).await?;
    let out = PayStarted { payment_no: payment.payment_no, amount_fen: payment.amount_fen, pay_url };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
