//! Load shedding and per-IP limits: what answers before any handler work.
//!
//! - Bounded concurrency: beyond `concurrency_max` requests in flight, 503/50304 with
//!   `Retry-After` at once (tower's load-shed over its concurrency limit; see
//!   [`overloaded`]).
//! - Per-IP token buckets (GCRA, `governor`): 429/42901 before the handler, on every API route;
//!   the buy path checks its own in the same layer as its tighter time limit ([`buy_guard`]).
//! - The client IP is the connection's peer, or `X-Real-IP` when the peer is a trusted proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::hotsale::risk::{KeyedLimiter, keyed_limiter};
use crate::http::error::ApiError;
use crate::http::middleware::within;

/// The client's IP: the connection's peer, or, when the peer is one of the `trusted` proxies
/// (`trusted_proxies`: the nginx in front sets it), the `X-Real-IP` it sends. Nobody else can
/// pose as another address by sending the header, not even from a private network.
pub fn client_ip(req_headers: &HeaderMap, peer: Option<SocketAddr>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer_ip = peer.map(|p| p.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if trusted.iter().any(|net| net.contains(&peer_ip))
        && let Some(real) = req_headers
            .get(chepiao_api::headers::REAL_IP)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    {
        return real;
    }
    peer_ip
}

/// Per-IP token buckets (429 before any work), and the buy path's time limit.
pub struct IpLimits {
    buckets: KeyedLimiter<IpAddr>,
    per_s: u32,
    buy_timeout: Duration,
    /// Proxies whose `X-Real-IP` is believed.
    trusted: Vec<ipnet::IpNet>,
}

/// `trusted_proxies` entries, parsed (config validation refused the malformed ones).
pub fn trusted_proxies(entries: &[String]) -> Vec<ipnet::IpNet> {
    entries
        .iter()
        .filter_map(|p| p.parse::<ipnet::IpNet>().ok().or_else(|| p.parse::<IpAddr>().ok().map(ipnet::IpNet::from)))
        .collect()
}

impl IpLimits {
    pub fn new(per_s: u32, burst: u32, buy_timeout: Duration, trusted: Vec<ipnet::IpNet>) -> IpLimits {
        IpLimits { buckets: keyed_limiter(per_s, burst), per_s, buy_timeout, trusted }
    }

    pub fn allow(&self, ip: IpAddr) -> bool {
        self.buckets.check_key(&ip).is_ok()
    }

    /// Forget idle addresses.
    pub fn tidy(&self) {
        self.buckets.retain_recent();
    }
}

/// The client IP of a request, as [`client_ip`] sees it.
pub fn request_ip(req: &Request, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
    client_ip(req.headers(), peer, trusted)
}

/// The client's IP, as the per-IP limit saw it (an extension on every API request).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Per-IP rate limit on the API (not on health and metrics).
pub async fn ip_rate_limit(State(limits): State<Arc<IpLimits>>, mut req: Request, next: Next) -> Response {
    match limits.limit(&mut req) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

/// The buy path's layer: the per-IP limit and its own, tighter time limit (one layer, not two:
/// the buy path is the one that takes the rush).
pub async fn buy_guard(State(limits): State<Arc<IpLimits>>, mut req: Request, next: Next) -> Response {
    match limits.limit(&mut req) {
        Ok(()) => within(limits.buy_timeout, next, req).await,
        Err(refused) => refused.into_response(),
    }
}

impl IpLimits {
    /// Attach the client IP to the request, or refuse it (429) when that IP is over its limit.
    fn limit(&self, req: &mut Request) -> Result<(), ApiError> {
        let ip = request_ip(req, &self.trusted);
        if !self.allow(ip) {
            metrics::counter!("chepiao_shed_total", "reason" => "ip_rate").increment(1);
            return Err(ApiError::rate_limited(format!("more than {} requests a second from {ip}", self.per_s)));
        }
        req.extensions_mut().insert(ClientIp(ip));
        Ok(())
    }
}

/// Bounded concurrency: a request beyond `concurrency_max` in flight is answered 503 with
/// `Retry-After` at once, before any work (tower's load-shed over its concurrency limit).
pub async fn overloaded(_: tower::BoxError) -> Response {
    metrics::counter!("chepiao_shed_total", "reason" => "concurrency").increment(1);
    ApiError::overloaded("too many requests in flight; retry after a second").into_response()
}
