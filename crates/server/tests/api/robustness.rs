//! Bad input of every kind gets a clear 4xx in the error model, never a 500 or a dropped
//! connection; operations endpoints answer.

use serde_json::Value;

use reqwest::Method;

use crate::app::{Backend, TestApp, spawn_app, tomorrow};

/// Assert the error model: status, code, a message containing `mentions`, a request id that
/// matches the header.
async fn assert_error(r: reqwest::Response, status: u16, code: u64, mentions: &str) {
    assert_eq!(r.status().as_u16(), status);
    let header_id = r.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
    let body: Value = r.json().await.expect("error bodies are JSON");
    assert_eq!(body["code"].as_u64(), Some(code), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(mentions), "message {message:?} should mention {mentions:?}");
    assert_eq!(body["request_id"].as_str(), Some(header_id.as_str()));
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.get(path).await
}

#[tokio::test]
async fn bad_search_parameters_name_the_parameter() {
    let app = spawn_app(Backend::Sqlite).await;
    let d = tomorrow();
    assert_error(get(&app, &format!("/api/v1/trains?to=AOH&date={d}")).await, 400, 40002, "`from`").await;
    assert_error(get(&app, &format!("/api/v1/trains?from=VNP&date={d}")).await, 400, 40002, "`to`").await;
    assert_error(get(&app, "/api/v1/trains?from=VNP&to=AOH").await, 400, 40002, "`date`").await;
    assert_error(get(&app, &format!("/api/v1/trains?from=vn&to=AOH&date={d}")).await, 400, 40002, "`from`").await;
    assert_error(get(&app, &format!("/api/v1/trains?from=VNP&to=A%20H&date={d}")).await, 400, 40002, "`to`").await;
    for bad in ["2026-13-01", "2026-02-30", "tomorrow", "2026-1-1", "99999-01-01"] {
        assert_error(get(&app, &format!("/api/v1/trains?from=VNP&to=AOH&date={bad}")).await, 400, 40002, "`date`")
            .await;
    }
    assert_error(get(&app, "/api/v1/stations").await, 400, 40002, "`q`").await;
    assert_error(get(&app, "/api/v1/stations?q=bj&limit=0").await, 400, 40002, "`limit`").await;
    assert_error(get(&app, "/api/v1/stations?q=bj&limit=-1").await, 400, 40002, "`limit`").await;
    assert_error(get(&app, "/api/v1/stations?q=bj&limit=99999999999999999999999").await, 400, 40002, "`limit`").await;
}

#[tokio::test]
async fn unknown_stations_and_dates_outside_the_sale_window() {
    let app = spawn_app(Backend::Sqlite).await;
    let d = tomorrow();
    assert_error(get(&app, &format!("/api/v1/trains?from=ZZZ&to=AOH&date={d}")).await, 404, 40402, "ZZZ").await;
    assert_error(get(&app, &format!("/api/v1/trains?from=VNP&to=QQQ&date={d}")).await, 404, 40402, "`to`").await;
    let yesterday = d.add_days(-2);
    assert_error(
        get(&app, &format!("/api/v1/trains?from=VNP&to=AOH&date={yesterday}")).await,
        400,
        40010,
        "sale window",
    )
    .await;
    let far = d.add_days(400);
    assert_error(get(&app, &format!("/api/v1/trains?from=VNP&to=AOH&date={far}")).await, 400, 40010, "sale window")
        .await;
}

#[tokio::test]
async fn malformed_requests_never_reach_a_500() {
    let app = spawn_app(Backend::Sqlite).await;
    // Non-UTF-8 in the query string and in the path.
    let r = get(&app, "/api/v1/stations?q=%FF%FE").await;
    assert!(r.status().is_success() || r.status().as_u16() == 400, "{}", r.status());
    assert_error(get(&app, "/api/v1/runs/%FF%FE").await, 400, 40002, "run_id").await;
    // Unknown routes and wrong methods.
    assert_error(get(&app, "/api/v1/nope").await, 404, 40401, "route").await;
    let r = app.api.request(Method::POST, "/api/v1/trains").body("{}").send().await.unwrap();
    assert_error(r, 405, 40501, "method").await;
    // A body over the limit gets a 413 the client can read (not a reset connection), also while
    // the client is still sending it, and when its length is not declared (chunked).
    let big = vec![b'x'; 1024 * 1024];
    let r = app.api.request(Method::POST, "/api/v1/trains").body(big).send().await.unwrap();
    assert_error(r, 413, 41301, "bytes").await;
    for len in [100 * 1024, 1024 * 1024, 2 * 1024 * 1024] {
        for chunked in [false, true] {
            let answer = post_raw(&app, len, chunked).await;
            assert!(answer.starts_with("HTTP/1.1 413"), "{len} bytes, chunked {chunked}: {answer}");
            assert!(answer.contains("41301"), "{answer}");
        }
    }
    // Junk JSON to a GET route and a huge query string.
    let r = app.api.request(Method::GET, "/api/v1/stations?q=bj").body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let long_q = "x".repeat(10_000);
    assert_error(get(&app, &format!("/api/v1/stations?q={long_q}")).await, 400, 40002, "`q`").await;
}

/// POST `len` bytes of junk to `/api/v1/orders` over a plain connection, as a client that goes
/// on sending while the server answers; its length declared, or chunked. The whole answer, or
/// what went wrong reading it (a reset connection).
async fn post_raw(app: &TestApp, len: usize, chunked: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.api.base().trim_start_matches("http://").to_string();
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(&addr).await.unwrap().into_split();
    let length = if chunked { "Transfer-Encoding: chunked".to_string() } else { format!("Content-Length: {len}") };
    let head =
        format!("POST /api/v1/orders HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{length}\r\n\r\n");
    // The writer stops at the first error: the server may close once it has answered. It keeps
    // its half of the connection open when done (as an HTTP client does), by returning it.
    let _writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let block = vec![b'x'; 8192];
        let mut left = len;
        while left > 0 {
            let part = &block[..left.min(block.len())];
            if chunked {
                wr.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await?;
            }
            wr.write_all(part).await?;
            if chunked {
                wr.write_all(b"\r\n").await?;
            }
            left -= part.len();
        }
        wr.write_all(if chunked { b"0\r\n\r\n" } else { b"" }).await?;
        std::io::Result::Ok(wr)
    });
    let mut answer = Vec::new();
    match tokio::time::timeout(std::time::Duration::from_secs(20), rd.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&answer).into_owned(),
        Ok(Err(e)) => format!("reading the answer failed: {e} (read: {})", String::from_utf8_lossy(&answer)),
        Err(_) => format!("no end of the answer in 20 s (read: {})", String::from_utf8_lossy(&answer)),
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = spawn_app(Backend::Sqlite).await;
    let r = app.api.request(Method::GET, "/api/v1/nope").header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], "abc-123");
    // A hostile id is replaced, not echoed.
    let r = app.api.request(Method::GET, "/healthz").header("x-request-id", "a b\"<script>").send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "a b\"<script>");
}

#[tokio::test]
async fn operations_endpoints() {
    let app = spawn_app(Backend::Sqlite).await;
    let health: chepiao_api::ops::Health = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health.status, "ok");
    let ready: chepiao_api::ops::Ready = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready.store, "sqlite");
    for _ in 0..2 {
        app.get(&format!("/api/v1/trains?from=VNP&to=AOH&date={}", tomorrow())).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    // The second request counts too (the handles are kept after the first); other tests of
    // this process may add to the same counter.
    let trains_ok = metrics
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains(r#"route="/api/v1/trains""#)
                && l.contains(r#"status="200""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(trains_ok >= Some(2), "{metrics}");
    assert!(metrics.contains("http_request_duration_seconds_bucket"), "{metrics}");
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for path in [
        "/api/v1/stations",
        "/api/v1/trains",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/seats",
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/passengers",
        "/api/v1/sales",
        "/api/v1/queue/{sale_id}/join",
        "/api/v1/admin/risk/{list}/{kind}",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["info"]["description"].as_str().unwrap().contains("40010"));
    // Links lead from a placed order to paying it (schemathesis's stateful phase follows them),
    // spelled as the specification spells them.
    let pay =
        &doc["paths"]["/api/v1/orders"]["post"]["responses"]["201"]["links"]["post.api.v1.orders.order_no.payments"];
    assert_eq!(pay["operationRef"], "#/paths/~1api~1v1~1orders~1{order_no}~1payments/post", "{pay}");
    assert_eq!(pay["parameters"]["order_no"], "$response.body#/order_no");
    for path in ["/api/v1/admin/stats/sales", "/api/v1/admin/live", "/api/v1/admin/audit/verify"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing from the OpenAPI document");
    }
}

/// A store's error text (a table's name, the SQL, the driver's message) never reaches a client:
/// the answer is the error model's 503, and the detail is in the log with the request id.
async fn store_errors_are_not_shown_to_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.buyer("alice", 1).await;
    assert_eq!(b.api.orders(None, 1, 20).await.unwrap().total, 0);
    app.sql("ALTER TABLE orders RENAME TO orders_elsewhere").await;
    let e = b.api.orders(None, 1, 20).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(503), Some(50301)), "{e}");
    let told = e.to_string().to_lowercase();
    for detail in ["orders", "relation", "table", "sql", "select"] {
        assert!(!told.contains(detail), "the client was told {detail:?}: {told}");
    }
}

crate::on_both_backends!(
    store_errors_are_not_shown_to_clients,
    store_errors_are_not_shown_to_clients_sqlite,
    store_errors_are_not_shown_to_clients_postgres
);
