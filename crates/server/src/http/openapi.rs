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
    modifiers(&BearerAuth, &CommonAnswers, &Links),
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
/// Each is (the answer it starts from, the operation it leads to, where the value of that
/// operation's one path parameter comes from). utoipa 5 spells a link's `operationRef` in snake
/// case; [`json`] puts it right.
const LINKS: &[(&str, &str, &str)] = &[
    ("POST /api/v1/orders 201", "GET /api/v1/orders/{order_no}", ORDER_NO),
    ("POST /api/v1/orders 201", "POST /api/v1/orders/{order_no}/payments", ORDER_NO),
    ("POST /api/v1/orders 201", "POST /api/v1/orders/{order_no}/cancel", ORDER_NO),
    ("POST /api/v1/orders/{order_no}/payments 201", "POST /mockpay/pay/{payment_no}", "$response.body#/payment_no"),
    ("GET /api/v1/orders/{order_no} 200", "GET /api/v1/tickets/{ticket_sn}", FIRST_TICKET),
    ("GET /api/v1/orders/{order_no} 200", "POST /api/v1/tickets/{ticket_sn}/refund", FIRST_TICKET),
    ("GET /api/v1/orders/{order_no} 200", "POST /api/v1/tickets/{ticket_sn}/rebook", FIRST_TICKET),
    ("POST /api/v1/waitlist 201", "GET /api/v1/waitlist/{waitlist_id}", WISH_ID),
    ("POST /api/v1/waitlist 201", "POST /api/v1/waitlist/{waitlist_id}/payments", WISH_ID),
    ("POST /api/v1/waitlist 201", "POST /api/v1/waitlist/{waitlist_id}/cancel", WISH_ID),
    ("POST /api/v1/queue/{sale_id}/join 200", "GET /api/v1/queue/{sale_id}/status", "$request.path.sale_id"),
];
const ORDER_NO: &str = "$response.body#/order_no";
const FIRST_TICKET: &str = "$response.body#/tickets/0/ticket_sn";
const WISH_ID: &str = "$response.body#/waitlist_id";

struct Links;

impl Modify for Links {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::LinkBuilder;
        for &(from, to, value) in LINKS {
            let (from, status) = from.rsplit_once(' ').expect("method, path and status");
            assert!(operation(&mut doc.paths, to).is_some(), "a link to {to}, which the API does not have");
            let op = operation(&mut doc.paths, from)
                .unwrap_or_else(|| panic!("a link from {from}, which is not in the API"));
            let Some(RefOr::T(answer)) = op.responses.responses.get_mut(status) else {
                panic!("a link from the {status} answer of {from}, which it does not give");
            };
            let (method, path) = to.split_once(' ').expect("method and path");
            let method = method.to_lowercase();
            let param = path.split(['{', '}']).nth(1).expect("the target has a path parameter");
            // A JSON pointer to the operation: `/` in the path is written `~1`.
            let target = format!("#/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1"));
            let link = LinkBuilder::new().operation_ref(target).parameter(param, value).build();
            // Link names are letters, digits, `.`, `-` and `_`: `post.api.v1.orders.order_no.payments`.
            let name = format!("{method}{}", path.replace(['{', '}'], "").replace('/', "."));
            answer.links.insert(name, link.into());
        }
    }
}

/// The operation `GET /path` (or `POST`, `PUT`, `DELETE`) of the API.
fn operation<'a>(paths: &'a mut utoipa::openapi::Paths, op: &str) -> Option<&'a mut utoipa::openapi::path::Operation> {
    let (method, path) = op.split_once(' ')?;
    let item = paths.paths.get_mut(path)?;
    match method {
        "GET" => item.get.as_mut(),
        "POST" => item.post.as_mut(),
        "PUT" => item.put.as_mut(),
        "DELETE" => item.delete.as_mut(),
        _ => None,
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
        let json = doc.to_json().expect("the OpenAPI document serialises");
        // utoipa 5 writes a Link Object's `operationRef` as `operation_ref`; no schema of the API
        // has a field of that name, so the key is only ever a link's.
        json.replace("\"operation_ref\":", "\"operationRef\":")
    })
}

/// `GET /openapi.json`: this document.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}
