//! Cross-cutting request handling: request ids, body-size and time limits, panics turned into
//! JSON errors, access logs and per-route Prometheus metrics.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Longest request id accepted from a client's `x-request-id`; longer ones are replaced.
const REQUEST_ID_LEN_MAX: usize = 64;
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request this task is serving (empty outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub body_len_max: usize,
    pub request_timeout: Duration,
}

fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= REQUEST_ID_LEN_MAX
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| v.to_string())
}

/// A new request id: this process's random prefix and a sequence number. Unique without a
/// call to the OS's random source per request (a v4 UUID each cost a `getrandom` system call).
fn new_request_id() -> String {
    static PREFIX: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}{:08x}", *PREFIX, SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Outermost layer: assign the request id, enforce the declared body size and the time limit,
/// and log the request. Everything inside runs with the id in a task-local.
pub async fn request_context(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let id = client_request_id(&req).unwrap_or_else(new_request_id);
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), async move {
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limits.body_len_max as u64) {
                return ApiError::body_too_large(format!("body exceeds {} bytes", limits.body_len_max)).into_response();
            }
            within(limits.request_timeout, next, req).await
        })
        .await;
    let status = response.status().as_u16();
    let elapsed_us = started.elapsed().as_micros() as u64;
    tracing::debug!(request_id = %id, %method, %uri, status, elapsed_us, "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Per-route metrics; installed with `route_layer` so the matched route template is known.
pub async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("", MatchedPath::as_str);
    record_request(route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// The metric handles of one route, method and status.
struct RouteHandles {
    method: axum::http::Method,
    status: u16,
    count: metrics::Counter,
    duration: metrics::Histogram,
}

/// Count a request and record its duration. The handles are registered once per route, method
/// and status, then found again by the route template: building the labelled key (three owned
/// strings) for every request cost more than the request's own metrics. Bounded by the routes,
/// their methods and the statuses they answer.
fn record_request(route: &str, method: &axum::http::Method, status: u16, elapsed_s: f64) {
    type ByRoute = std::collections::HashMap<String, Vec<RouteHandles>>;
    static BY_ROUTE: std::sync::LazyLock<std::sync::RwLock<ByRoute>> = std::sync::LazyLock::new(Default::default);
    let record = |by_route: &ByRoute| {
        let h = by_route.get(route)?.iter().find(|h| h.status == status && h.method == *method)?;
        h.count.increment(1);
        h.duration.record(elapsed_s);
        Some(())
    };
    if record(&BY_ROUTE.read().expect("never poisoned")).is_some() {
        return;
    }
    let mut by_route = BY_ROUTE.write().expect("never poisoned");
    if record(&by_route).is_none() {
        let (m, r) = (method.as_str().to_owned(), route.to_owned());
        let count = metrics::counter!("http_requests_total", "method" => m.clone(), "route" => r.clone(), "status" => status.to_string());
        let duration = metrics::histogram!("http_request_duration_seconds", "method" => m, "route" => r);
        count.increment(1);
        duration.record(elapsed_s);
        by_route.entry(route.to_owned()).or_default().push(RouteHandles {
            method: method.clone(),
            status,
            count,
            duration,
        });
    }
}

/// A panic in a handler is a bug; the client gets a JSON 500, the server keeps running.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panic");
    tracing::error!(panic = detail, "handler panicked");
    ApiError::internal("internal error").into_response()
}

/// The client's IP: the connection's peer, or, behind a proxy on a loopback or private
/// address (the nginx example sets it), the `X-Real-IP` the proxy sends. A client cannot pose as
/// another IP by sending the header itself from a public address.
pub fn client_ip(req_headers: &axum::http::HeaderMap, peer: Option<std::net::SocketAddr>) -> std::net::IpAddr {
    let peer_ip = peer.map(|p| p.ip()).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let trusted = match peer_ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        std::net::IpAddr::V6(v6) => v6.is_loopback(),
    };
    if trusted
        && let Some(real) =
            req_headers.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
    {
        return real;
    }
    peer_ip
}

/// Per-IP token buckets (GCRA, `governor`): 429 before any work.
pub struct IpLimits(crate::risk::KeyedLimiter<std::net::IpAddr>);

impl IpLimits {
    pub fn new(per_s: u32, burst: u32) -> IpLimits {
        IpLimits(crate::risk::keyed_limiter(per_s, burst))
    }

    pub fn allow(&self, ip: std::net::IpAddr) -> bool {
        self.0.check_key(&ip).is_ok()
    }

    pub fn tidy(&self) {
        self.0.retain_recent();
    }
}

/// The client IP of a request, as [`client_ip`] sees it.
pub fn request_ip(req: &Request) -> std::net::IpAddr {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    client_ip(req.headers(), peer)
}

/// The client's IP, as the per-IP limit saw it (an extension on every API request).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// Per-IP rate limit on the API (not on health and metrics).
pub async fn ip_rate_limit(State(state): State<crate::AppState>, mut req: Request, next: Next) -> Response {
    match limit_ip(&state, &mut req) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

/// The buy path's layer: the per-IP limit and its own, tighter time limit (one layer, not two:
/// the buy path is the one that takes the rush).
pub async fn buy_guard(State(state): State<crate::AppState>, mut req: Request, next: Next) -> Response {
    match limit_ip(&state, &mut req) {
        Ok(()) => within(Duration::from_millis(state.config.buy_timeout_ms), next, req).await,
        Err(refused) => refused.into_response(),
    }
}

/// Attach the client IP to the request, or refuse it (429) when that IP is over its limit.
fn limit_ip(state: &crate::AppState, req: &mut Request) -> Result<(), ApiError> {
    let ip = request_ip(req);
    if !state.ip_limits.allow(ip) {
        metrics::counter!("chepiao_shed_total", "reason" => "ip_rate").increment(1);
        return Err(ApiError::rate_limited(format!(
            "more than {} requests a second from {ip}",
            state.config.ip_rate_per_s
        )));
    }
    req.extensions_mut().insert(ClientIp(ip));
    Ok(())
}

/// Run the rest of the stack, or answer 503/50302 once `limit` has passed.
async fn within(limit: Duration, next: Next, req: Request) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(format!("no answer within {} ms", limit.as_millis())).into_response(),
    }
}

/// Bounded concurrency: a request beyond `concurrency_max` in flight is answered 503 with
/// `Retry-After` at once, before any work (tower's load-shed over its concurrency limit).
pub async fn overloaded(_: tower::BoxError) -> Response {
    metrics::counter!("chepiao_shed_total", "reason" => "concurrency").increment(1);
    ApiError::overloaded("too many requests in flight; retry after a second").into_response()
}
