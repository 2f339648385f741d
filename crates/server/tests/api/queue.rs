//! The waiting room, risk checks and rate limits over HTTP, on both queue backends (in memory;
//! Redis when `CHEPIAO_TEST_REDIS_URL` is set): joining is idempotent; admission follows join
//! order within the slow-lane rule; an order for a sale's run needs the caller's valid queue
//! token (missing, forged, expired, another user's: each refused with its code); blocked
//! devices are refused; a client over its rate gets 429 with `Retry-After`.

use std::time::Duration;

use chepiao_api::headers;
use chepiao_api::queue::QueueStatus;
use chepiao_domain::SeatClass;
use chepiao_server::hotsale::memory::MemoryQueue;
use chepiao_server::hotsale::redis::RedisQueue;
use chepiao_server::hotsale::room::{QueueBackend, SaleConfig, suite};
use reqwest::Method;

use crate::app::{ADMIN_KEY, Backend, Buyer, TestApp, code, g1, order_req, redis_url, run_on, spawn_app_with};

/// Whether the Redis variant can run here; says why not when it cannot.
fn with_redis(test: &str) -> bool {
    if redis_url().is_none() {
        eprintln!("skipped {test}: CHEPIAO_TEST_REDIS_URL is not set, so there is no Redis to test against");
        return false;
    }
    true
}

#[tokio::test]
async fn queue_backends_pass_the_suite() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    suite::run_all(&MemoryQueue::default(), &tag).await;
    if with_redis("queue_backends_pass_the_suite (redis)") {
        let redis = RedisQueue::connect(&redis_url().unwrap(), &format!("test-{tag}")).await.unwrap();
        assert_eq!(redis.name(), "redis");
        suite::run_all(&redis, &tag).await;
    }
}

struct Room {
    app: TestApp,
    sale: String,
}

impl Room {
    /// `b` joins the sale's queue, from `device` when it sends one.
    async fn join(&self, b: &Buyer, device: Option<&str>) -> Result<QueueStatus, chepiao_api::ClientError> {
        match device {
            Some(d) => b.api.with_header(headers::DEVICE_ID, d).join_queue(&self.sale).await,
            None => b.api.join_queue(&self.sale).await,
        }
    }

    async fn status(&self, b: &Buyer) -> QueueStatus {
        b.api.queue_status(&self.sale).await.unwrap()
    }

    async fn wait_admitted(&self, b: &Buyer, device: &str) -> String {
        self.join(b, Some(device)).await.unwrap();
        for _ in 0..200 {
            let st = self.status(b).await;
            if st.admitted == Some(true) {
                return st.queue_token.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never admitted");
    }
}

/// A server on `backend` with one sale on G1 tomorrow, open since a second ago, its waiting room
/// in Redis when `redis`.
async fn room(
    backend: Backend,
    redis: bool,
    admit_per_s: u32,
    tweak: impl FnOnce(&mut chepiao_server::Config),
) -> Room {
    let sale = format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = SaleConfig {
        sale_id: sale.clone(),
        opens_at: (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339(),
        run_ids: vec![g1()],
        admit_per_s,
    };
    let url = if redis { redis_url() } else { None };
    let app = spawn_app_with(backend, |c| {
        c.sales = vec![config];
        c.redis_url = url;
        c.slow_lane_offset = 2;
        tweak(c);
    })
    .await;
    Room { app, sale }
}

async fn admission_follows_join_order(redis: bool) {
    // 10 a second: one user every 100 ms, slow enough to watch the order.
    let r = room(Backend::Sqlite, redis, 10, |_| {}).await;
    let sales = r.app.api.sales().await.unwrap();
    assert!(sales.iter().any(|s| s.sale_id == r.sale && s.run_ids[0] == g1()));
    let mut buyers = Vec::new();
    for i in 0..5 {
        buyers.push(r.app.buyer(&format!("user{i}"), 1).await);
    }
    // u0 sends no device id: the risk score puts it in the slow lane, two places back.
    r.join(&buyers[0], None).await.unwrap();
    for (i, b) in buyers.iter().enumerate().skip(1) {
        r.join(b, Some(&format!("device-{i}"))).await.unwrap();
    }
    let again = r.join(&buyers[3], Some("device-3")).await.unwrap();
    assert!(again.position.is_some() || again.admitted == Some(true), "{again:?}");
    let expected = [1, 2, 0, 3, 4]; // u0's score falls after u2's
    let mut admitted_seen = vec![false; 5];
    for _ in 0..200 {
        let mut now = Vec::new();
        for b in &buyers {
            now.push(r.status(b).await.admitted == Some(true));
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
    let again = r.join(&buyers[1], Some("device-1")).await.unwrap();
    assert_eq!(again.admitted, Some(true), "joining again keeps the admission: {again:?}");
}

#[tokio::test]
async fn admission_follows_join_order_memory() {
    admission_follows_join_order(false).await;
}

#[tokio::test]
async fn admission_follows_join_order_redis() {
    if with_redis("admission_follows_join_order_redis") {
        admission_follows_join_order(true).await;
    }
}

async fn orders_need_a_valid_token(backend: Backend, redis: bool) {
    let r = room(backend, redis, 1000, |_| {}).await;
    let alice = r.app.buyer("alice", 1).await;
    let bob = r.app.buyer("bob", 1).await;
    let place = |key: &str, who: &Buyer, token: Option<String>| {
        let req = order_req(key, &g1(), "VNP", "AOH", SeatClass::Second, &who.passengers);
        let api = who.api.with_header(headers::DEVICE_ID, "d-a");
        async move { api.create_order(&req, token.as_deref()).await }
    };
    assert_eq!(code(place("k1", &alice, None).await), (403, 40302), "no token");
    assert_eq!(code(alice.api.queue_status(&r.sale).await).0, 404, "not joined yet");
    let token = r.wait_admitted(&alice, "d-a").await;
    assert_eq!(code(place("k1", &alice, Some("Q1.garbage.sig".into())).await), (403, 40303), "forged");
    let (body, sig) = token.rsplit_once('.').unwrap();
    let tampered = format!("{}x.{sig}", &body[..body.len() - 1]);
    assert_eq!(code(place("k1", &alice, Some(tampered)).await), (403, 40303), "edited payload");
    assert_eq!(code(place("k1", &bob, Some(token.clone())).await), (403, 40305), "another user's token");
    let expired = r.app.state.room.tokens.issue(&r.sale, alice.user_id, r.app.state.flow.now_ms() - 1);
    assert_eq!(code(place("k1", &alice, Some(expired)).await), (403, 40304), "expired");
    // Runs outside the sale need no token.
    let other = run_on("G1", crate::app::tomorrow().add_days(1));
    let req = order_req("k0", &other, "VNP", "AOH", SeatClass::Second, &alice.passengers);
    let unpaid = alice.api.with_header(headers::DEVICE_ID, "d-a").create_order(&req, None).await.unwrap();
    assert_eq!(unpaid.status, 201);
    // A placement a purchase rule refuses made nothing: it gives the token back, so another
    // placement (another key) may use it.
    assert_eq!(code(place("k1", &alice, Some(token.clone())).await), (409, 40913), "one unpaid order at a time");
    alice.api.cancel(&unpaid.body.order_no).await.unwrap();
    let placed = place("k2", &alice, Some(token.clone())).await.unwrap();
    assert_eq!(placed.status, 201, "the refused placement did not spend the token");
    // The order spent the token; its retry still answers.
    assert_eq!(place("k2", &alice, Some(token.clone())).await.unwrap().status, 200, "a retry");
    alice.api.cancel(&placed.body.order_no).await.unwrap();
    assert_eq!(code(place("k3", &alice, Some(token.clone())).await), (403, 40306), "a spent token");
    // The spent token ended the admission: joining again queues for a new one.
    let again = r.wait_admitted(&alice, "d-a").await;
    assert_ne!(again, token, "a new admission, a new token");
    assert_eq!(place("k3", &alice, Some(again)).await.unwrap().status, 201);
}

#[tokio::test]
async fn orders_need_a_valid_token_memory() {
    orders_need_a_valid_token(Backend::Sqlite, false).await;
}

#[tokio::test]
async fn orders_need_a_valid_token_redis() {
    if with_redis("orders_need_a_valid_token_redis") {
        orders_need_a_valid_token(Backend::Sqlite, true).await;
    }
}

#[tokio::test]
async fn orders_need_a_valid_token_postgres() {
    if crate::app::available(Backend::Postgres, "orders_need_a_valid_token_postgres") {
        orders_need_a_valid_token(Backend::Postgres, false).await;
    }
}

#[tokio::test]
async fn blocked_devices_are_refused_and_rates_are_limited_memory() {
    blocked_devices_are_refused_and_rates_are_limited(false).await;
}

#[tokio::test]
async fn blocked_devices_are_refused_and_rates_are_limited_redis() {
    if with_redis("blocked_devices_are_refused_and_rates_are_limited_redis") {
        blocked_devices_are_refused_and_rates_are_limited(true).await;
    }
}

async fn blocked_devices_are_refused_and_rates_are_limited(redis: bool) {
    let r = room(Backend::Sqlite, redis, 1000, |c| {
        c.risk_rate_per_s = 1;
        c.risk_burst = 3;
    })
    .await;
    let mallory = r.app.buyer("mallory", 1).await;
    let block = |key: &'static str, on: bool| r.app.api.admin_risk_set(key, "block", "device", "evil-phone", on);
    assert_eq!(code(block("wrong", true).await).0, 401);
    assert_eq!(block(ADMIN_KEY, true).await.unwrap().values, ["evil-phone"]);
    assert_eq!(r.app.api.admin_risk_list(ADMIN_KEY, "block", "device").await.unwrap().values, ["evil-phone"]);
    assert_eq!(code(r.join(&mallory, Some("evil-phone")).await), (403, 40301));
    let req = order_req("m1", &g1(), "VNP", "AOH", SeatClass::Second, &mallory.passengers);
    let evil = mallory.api.with_header(headers::DEVICE_ID, "evil-phone");
    assert_eq!(code(evil.create_order(&req, None).await), (403, 40301), "blocked before the token is even looked at");
    assert!(block(ADMIN_KEY, false).await.unwrap().values.is_empty());
    // Per-user bucket: a burst of 3, then 429 with Retry-After.
    let carol = r.app.buyer("carol", 1).await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        let req = carol.api.request(Method::POST, &format!("/api/v1/queue/{}/join", r.sale));
        let resp = req.header(headers::DEVICE_ID, "carol-phone").send().await.unwrap();
        answers
            .push((resp.status().as_u16(), resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string())));
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
        let r = app.api.request(Method::POST, path).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 429, "{path}");
    }
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200, "health checks are never rate-limited");
}

#[tokio::test]
async fn queue_status_streams_as_server_sent_events_until_admitted() {
    let r = room(Backend::Sqlite, false, 5, |_| {}).await;
    let mut buyers = Vec::new();
    for i in 0..3 {
        let b = r.app.buyer(&format!("sse{i}"), 1).await;
        r.join(&b, Some(&format!("phone-{i}"))).await.unwrap();
        buyers.push(b);
    }
    // The last joiner waits ~0.5 s at 5 a second: the stream shows its position, then the token.
    let resp = buyers[2].api.request(Method::GET, &format!("/api/v1/queue/{}/events", r.sale)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(20), resp.text()).await.unwrap().unwrap();
    let events: Vec<QueueStatus> =
        body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect();
    assert!(events.len() >= 2, "{body}");
    assert!(events[0].position.is_some(), "{body}");
    let last = events.last().unwrap();
    assert_eq!(last.admitted, Some(true), "the stream ends with the admission: {body}");
    assert!(last.queue_token.as_deref().unwrap().starts_with("Q1."));
}

/// The waiting room cannot be bypassed: joining the waitlist for, or rebooking onto, a sale's
/// run needs its queue token, as an order does.
async fn waitlist_and_rebook_need_the_queue_token(backend: Backend) {
    use chepiao_api::tickets::RebookRequest;
    use chepiao_api::waitlist::WishRequest;
    let r = room(backend, false, 1000, |_| {}).await;
    let alice = r.app.buyer("alice", 1).await;
    let deadline = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let wish = WishRequest {
        run_id: g1(),
        from: "VNP".into(),
        to: "AOH".into(),
        class: SeatClass::Second,
        passenger_ids: alice.passengers.clone(),
        deadline,
        idempotency_key: Some("w1".into()),
    };
    assert_eq!(code(alice.api.join_waitlist(&wish).await), (403, 40302), "a wish without the token");
    // A ticket on a run outside the sale (no token needed), then a rebook onto the sale's run.
    let other = run_on("G1", crate::app::tomorrow().add_days(1));
    let req = order_req("k1", &other, "VNP", "AOH", SeatClass::Second, &alice.passengers);
    let order = alice.api.create_order(&req, None).await.unwrap().body.order_no;
    r.app.pay(&alice, &order).await;
    let ticket = r.app.wait_status(&alice, &order, "TICKETED").await.tickets.unwrap()[0].ticket_sn.clone();
    let onto_sale = RebookRequest { run_id: g1(), class: SeatClass::Second, seat_prefs: None, idempotency_key: None };
    assert_eq!(code(alice.api.rebook(&ticket, &onto_sale).await), (403, 40302), "a rebook without the token");
    let token = r.wait_admitted(&alice, "a-phone").await;
    let admitted = alice.api.with_header(headers::QUEUE_TOKEN, &token).with_header(headers::DEVICE_ID, "a-phone");
    let rebooked = admitted.rebook(&ticket, &onto_sale).await.unwrap();
    assert_eq!(rebooked.status, 201, "{rebooked:?}");
    assert_eq!(code(admitted.join_waitlist(&wish).await), (403, 40306), "the rebook spent the token");
}

crate::on_both_backends!(
    waitlist_and_rebook_need_the_queue_token,
    waitlist_and_rebook_need_the_queue_token_sqlite,
    waitlist_and_rebook_need_the_queue_token_postgres
);

/// Server-Sent Events streams are bounded: one per user and sale (a new one ends the older),
/// and at most `sse_streams_max` at once (503 beyond); a closed stream frees its place.
async fn status_streams_are_capped(backend: Backend) {
    // The sale opens in an hour: everybody queues, nobody is admitted, the streams stay open.
    let r = room(backend, false, 1000, |c| {
        c.sse_streams_max = 2;
        c.sales[0].opens_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    })
    .await;
    let path = format!("/api/v1/queue/{}/events", r.sale);
    let mut buyers = Vec::new();
    for i in 0..3 {
        let b = r.app.buyer(&format!("sse{i}"), 1).await;
        r.join(&b, Some(&format!("phone-{i}"))).await.unwrap();
        buyers.push(b);
    }
    let open = |b: &Buyer| b.api.request(Method::GET, &path).send();
    let older = open(&buyers[0]).await.unwrap();
    assert_eq!(older.status(), 200);
    let newer = open(&buyers[0]).await.unwrap();
    assert_eq!(newer.status(), 200, "a client that reconnects is not refused");
    let ended = tokio::time::timeout(Duration::from_secs(5), older.text()).await;
    assert!(ended.is_ok(), "the older stream of the same user and sale ends");
    let other = open(&buyers[1]).await.unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(open(&buyers[2]).await.unwrap().status(), 503, "two streams open at most");
    drop(other);
    crate::app::wait_until("a closed stream frees its place", || async {
        open(&buyers[2]).await.unwrap().status() == 200
    })
    .await;
    // A shutdown ends the streams still open (the server does not wait on them forever).
    let reading = tokio::spawn(newer.text());
    let stopped = tokio::time::timeout(Duration::from_secs(10), r.app.stop()).await;
    assert!(stopped.is_ok(), "the server stopped with a stream open");
    let ended = tokio::time::timeout(Duration::from_secs(5), reading).await;
    assert!(ended.is_ok(), "the open stream ended with the server");
}

crate::on_both_backends!(
    status_streams_are_capped,
    status_streams_are_capped_sqlite,
    status_streams_are_capped_postgres
);
