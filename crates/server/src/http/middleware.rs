//! Cross-cutting request handling: request ids, body-size and time limits, panics turned into
//! JSON errors, access logs and per-route Prometheus metrics. (Load shedding and per-IP
//! limits are hot-sale protection: `crate::hotsale::limits`.)

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::http::request_id::{self, REQUEST_ID, REQUEST_ID_HEADER};

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub body_len_max: usize,
    pub request_timeout: Duration,
}

/// Outermost layer: assign the request id, enforce the declared body size and the time limit,
/// and log the request. Everything inside runs with the id in a task-local.
pub async fn request_context(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let id = request_id::from_client(req.headers()).unwrap_or_else(request_id::new_id);
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), async move {
            match declared_within_limit(req, limits.body_len_max).await {
                Ok(req) => within(limits.request_timeout, next, req).await,
                Err(refused) => refused,
            }
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

/// The request, unless its declared length is over `len_max` bytes; then the 413, after reading
/// and dropping what the client is still sending, as nginx's lingering close does: closing with
/// unread bytes makes the kernel reset the connection, and the client never sees the 413.
async fn declared_within_limit(req: Request, len_max: usize) -> Result<Request, Response> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > len_max as u64) {
        drain(req.into_body().into_data_stream()).await;
        return Err(too_large(len_max));
    }
    Ok(req)
}

/// A body whose length is not declared (chunked) is read here, up to `len_max` bytes, so that
/// one over the limit is refused in a way the client can read, as a declared one is (the
/// handler's own limit would answer before the client stopped sending). This layer sits inside
/// load shedding and the time limit: a request shed is not read, and a slow body counts against
/// the request's time.
pub async fn chunked_body(State(len_max): State<usize>, req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::CONTENT_LENGTH) || !req.headers().contains_key(header::TRANSFER_ENCODING) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match read_chunked(body.into_data_stream(), len_max).await {
        Ok(read) => next.run(Request::from_parts(parts, axum::body::Body::from(read))).await,
        Err(refused) => refused,
    }
}

/// A chunked body, whole, when it comes to at most `len_max` bytes (its buffer grows to at most
/// twice that).
async fn read_chunked(mut stream: axum::body::BodyDataStream, len_max: usize) -> Result<axum::body::Bytes, Response> {
    use futures_util::StreamExt;
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::malformed_body("the body could not be read").into_response())?;
        if read.len() + chunk.len() > len_max {
            drain(stream).await;
            return Err(too_large(len_max));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.into())
}

fn too_large(len_max: usize) -> Response {
    let mut r = ApiError::body_too_large(format!("body exceeds {len_max} bytes")).into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Bytes of a refused body read and dropped at most, and for how long.
const DRAIN_LEN_MAX: usize = 8 * 1024 * 1024;
const DRAIN_TIME_MAX: Duration = Duration::from_secs(2);

async fn drain(mut stream: axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let mut read = 0;
    let _ = tokio::time::timeout(DRAIN_TIME_MAX, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_LEN_MAX {
                break;
            }
        }
    })
    .await;
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

/// Run the rest of the stack, or answer 503/50302 once `limit` has passed.
pub async fn within(limit: Duration, next: Next, req: Request) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(format!("no answer within {} ms", limit.as_millis())).into_response(),
    }
}
