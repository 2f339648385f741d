//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::error::{CODES, ErrorBody};
use crate::routes::admin::{self, figures};
use crate::routes::{checkin, health, network, orders, payments, queue, tickets, users, waitlist};

#[derive(OpenApi)]
#[openapi(
    info(title = "chepiao", description = "chepiao (车票): train ticketing for the Spring Festival rush. \
        Money is integer fen; times are RFC 3339 in China time (UTC+8); dates are YYYY-MM-DD. \
        Every error is `{code, message, request_id}` with one of the codes below."),
    paths(health::healthz, health::readyz, health::metrics, network::stations, network::trains, network::run, network::seats,
        users::register, users::login, users::change_password, users::logout, users::add_passenger, users::passengers,
        orders::create, orders::get, orders::list, orders::cancel, orders::pay,
        payments::notify, payments::mockpay_pay, tickets::get, tickets::qr_svg, tickets::keys,
        checkin::check_in, checkin::revocations, checkin::upload, tickets::refund, tickets::rebook,
        waitlist::join, waitlist::get, waitlist::pay, waitlist::cancel, waitlist::notifications,
        queue::sales, queue::join, queue::status, queue::events,
        admin::risk_list, admin::risk_put, admin::risk_delete, admin::events, admin::retry_event,
        figures::sales, figures::live, figures::engine, figures::audit_verify, figures::room),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth, &CommonAnswers),
    tags((name = "network", description = "stations, train search with remaining tickets, runs"),
         (name = "users", description = "accounts, login tokens, passengers (PII encrypted at rest, masked)"),
         (name = "orders", description = "orders: a seat hold with a pay window; idempotent per (user, key)"),
         (name = "payments", description = "payment channels, signed notifies, the mock provider"),
         (name = "tickets", description = "tickets with Ed25519-signed QR codes, and the public keys"),
         (name = "waitlist", description = "候补: prepaid wishes for sold-out runs, fulfilled in join order"),
         (name = "queue", description = "hot sales: a waiting room per sale, admitting at a set rate with signed queue tokens"),
         (name = "admin", description = "the operator's endpoints (`X-Admin-Key`)"),
         (name = "operations", description = "health, readiness, metrics"))
)]
struct ApiDoc;

/// The `bearer` scheme the authenticated routes name: a JWT from `/api/v1/auth/login`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        doc.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The answers any route may give besides its own, written once instead of on every handler
/// (where one would be forgotten): 400 for a malformed parameter, 401 without a valid token,
/// 404 for an unknown path parameter, 415 for a body that is not JSON, 429 past a rate limit
/// and 503 when the server sheds load (API routes), each with the error body.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |what: &str| {
            let json = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            ResponseBuilder::new().description(what).content("application/json", json).build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            let has_path_param = path.contains('{');
            for op in operations(item) {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let has_body = op.request_body.is_some();
                let wanted = [
                    ("400", has_params || has_body, "a malformed parameter, header or body (see `code`)"),
                    ("401", secured, "no valid login token"),
                    ("404", has_path_param, "nothing by that name"),
                    ("415", has_body, "the body is not `application/json`"),
                    ("429", api, "over a rate limit: retry after `Retry-After` seconds"),
                    ("503", api, "the server is shedding load or a dependency is down: retry after `Retry-After`"),
                ];
                for (status, applies, what) in wanted {
                    if applies && !op.responses.responses.contains_key(status) {
                        op.responses.responses.insert(status.to_string(), error(what).into());
                    }
                }
            }
        }
    }
}

/// Links between operations (OpenAPI's Link Objects): what a client does next with an answer,
/// the placed order's number to pay it, say. Schemathesis follows them in its stateful phase,
/// so sequences such as order → pay → pay page → cancel are generated, not only single calls.
/// They are written into the JSON (utoipa 5 spells a link's fields in snake case, where the
/// specification has `operationRef`).
///
/// (from path, method, status) → (to path, method, parameter, where its value comes from).
const LINKS: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    ("/api/v1/orders", "post", "201", "/api/v1/orders/{order_no}", "get", "order_no", "$response.body#/order_no"),
    (
        "/api/v1/orders",
        "post",
        "201",
        "/api/v1/orders/{order_no}/payments",
        "post",
        "order_no",
        "$response.body#/order_no",
    ),
    (
        "/api/v1/orders",
        "post",
        "201",
        "/api/v1/orders/{order_no}/cancel",
        "post",
        "order_no",
        "$response.body#/order_no",
    ),
    (
        "/api/v1/orders/{order_no}/payments",
        "post",
        "201",
        "/mockpay/pay/{payment_no}",
        "post",
        "payment_no",
        "$response.body#/payment_no",
    ),
    (
        "/api/v1/orders/{order_no}",
        "get",
        "200",
        "/api/v1/tickets/{ticket_sn}",
        "get",
        "ticket_sn",
        "$response.body#/tickets/0/ticket_sn",
    ),
    (
        "/api/v1/orders/{order_no}",
        "get",
        "200",
        "/api/v1/tickets/{ticket_sn}/refund",
        "post",
        "ticket_sn",
        "$response.body#/tickets/0/ticket_sn",
    ),
    (
        "/api/v1/orders/{order_no}",
        "get",
        "200",
        "/api/v1/tickets/{ticket_sn}/rebook",
        "post",
        "ticket_sn",
        "$response.body#/tickets/0/ticket_sn",
    ),
    (
        "/api/v1/waitlist",
        "post",
        "201",
        "/api/v1/waitlist/{waitlist_id}",
        "get",
        "waitlist_id",
        "$response.body#/waitlist_id",
    ),
    (
        "/api/v1/waitlist",
        "post",
        "201",
        "/api/v1/waitlist/{waitlist_id}/payments",
        "post",
        "waitlist_id",
        "$response.body#/waitlist_id",
    ),
    (
        "/api/v1/waitlist",
        "post",
        "201",
        "/api/v1/waitlist/{waitlist_id}/cancel",
        "post",
        "waitlist_id",
        "$response.body#/waitlist_id",
    ),
    (
        "/api/v1/queue/{sale_id}/join",
        "post",
        "200",
        "/api/v1/queue/{sale_id}/status",
        "get",
        "sale_id",
        "$request.path.sale_id",
    ),
];

/// Write [`LINKS`] into the document's JSON.
fn add_links(doc: &mut serde_json::Value) {
    for &(from, method, status, to, to_method, name, value) in LINKS {
        assert!(doc["paths"][to][to_method].is_object(), "a link to {to_method} {to}, which the API does not have");
        let answer = &mut doc["paths"][from][method]["responses"][status];
        assert!(answer.is_object(), "a link from the {status} answer of {method} {from}, which it does not give");
        // A JSON pointer to the operation: `/` in the path is written `~1`.
        let target = format!("#/paths/{}/{to_method}", to.replace('~', "~0").replace('/', "~1"));
        let link = serde_json::json!({ "operationRef": target, "parameters": { name: value } });
        answer["links"][format!("{to_method} {to}")] = link;
    }
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .filter_map(|op| op.as_mut())
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        let mut table = String::from("\n\n| code | HTTP | meaning |\n|---|---|---|\n");
        for (code, status, meaning) in CODES {
            table += &format!("| {code} | {status} | {meaning} |\n");
        }
        doc.info.description = Some(doc.info.description.unwrap_or_default() + &table);
        let mut doc = serde_json::to_value(&doc).expect("the OpenAPI document serialises");
        add_links(&mut doc);
        doc.to_string()
    })
}

/// `GET /openapi.json`: this document.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}
