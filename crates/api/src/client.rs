//! A small typed async client of the API (reqwest). Every call answers the typed body, or a
//! [`ClientError`] carrying the server's `{code, message}` when it said no.
//!
//! A `Client` is cheap to clone; `with_token`, `with_header` make a copy for another user or
//! device (the connection pool is shared).

use chepiao_domain::SeatClass;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkin::{CheckInAccepted, CheckInRequest, RevocationPage, ScanUpload, UploadReport};
use crate::error::ErrorBody;
use crate::headers;
use crate::network::{RunView, SeatMapView, StationView, TrainResult};
use crate::ops::{EventPage, EventView};
use crate::orders::{OrderList, OrderOut, OrderRequest, PayRequest, PayStarted};
use crate::payments::{MockpayPressed, NotifyAck};
use crate::queue::{QueueStatus, RiskList, SaleOut};
use crate::stats::{AuditVerify, EngineReplica, LiveFigures, RoomFigures, SalesStats};
use crate::tickets::{PublicKeys, RebookRequest, RefundOut};
use crate::users::{Credentials, LoggedIn, NewPassengerBody, PassengerList, PassengerView, PasswordChange, Registered};
use crate::waitlist::{NotificationList, WishOut, WishRequest};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused, in the error model.
    #[error("HTTP {status}: {} {}", body.code, body.message)]
    Api { status: u16, body: ErrorBody },
    /// An answer that is neither the expected body nor an error body.
    #[error("HTTP {status}, unexpected body: {text}")]
    Unexpected { status: u16, text: String },
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
}

impl ClientError {
    /// The error code, when the server answered in the error model.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => Some(*status),
            ClientError::Transport(e) => e.status().map(|s| s.as_u16()),
        }
    }
}

/// An answer with its status: create calls answer 201, and 200 for a replay.
#[derive(Debug, Clone)]
pub struct Answered<T> {
    pub status: u16,
    pub body: T,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Headers sent with every call (a device id, a client address behind a proxy).
    headers: Vec<(&'static str, String)>,
}

type Result<T> = std::result::Result<T, ClientError>;

/// No body.
const NONE: Option<&()> = None;

/// A refusal's body in the error model, or as text when it is not.
fn refusal(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api { status, body },
        Err(_) => ClientError::Unexpected { status, text: String::from_utf8_lossy(bytes).into_owned() },
    }
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Client {
        Client::with_http(reqwest::Client::new(), base)
    }

    /// A client sharing `http`'s connection pool.
    pub fn with_http(http: reqwest::Client, base: &str) -> Client {
        Client { http, base: base.trim_end_matches('/').to_string(), token: None, headers: Vec::new() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// This client (its token and headers) calling the server at another address.
    pub fn with_base(&self, base: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_string(), ..self.clone() }
    }

    /// This client, calling as the user `token` belongs to.
    pub fn with_token(&self, token: &str) -> Client {
        Client { token: Some(token.to_string()), ..self.clone() }
    }

    /// This client, adding a header to every call (e.g. [`headers::DEVICE_ID`]).
    pub fn with_header(&self, name: &'static str, value: &str) -> Client {
        let mut c = self.clone();
        c.headers.retain(|(n, _)| *n != name);
        c.headers.push((name, value.to_string()));
        c
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) }
    }

    /// A request to `path` with this client's token and headers, to finish by hand (tests send
    /// what the typed calls cannot: malformed bodies, wrong headers).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        req
    }

    /// Send `req` and read the answer as `T`, or as the error model.
    pub async fn send<T: DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<Answered<T>> {
        let r = req.send().await?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        if status < 400 {
            return serde_json::from_slice(&bytes)
                .map(|body| Answered { status, body })
                .map_err(|_| ClientError::Unexpected { status, text: String::from_utf8_lossy(&bytes).into_owned() });
        }
        Err(refusal(status, &bytes))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        extra: &[(&str, &str)],
    ) -> Result<Answered<T>> {
        let mut req = self.request(method, path);
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Client::send(req).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.call(Method::GET, path, NONE, &[]).await?.body)
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: Option<&impl Serialize>) -> Result<T> {
        Ok(self.call(Method::POST, path, body, &[]).await?.body)
    }

    pub async fn register(&self, username: &str, password: &str) -> Result<Registered> {
        let c = Credentials { username: username.into(), password: password.into() };
        self.post("/api/v1/auth/register", Some(&c)).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Result<LoggedIn> {
        let c = Credentials { username: username.into(), password: password.into() };
        self.post("/api/v1/auth/login", Some(&c)).await
    }

    /// Change the caller's password: every earlier token stops working; the answer is a new one.
    pub async fn change_password(&self, old_password: &str, new_password: &str) -> Result<LoggedIn> {
        let c = PasswordChange { old_password: old_password.into(), new_password: new_password.into() };
        self.post("/api/v1/auth/password", Some(&c)).await
    }

    /// Log out: every token of the caller stops working.
    pub async fn logout(&self) -> Result<()> {
        let r = self.request(Method::POST, "/api/v1/auth/logout").send().await?;
        let status = r.status().as_u16();
        if status == 204 {
            return Ok(());
        }
        Err(refusal(status, &r.bytes().await?))
    }

    pub async fn add_passenger(&self, name: &str, id_type: &str, id_no: &str) -> Result<PassengerView> {
        let p = NewPassengerBody { name: name.into(), id_type: id_type.into(), id_no: id_no.into() };
        self.post("/api/v1/passengers", Some(&p)).await
    }

    pub async fn passengers(&self) -> Result<PassengerList> {
        self.get("/api/v1/passengers").await
    }

    pub async fn stations(&self, q: &str) -> Result<Vec<StationView>> {
        let req = self.request(Method::GET, "/api/v1/stations").query(&[("q", q)]);
        Ok(Client::send(req).await?.body)
    }

    pub async fn trains(&self, from: &str, to: &str, date: &str) -> Result<Vec<TrainResult<'static>>> {
        self.get(&format!("/api/v1/trains?from={from}&to={to}&date={date}")).await
    }

    pub async fn run(&self, run_id: &str) -> Result<RunView> {
        self.get(&format!("/api/v1/runs/{run_id}")).await
    }

    pub async fn seats(&self, run_id: &str, from: &str, to: &str, class: SeatClass) -> Result<SeatMapView<'static>> {
        self.get(&format!("/api/v1/runs/{run_id}/seats?from={from}&to={to}&class={}", class.as_str())).await
    }

    /// Place an order; `queue_token` for a run sold through a waiting room.
    pub async fn create_order(&self, req: &OrderRequest, queue_token: Option<&str>) -> Result<Answered<OrderOut>> {
        let token: Vec<(&str, &str)> = queue_token.map(|t| (headers::QUEUE_TOKEN, t)).into_iter().collect();
        self.call(Method::POST, "/api/v1/orders", Some(req), &token).await
    }

    pub async fn order(&self, order_no: &str) -> Result<OrderOut> {
        self.get(&format!("/api/v1/orders/{order_no}")).await
    }

    pub async fn orders(&self, status: Option<&str>, page: u32, page_size: u32) -> Result<OrderList> {
        let status = status.map(|s| format!("&status={s}")).unwrap_or_default();
        self.get(&format!("/api/v1/orders?page={page}&page_size={page_size}{status}")).await
    }

    pub async fn cancel(&self, order_no: &str) -> Result<OrderOut> {
        self.post(&format!("/api/v1/orders/{order_no}/cancel"), NONE).await
    }

    pub async fn pay(&self, order_no: &str, channel: &str) -> Result<PayStarted> {
        self.post(&format!("/api/v1/orders/{order_no}/payments"), Some(&PayRequest { channel: channel.into() })).await
    }

    /// The mock provider's pay page: the payer presses pay (`success: false` declines).
    pub async fn press_pay(&self, pay_url: &str, success: bool) -> Result<MockpayPressed> {
        let url = if success { pay_url.to_string() } else { format!("{pay_url}?result=FAILED") };
        self.post(&url, NONE).await
    }

    /// A payment channel's notify: `body` exactly as signed by `signature`.
    pub async fn notify(&self, channel: &str, body: &[u8], signature: &str) -> Result<NotifyAck> {
        let req = self
            .request(Method::POST, &format!("/api/v1/payments/notify/{channel}"))
            .header("content-type", "application/json")
            .header(headers::SIGNATURE, signature)
            .body(body.to_vec());
        Ok(Client::send(req).await?.body)
    }

    pub async fn ticket(&self, ticket_sn: &str) -> Result<crate::orders::TicketOut> {
        self.get(&format!("/api/v1/tickets/{ticket_sn}")).await
    }

    /// The ticket's QR code as SVG text.
    pub async fn qr_svg(&self, ticket_sn: &str) -> Result<String> {
        let r = self.request(Method::GET, &format!("/api/v1/tickets/{ticket_sn}/qr.svg")).send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        if status == 200 { Ok(text) } else { Err(ClientError::Unexpected { status, text }) }
    }

    pub async fn refund(&self, ticket_sn: &str) -> Result<RefundOut> {
        self.post(&format!("/api/v1/tickets/{ticket_sn}/refund"), NONE).await
    }

    pub async fn rebook(&self, ticket_sn: &str, req: &RebookRequest) -> Result<Answered<OrderOut>> {
        self.call(Method::POST, &format!("/api/v1/tickets/{ticket_sn}/rebook"), Some(req), &[]).await
    }

    pub async fn keys(&self) -> Result<PublicKeys> {
        self.get("/api/v1/checkin/keys").await
    }

    pub async fn check_in(&self, gate_key: &str, req: &CheckInRequest) -> Result<CheckInAccepted> {
        Ok(self.call(Method::POST, "/api/v1/checkin", Some(req), &[(headers::GATE_KEY, gate_key)]).await?.body)
    }

    pub async fn revocations(&self, gate_key: &str, since: i64) -> Result<RevocationPage> {
        let path = format!("/api/v1/checkin/revocations?since={since}");
        Ok(self.call(Method::GET, &path, NONE, &[(headers::GATE_KEY, gate_key)]).await?.body)
    }

    pub async fn upload_scans(&self, gate_key: &str, upload: &ScanUpload) -> Result<UploadReport> {
        let extra = [(headers::GATE_KEY, gate_key)];
        Ok(self.call(Method::POST, "/api/v1/checkin/uploads", Some(upload), &extra).await?.body)
    }

    pub async fn join_waitlist(&self, req: &WishRequest) -> Result<Answered<WishOut>> {
        self.call(Method::POST, "/api/v1/waitlist", Some(req), &[]).await
    }

    pub async fn wish(&self, id: &str) -> Result<WishOut> {
        self.get(&format!("/api/v1/waitlist/{id}")).await
    }

    pub async fn pay_wish(&self, id: &str, channel: &str) -> Result<PayStarted> {
        self.post(&format!("/api/v1/waitlist/{id}/payments"), Some(&PayRequest { channel: channel.into() })).await
    }

    pub async fn cancel_wish(&self, id: &str) -> Result<WishOut> {
        self.post(&format!("/api/v1/waitlist/{id}/cancel"), NONE).await
    }

    pub async fn notifications(&self) -> Result<NotificationList> {
        self.get("/api/v1/notifications").await
    }

    pub async fn sales(&self) -> Result<Vec<SaleOut>> {
        self.get("/api/v1/sales").await
    }

    pub async fn join_queue(&self, sale_id: &str) -> Result<QueueStatus> {
        self.post(&format!("/api/v1/queue/{sale_id}/join"), NONE).await
    }

    pub async fn queue_status(&self, sale_id: &str) -> Result<QueueStatus> {
        self.get(&format!("/api/v1/queue/{sale_id}/status")).await
    }

    /// Outbox events in `state` (`PENDING`, `SENT`, `DEAD`), as the operator (`admin_key`).
    pub async fn admin_events(&self, admin_key: &str, state: &str, after: i64) -> Result<EventPage> {
        let path = format!("/api/v1/admin/events?state={state}&after={after}");
        Ok(self.call(Method::GET, &path, NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// Retry a DEAD outbox event, as the operator.
    pub async fn admin_retry_event(&self, admin_key: &str, id: i64) -> Result<EventView> {
        let path = format!("/api/v1/admin/events/{id}/retry");
        Ok(self.call(Method::POST, &path, NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// Sales statistics, as the operator; `query` is the query string (`from=…&to=…[&train=…][&class=…]`).
    pub async fn admin_sales(&self, admin_key: &str, query: &str) -> Result<SalesStats> {
        let path = format!("/api/v1/admin/stats/sales?{query}");
        Ok(self.call(Method::GET, &path, NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// This node's live figures, as the operator.
    pub async fn admin_live(&self, admin_key: &str) -> Result<LiveFigures> {
        Ok(self.call(Method::GET, "/api/v1/admin/live", NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// Verify the audit log's chain after entry `after`, as the operator.
    pub async fn admin_audit_verify(&self, admin_key: &str, after: i64) -> Result<AuditVerify> {
        let path = format!("/api/v1/admin/audit/verify?after={after}");
        Ok(self.call(Method::GET, &path, NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// A risk list (`block` or `allow`) of one kind (`user`, `device`, `ip`), as the operator.
    pub async fn admin_risk_list(&self, admin_key: &str, list: &str, kind: &str) -> Result<RiskList> {
        let path = format!("/api/v1/admin/risk/{list}/{kind}");
        Ok(self.call(Method::GET, &path, NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// Put `value` on a risk list (`on`) or take it off; the list as it is then. As the operator.
    pub async fn admin_risk_set(
        &self,
        admin_key: &str,
        list: &str,
        kind: &str,
        value: &str,
        on: bool,
    ) -> Result<RiskList> {
        let path = format!("/api/v1/admin/risk/{list}/{kind}/{value}");
        let method = if on { Method::PUT } else { Method::DELETE };
        Ok(self.call(method, &path, NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// This node's seat-engine replica (log position and state digest per shard), as the operator.
    pub async fn admin_engine(&self, admin_key: &str) -> Result<EngineReplica> {
        Ok(self.call(Method::GET, "/api/v1/admin/engine", NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }

    /// A sale's waiting room, as the operator.
    pub async fn admin_room(&self, admin_key: &str, sale_id: &str) -> Result<RoomFigures> {
        let path = format!("/api/v1/admin/sales/{sale_id}/room");
        Ok(self.call(Method::GET, &path, NONE, &[(headers::ADMIN_KEY, admin_key)]).await?.body)
    }
}
