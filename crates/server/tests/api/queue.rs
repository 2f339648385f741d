//! The waiting room, risk checks and rate limits over HTTP, on both queue backends (in memory;
//! Redis when `CHEPIAO_TEST_REDIS_URL` is set): joining is idempotent; admission follows join
//! order within the slow-lane rule; an order for a sale's run needs the caller's valid queue
//! token (missing, forged, expired, another user's: each refused with its code); blocked
//! devices are refused; a client over its rate gets 429 with `Retry-After`.

use std::time::Duration;

use chepiao_server::queue::{QueueBackend, SaleConfig};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::orders::{Buyer, buyer, g1, order_body};

fn redis_url() -> Option<String> {
    std::env::var("CHEPIAO_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

#[tokio::test]
async fn queue_backends_pass_the_suite() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let memory = chepiao_server::queue::memory::MemoryQueue::default();
    chepiao_server::queue::suite::run_all(&memory, &tag).await;
    if let Some(url) = redis_url() {
        let redis = chepiao_server::queue::redis::RedisQueue::connect(&url, &format!("test-{tag}")).await.unwrap();
        assert_eq!(redis.name(), "redis");
        chepiao_server::queue::suite::run_all(&redis, &tag).await;
    }
}

struct Room {
    app: TestApp,
    sale: String,
}

async fn room(redis: bool, admit_per_s: u32, tweak: impl FnOnce(&mut chepiao_server::Config)) -> Room {
    let sale = format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = SaleConfig {
        sale_id: sale.clone(),
        opens_at: (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339(),
        run_ids: vec![g1()],
        admit_per_s,
    };
    let url = if redis { redis_url() } else { None };
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.sales = vec![config];
        c.redis_url = url;
        c.slow_lane_offset = 2;
        c.admin_key = Some(chepiao_server::secrets::Secret("admin-secret".into()));
        tweak(c);
    })
    .await;
    Room { app, sale }
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn join(r: &Room, b: &Buyer, device: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = device.map(|d| ("x-device-id", d)).into_iter().collect();
    call(&r.app, "POST", &format!("/api/v1/queue/{}/join", r.sale), &b.token, &headers, None).await
}

async fn status(r: &Room, b: &Buyer) -> Value {
    call(&r.app, "GET", &format!("/api/v1/queue/{}/status", r.sale), &b.token, &[], None).await.1
}

async fn admission_follows_join_order(redis: bool) {
    // 10 a second: one user every 100 ms, slow enough to watch the order.
    let r = room(redis, 10, |_| {}).await;
    let (_, sales) = crate::orders::send(&r.app, "GET", "/api/v1/sales", None, None).await;
    assert!(sales.as_array().unwrap().iter().any(|s| s["sale_id"] == r.sale.as_str() && s["run_ids"][0] == g1()));
    let mut buyers = Vec::new();
    for i in 0..5 {
        buyers.push(buyer(&r.app, &format!("user{i}"), 1).await);
    }
    // u0 sends no device id: the risk score puts it in the slow lane, two places back.
    let (status0, first) = join(&r, &buyers[0], None).await;
    assert_eq!(status0, 200, "{first}");
    for (i, b) in buyers.iter().enumerate().skip(1) {
        let (s, j) = join(&r, b, Some(&format!("device-{i}"))).await;
        assert_eq!(s, 200, "{j}");
    }
    let (_, again) = join(&r, &buyers[3], Some("device-3")).await;
    assert!(again["position"].is_u64() || again["admitted"] == true, "{again}");
    let expected = [1, 2, 0, 3, 4]; // u0's score falls after u2's
    let mut admitted_seen = vec![false; 5];
    for _ in 0..200 {
        let mut now = Vec::new();
        for b in &buyers {
            now.push(status(&r, b).await["admitted"] == true);
        }
        // Who is admitted is always a prefix of the expected order.
        let count = now.iter().filter(|a| **a).count();
        for (k, &u) in expected.iter().enumerate() {
            assert_eq!(now[u], k < count, "admitted {now:?} is not a prefix of {expected:?}");
        }
        admitted_seen = now;
        if count == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted_seen.iter().all(|a| *a), "everyone admitted in the end");
    let (_, again) = join(&r, &buyers[1], Some("device-1")).await;
    assert_eq!(again["admitted"], true, "joining again keeps the admission: {again}");
}

#[tokio::test]
async fn admission_follows_join_order_memory() {
    admission_follows_join_order(false).await;
}

#[tokio::test]
async fn admission_follows_join_order_redis() {
    if redis_url().is_none() {
        return;
    }
    admission_follows_join_order(true).await;
}

async fn wait_admitted(r: &Room, b: &Buyer, device: &str) -> String {
    let (s, j) = join(r, b, Some(device)).await;
    assert_eq!(s, 200, "{j}");
    for _ in 0..200 {
        let st = status(r, b).await;
        if st["admitted"] == true {
            return st["queue_token"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never admitted");
}

async fn orders_need_a_valid_token(redis: bool) {
    let r = room(redis, 1000, |_| {}).await;
    let alice = buyer(&r.app, "alice", 1).await;
    let bob = buyer(&r.app, "bob", 1).await;
    let order = |key: &str, who: &Buyer| order_body(key, &g1(), "VNP", "AOH", "SECOND", &who.passengers);
    let place = |token: Option<String>, key: &'static str, who: &'static str| {
        let (app, b) = (&r.app, if who == "alice" { &alice } else { &bob });
        let body = order(key, b);
        async move {
            let headers: Vec<(&str, String)> = token.map(|t| ("x-queue-token", t)).into_iter().collect();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).chain([("x-device-id", "d-a")]).collect();
            call(app, "POST", "/api/v1/orders", &b.token, &headers, Some(body)).await
        }
    };
    let code = |v: &(u16, Value)| (v.0, v.1["code"].as_u64().unwrap_or(0));
    assert_eq!(code(&place(None, "k1", "alice").await), (403, 40302), "no token");
    let (s, _) = call(&r.app, "GET", &format!("/api/v1/queue/{}/status", r.sale), &alice.token, &[], None).await;
    assert_eq!(s, 404, "not joined yet");
    let token = wait_admitted(&r, &alice, "d-a").await;
    assert_eq!(code(&place(Some("Q1.garbage.sig".into()), "k1", "alice").await), (403, 40303), "forged");
    let (body, sig) = token.rsplit_once('.').unwrap();
    let tampered = format!("{}x.{sig}", &body[..body.len() - 1]);
    assert_eq!(code(&place(Some(tampered), "k1", "alice").await), (403, 40303), "edited payload");
    assert_eq!(code(&place(Some(token.clone()), "k1", "bob").await), (403, 40305), "another user's token");
    let expired =
        r.app.state.room.tokens.issue(&r.sale, alice_id(&r, &alice).await, chrono::Utc::now().timestamp_millis() - 1);
    assert_eq!(code(&place(Some(expired), "k1", "alice").await), (403, 40304), "expired");
    let (s, o) = place(Some(token), "k1", "alice").await;
    assert_eq!(s, 201, "{o}");
    // Runs outside the sale need no token.
    let other =
        chepiao_domain::ServiceDate::today_in_china(chrono::Utc::now()).add_days(2).to_string().replace('-', "");
    let body = order_body("k2", &format!("G1-{other}"), "VNP", "AOH", "SECOND", &alice.passengers);
    let (s, o) = call(&r.app, "POST", "/api/v1/orders", &alice.token, &[("x-device-id", "d-a")], Some(body)).await;
    assert_eq!(s, 201, "{o}");
}

/// The user id a token is bound to (read back from a status call's token is not possible:
/// it is opaque), from the store.
async fn alice_id(r: &Room, _b: &Buyer) -> i64 {
    r.app.state.store.user_by_name("alice").await.unwrap().unwrap().id
}

#[tokio::test]
async fn orders_need_a_valid_token_memory() {
    orders_need_a_valid_token(false).await;
}

#[tokio::test]
async fn orders_need_a_valid_token_redis() {
    if redis_url().is_none() {
        return;
    }
    orders_need_a_valid_token(true).await;
}

#[tokio::test]
async fn blocked_devices_are_refused_and_rates_are_limited_memory() {
    blocked_devices_are_refused_and_rates_are_limited(false).await;
}

#[tokio::test]
async fn blocked_devices_are_refused_and_rates_are_limited_redis() {
    if redis_url().is_none() {
        return;
    }
    blocked_devices_are_refused_and_rates_are_limited(true).await;
}

async fn blocked_devices_are_refused_and_rates_are_limited(redis: bool) {
    let r = room(redis, 1000, |c| {
        c.risk_rate_per_s = 1;
        c.risk_burst = 3;
    })
    .await;
    let mallory = buyer(&r.app, "mallory", 1).await;
    let admin = |method: &'static str, path: String, key: &'static str| {
        let app = &r.app;
        async move {
            let r = app
                .client
                .request(method.parse().unwrap(), app.url(&path))
                .header("x-admin-key", key)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(admin("PUT", "/api/v1/admin/risk/block/device/evil-phone".into(), "wrong").await.0, 401);
    let (s, list) = admin("PUT", "/api/v1/admin/risk/block/device/evil-phone".into(), "admin-secret").await;
    assert_eq!((s, &list["values"]), (200, &json!(["evil-phone"])), "{list}");
    let (s, e) = join(&r, &mallory, Some("evil-phone")).await;
    assert_eq!((s, e["code"].as_u64()), (403, Some(40301)), "{e}");
    let body = order_body("m1", &g1(), "VNP", "AOH", "SECOND", &mallory.passengers);
    let (s, e) =
        call(&r.app, "POST", "/api/v1/orders", &mallory.token, &[("x-device-id", "evil-phone")], Some(body)).await;
    assert_eq!((s, e["code"].as_u64()), (403, Some(40301)), "blocked before the token is even looked at: {e}");
    assert_eq!(admin("DELETE", "/api/v1/admin/risk/block/device/evil-phone".into(), "admin-secret").await.0, 200);
    // Per-user bucket: a burst of 3, then 429 with Retry-After.
    let carol = buyer(&r.app, "carol", 1).await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        let r = r
            .app
            .client
            .post(r.app.url(&format!("/api/v1/queue/{}/join", r.sale)))
            .bearer_auth(&carol.token)
            .header("x-device-id", "carol-phone")
            .send()
            .await
            .unwrap();
        answers.push((r.status().as_u16(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string())));
    }
    assert_eq!(answers[..3].iter().map(|a| a.0).collect::<Vec<_>>(), [200, 200, 200]);
    assert_eq!(answers[3], (429, Some("1".into())), "{answers:?}");
    let metrics = r.app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("chepiao_risk_decisions_total"), "every decision is counted");
    assert!(metrics.contains("decision=\"blocked\""), "{metrics}");
}

#[tokio::test]
async fn a_client_over_its_ip_rate_gets_429_before_any_work() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.ip_rate_per_s = 1;
        c.ip_burst = 5;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(app.get("/api/v1/stations?q=bj").await.status().as_u16());
    }
    assert_eq!(&statuses[..5], [200; 5]);
    assert_eq!(statuses[5..], [429, 429, 429], "{statuses:?}");
    // The buy path has a layer of its own; the same IP is over the same limit there (not 401).
    for path in ["/api/v1/orders", "/api/v1/queue/any/join"] {
        let r = app.client.post(app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 429, "{path}");
    }
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200, "health checks are never rate-limited");
}

#[tokio::test]
async fn queue_status_streams_as_server_sent_events_until_admitted() {
    let r = room(false, 5, |_| {}).await;
    let mut buyers = Vec::new();
    for i in 0..3 {
        let b = buyer(&r.app, &format!("sse{i}"), 1).await;
        let (s, _) = join(&r, &b, Some(&format!("phone-{i}"))).await;
        assert_eq!(s, 200);
        buyers.push(b);
    }
    // The last joiner waits ~0.5 s at 5 a second: the stream shows its position, then the token.
    let resp = r
        .app
        .client
        .get(r.app.url(&format!("/api/v1/queue/{}/events", r.sale)))
        .bearer_auth(&buyers[2].token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(20), resp.text()).await.unwrap().unwrap();
    let events: Vec<Value> =
        body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect();
    assert!(events.len() >= 2, "{body}");
    assert!(events[0]["position"].is_u64(), "{body}");
    let last = events.last().unwrap();
    assert_eq!(last["admitted"], true, "the stream ends with the admission: {body}");
    assert!(last["queue_token"].as_str().unwrap().starts_with("Q1."));
}
