//! The purchase flow over HTTP: order → pay → signed notify → outbox → bus → tickets, on both
//! SQL backends; idempotency under concurrent retries (I6); seats back exactly once on cancel
//! and expiry (I3); notify forgery, replay, reordering and wrong amounts; a bus outage that
//! the outbox rides out (I2); another user's order and tickets are 404.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, MOCKPAY_SECRET, TestApp, postgres_url, spawn_app, spawn_app_with, tomorrow};
use crate::users::user_token;

pub async fn send(app: &TestApp, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let url = if path.starts_with("http") { path.to_string() } else { app.url(path) };
    let mut req = app.client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub struct Buyer {
    pub token: String,
    pub passengers: Vec<i64>,
}

/// A registered user with `n` passengers (passports E0000001...).
pub async fn buyer(app: &TestApp, name: &str, n: usize) -> Buyer {
    let token = user_token(app, name).await;
    let mut passengers = Vec::new();
    for i in 0..n {
        let body = json!({"name": format!("旅客{i}"), "id_type": "PASSPORT", "id_no": format!("E{:07}", i + 1)});
        let (status, p) = send(app, "POST", "/api/v1/passengers", Some(&token), Some(body)).await;
        assert_eq!(status, 201, "{p}");
        passengers.push(p["passenger_id"].as_i64().unwrap());
    }
    Buyer { token, passengers }
}

pub fn g1() -> String {
    format!("G1-{}", tomorrow().to_string().replace('-', ""))
}

pub fn order_body(key: &str, run: &str, from: &str, to: &str, class: &str, passengers: &[i64]) -> Value {
    json!({"idempotency_key": key, "legs": [{"run_id": run, "from": from, "to": to, "class": class, "passenger_ids": passengers}]})
}

/// Free seats of `class` on G1 tomorrow from 北京南 to 上海虹桥.
async fn free_seats(app: &TestApp, class: &str) -> u64 {
    let (status, map) =
        send(app, "GET", &format!("/api/v1/runs/{}/seats?from=VNP&to=AOH&class={class}", g1()), None, None).await;
    assert_eq!(status, 200, "{map}");
    map["free"].as_u64().unwrap()
}

/// Poll an order until `want` (or panic after 10 s).
pub async fn wait_status(app: &TestApp, token: &str, order_no: &str, want: &str) -> Value {
    for _ in 0..200 {
        let (status, order) = send(app, "GET", &format!("/api/v1/orders/{order_no}"), Some(token), None).await;
        assert_eq!(status, 200, "{order}");
        if order["status"] == want {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order {order_no} never reached {want}");
}

/// Pay an order through mockpay's pay page; returns the payment number.
pub async fn pay(app: &TestApp, token: &str, order_no: &str) -> String {
    let (status, started) = send(
        app,
        "POST",
        &format!("/api/v1/orders/{order_no}/payments"),
        Some(token),
        Some(json!({"channel": "mockpay"})),
    )
    .await;
    assert_eq!(status, 201, "{started}");
    let (status, pressed) = send(app, "POST", started["pay_url"].as_str().unwrap(), None, None).await;
    assert_eq!(status, 202, "{pressed}");
    started["payment_no"].as_str().unwrap().to_string()
}

/// `n` passengers of a new user with tickets on G1 tomorrow (北京南 → 上海虹桥, second class):
/// the buyer, the order number and the TICKETED order.
pub async fn ticketed(app: &TestApp, name: &str, n: usize) -> (Buyer, String, Value) {
    let b = buyer(app, name, n).await;
    let body = order_body("ticketed", &g1(), "VNP", "AOH", "SECOND", &b.passengers);
    let (status, order) = send(app, "POST", "/api/v1/orders", Some(&b.token), Some(body)).await;
    assert_eq!(status, 201, "{order}");
    let no = order["order_no"].as_str().unwrap().to_string();
    pay(app, &b.token, &no).await;
    let done = wait_status(app, &b.token, &no, "TICKETED").await;
    (b, no, done)
}

fn notify_body(payment_no: &str, amount_fen: i64, status: &str, nonce: &str, ts: i64) -> String {
    json!({"out_trade_no": payment_no, "payment_no": payment_no, "amount_fen": amount_fen, "status": status,
           "txn_id": format!("T{nonce}"), "ts": ts, "nonce": nonce})
    .to_string()
}

/// Post a notify body signed with `secret`.
async fn notify(app: &TestApp, body: &str, secret: &str) -> (u16, Value) {
    let signature = chepiao_server::flow::payments::sign(secret.as_bytes(), body.as_bytes());
    let r = app
        .client
        .post(app.url("/api/v1/payments/notify/mockpay"))
        .header("content-type", "application/json")
        .header("x-chepiao-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn purchase_end_to_end(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = buyer(&app, "alice", 2).await;
    let before = free_seats(&app, "SECOND").await;
    let body = order_body("trip-1", &g1(), "VNP", "AOH", "SECOND", &alice.passengers);
    let (status, order) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body.clone())).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "PENDING_PAYMENT");
    let seats = order["legs"][0]["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 2);
    assert_eq!(seats[0]["coach"], seats[1]["coach"], "a group sits in one coach");
    assert_eq!(order["amount_fen"], seats[0]["price_fen"].as_i64().unwrap() * 2);
    assert_eq!(free_seats(&app, "SECOND").await, before - 2);
    // A retry answers the same body; the same key with other legs is refused.
    let (status, again) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body)).await;
    assert_eq!((status, &again), (200, &order));
    let other = order_body("trip-1", &g1(), "VNP", "JGK", "SECOND", &alice.passengers);
    let (status, e) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(other)).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40904)), "{e}");
    assert_eq!(free_seats(&app, "SECOND").await, before - 2, "retries hold nothing more");

    let order_no = order["order_no"].as_str().unwrap();
    let payment_no = pay(&app, &alice.token, order_no).await;
    let done = wait_status(&app, &alice.token, order_no, "TICKETED").await;
    assert_eq!(done["payments"][0]["payment_no"], payment_no.as_str());
    assert_eq!(done["payments"][0]["status"], "SUCCESS");
    let tickets = done["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2);
    let sn = tickets[0]["ticket_sn"].as_str().unwrap();
    assert_ne!(sn, tickets[1]["ticket_sn"].as_str().unwrap());
    assert_eq!(tickets[0]["seat"], seats[0]["seat"]);
    // The QR code verifies against the published key and says what the ticket says.
    let qr = tickets[0]["qr"].as_str().unwrap();
    let payload = app.state.signer.verify(qr).expect("a valid signature");
    assert_eq!(
        (payload.sn.as_str(), payload.run.as_str(), payload.seat.as_str()),
        (sn, g1().as_str(), seats[0]["seat"].as_str().unwrap())
    );
    assert!(payload.pax.starts_with("旅*"), "{}", payload.pax);
    let (_, keys) = send(&app, "GET", "/api/v1/checkin/keys", None, None).await;
    assert_eq!(keys["keys"][0]["key_id"], payload.kid.as_str());
    assert_eq!(keys["keys"][0]["algorithm"], "Ed25519");
    let (status, ticket) = send(&app, "GET", &format!("/api/v1/tickets/{sn}"), Some(&alice.token), None).await;
    assert_eq!((status, ticket["status"].as_str()), (200, Some("ISSUED")));
    let svg = app
        .client
        .get(app.url(&format!("/api/v1/tickets/{sn}/qr.svg")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    // Sold seats stay sold.
    assert_eq!(free_seats(&app, "SECOND").await, before - 2);

    // Bob sees none of it.
    let bob = buyer(&app, "bob", 1).await;
    for path in
        [format!("/api/v1/orders/{order_no}"), format!("/api/v1/tickets/{sn}"), format!("/api/v1/tickets/{sn}/qr.svg")]
    {
        let (status, e) = send(&app, "GET", &path, Some(&bob.token), None).await;
        assert_eq!(status, 404, "{path}: {e}");
    }
    let (status, _) = send(&app, "POST", &format!("/api/v1/orders/{order_no}/cancel"), Some(&bob.token), None).await;
    assert_eq!(status, 404);
    // Bob cannot book Alice's passengers either.
    let theirs = order_body("b-1", &g1(), "VNP", "AOH", "SECOND", &alice.passengers[..1]);
    let (status, _) = send(&app, "POST", "/api/v1/orders", Some(&bob.token), Some(theirs)).await;
    assert_eq!(status, 404);

    let (_, list) =
        send(&app, "GET", "/api/v1/orders?status=TICKETED&page=1&page_size=10", Some(&alice.token), None).await;
    assert_eq!(
        (list["total"].as_u64(), list["page"].as_u64(), list["items"][0]["order_no"].as_str()),
        (Some(1), Some(1), Some(order_no))
    );
    let (_, none) = send(&app, "GET", "/api/v1/orders?status=EXPIRED", Some(&alice.token), None).await;
    assert_eq!(none["total"], 0);
    let (status, e) = send(&app, "GET", "/api/v1/orders?page_size=1000", Some(&alice.token), None).await;
    assert_eq!((status, e["code"].as_u64()), (400, Some(40002)));
    let (_, audit) = (0, app.state.store.audit_range(0, 100).await.unwrap());
    assert!(audit.iter().any(|a| a.entry.subject == payment_no), "the notify is audited");

    // The invariant audit finds nothing wrong, and does find a seat given to two orders.
    let seats = chepiao_server::flow::audit::audit_seats(app.state.store.as_ref()).await.unwrap();
    assert_eq!((seats.live_orders, seats.tickets, seats.problems.len()), (1, 2, 0), "{:?}", seats.problems);
    let stored = app.state.store.order(order_no).await.unwrap().unwrap();
    let bob_id = app.state.auth.verify(&bob.token).unwrap().0;
    let twin = chepiao_store::NewOrder {
        order_no: "EDOUBLE".into(),
        user_id: bob_id,
        idem_key: "twin".into(),
        request_hash: vec![0; 32],
        amount_fen: stored.amount_fen,
        pay_before_ms: stored.pay_before_ms,
        created_at_ms: stored.created_at_ms,
        legs_json: stored.legs_json.clone(),
    };
    app.state.store.create_order(&twin).await.unwrap();
    let seats = chepiao_server::flow::audit::audit_seats(app.state.store.as_ref()).await.unwrap();
    assert_eq!(seats.problems.len(), 2, "{:?}", seats.problems);
    assert!(seats.problems[0].starts_with("I1:"), "{:?}", seats.problems);
}

#[tokio::test]
async fn purchase_end_to_end_sqlite() {
    purchase_end_to_end(Backend::Sqlite).await;
}

#[tokio::test]
async fn purchase_end_to_end_postgres() {
    if postgres_url().is_none() {
        eprintln!("CHEPIAO_TEST_POSTGRES_URL unset: skipped");
        return;
    }
    purchase_end_to_end(Backend::Postgres).await;
}

async fn notifies_are_verified_deduplicated_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = buyer(&app, "alice", 1).await;
    let body = order_body("n-1", &g1(), "VNP", "AOH", "FIRST", &alice.passengers);
    let (_, order) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body)).await;
    let order_no = order["order_no"].as_str().unwrap();
    let amount = order["amount_fen"].as_i64().unwrap();
    let (_, started) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{order_no}/payments"),
        Some(&alice.token),
        Some(json!({"channel": "mockpay"})),
    )
    .await;
    let p = started["payment_no"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();

    let good = notify_body(p, amount, "SUCCESS", "nonce-1", now);
    let (status, e) = notify(&app, &good, "not-the-secret").await;
    assert_eq!((status, e["code"].as_u64()), (401, Some(40102)), "forged");
    let (status, e) = notify(&app, &notify_body(p, amount, "SUCCESS", "nonce-0", now - 600), MOCKPAY_SECRET).await;
    assert_eq!((status, e["code"].as_u64()), (400, Some(40012)), "stale");
    let (status, e) = notify(&app, &notify_body(p, amount - 1, "SUCCESS", "nonce-x", now), MOCKPAY_SECRET).await;
    assert_eq!((status, e["code"].as_u64()), (400, Some(40013)), "wrong amount");
    let (status, e) = notify(&app, &notify_body("PNOSUCH", amount, "SUCCESS", "nonce-y", now), MOCKPAY_SECRET).await;
    assert_eq!((status, e["code"].as_u64()), (404, Some(40405)), "unknown payment");
    let (status, e) = notify(&app, "{\"out_trade_no\": 1}", MOCKPAY_SECRET).await;
    assert_eq!((status, e["code"].as_u64()), (400, Some(40011)), "malformed");
    assert_eq!(wait_status(&app, &alice.token, order_no, "PENDING_PAYMENT").await["payments"][0]["status"], "CREATED");

    let (status, ack) = notify(&app, &good, MOCKPAY_SECRET).await;
    assert_eq!((status, ack["result"].as_str()), (200, Some("PAID")));
    let (status, e) = notify(&app, &good, MOCKPAY_SECRET).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40907)), "the same message again is a replay");
    // The provider retries with a fresh nonce, and a late FAILED arrives after the SUCCESS.
    let (status, ack) = notify(&app, &notify_body(p, amount, "SUCCESS", "nonce-2", now), MOCKPAY_SECRET).await;
    assert_eq!((status, ack["result"].as_str()), (200, Some("DUPLICATE")));
    let (status, ack) = notify(&app, &notify_body(p, amount, "FAILED", "nonce-3", now), MOCKPAY_SECRET).await;
    assert_eq!((status, ack["result"].as_str()), (200, Some("DUPLICATE")));
    let done = wait_status(&app, &alice.token, order_no, "TICKETED").await;
    assert_eq!(done["tickets"].as_array().unwrap().len(), 1, "one ticket however many notifies");
    assert_eq!(done["payments"][0]["status"], "SUCCESS");

    // Every notify that passed the signature is in the chained audit log, the wrong amount too.
    let audit = app.state.store.audit_range(0, 1000).await.unwrap();
    chepiao_store::verify_chain((chepiao_store::AUDIT_GENESIS.to_vec(), 0), &audit).unwrap();
    assert!(audit.iter().any(|a| a.entry.detail.starts_with("AmountMismatch")), "{audit:?}");
    assert!(audit.iter().any(|a| a.entry.detail.starts_with("Replayed")));
}

#[tokio::test]
async fn notifies_are_verified_deduplicated_and_audited_sqlite() {
    notifies_are_verified_deduplicated_and_audited(Backend::Sqlite).await;
}

#[tokio::test]
async fn notifies_are_verified_deduplicated_and_audited_postgres() {
    if postgres_url().is_none() {
        return;
    }
    notifies_are_verified_deduplicated_and_audited(Backend::Postgres).await;
}

#[tokio::test]
async fn cancel_gives_seats_back_once_and_a_late_payment_is_refunded() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = buyer(&app, "alice", 3).await;
    let before = free_seats(&app, "SECOND").await;
    let body = order_body("c-1", &g1(), "VNP", "AOH", "SECOND", &alice.passengers);
    let (_, order) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body)).await;
    let order_no = order["order_no"].as_str().unwrap();
    assert_eq!(free_seats(&app, "SECOND").await, before - 3);
    // The payer opens the pay page, then the order is cancelled before the notify arrives.
    let (_, started) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{order_no}/payments"),
        Some(&alice.token),
        Some(json!({"channel": "mockpay"})),
    )
    .await;
    let cancel = format!("/api/v1/orders/{order_no}/cancel");
    let (status, cancelled) = send(&app, "POST", &cancel, Some(&alice.token), None).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("CANCELLED")), "{cancelled}");
    assert_eq!(free_seats(&app, "SECOND").await, before);
    let (status, again) = send(&app, "POST", &cancel, Some(&alice.token), None).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("CANCELLED")));
    assert_eq!(free_seats(&app, "SECOND").await, before, "seats back exactly once");
    let (status, e) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{order_no}/payments"),
        Some(&alice.token),
        Some(json!({"channel": "mockpay"})),
    )
    .await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40906)));

    let (status, _) = send(&app, "POST", started["pay_url"].as_str().unwrap(), None, None).await;
    assert_eq!(status, 202);
    let mut refunded = false;
    for _ in 0..200 {
        let (_, o) = send(&app, "GET", &format!("/api/v1/orders/{order_no}"), Some(&alice.token), None).await;
        assert_eq!(o["status"], "CANCELLED", "a late payment never revives an order");
        if o["payments"][0]["status"] == "REFUNDED" {
            refunded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refunded, "the late payment was refunded");
    assert_eq!(free_seats(&app, "SECOND").await, before);
    let audit = app.state.store.payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.refunded, audit.in_flight_total), (1, 1, 0));
}

#[tokio::test]
async fn unpaid_orders_expire_and_free_their_seats() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.pay_window_s = 1).await;
    let alice = buyer(&app, "alice", 2).await;
    let before = free_seats(&app, "BUSINESS").await;
    let body = order_body("x-1", &g1(), "VNP", "AOH", "BUSINESS", &alice.passengers);
    let (status, order) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body)).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(free_seats(&app, "BUSINESS").await, before - 2);
    let order_no = order["order_no"].as_str().unwrap();
    wait_status(&app, &alice.token, order_no, "EXPIRED").await;
    for _ in 0..100 {
        if free_seats(&app, "BUSINESS").await == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(free_seats(&app, "BUSINESS").await, before);
    let (status, e) = send(&app, "POST", &format!("/api/v1/orders/{order_no}/cancel"), Some(&alice.token), None).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40905)));
    // The release is recorded just after the engine gave the seats back.
    for _ in 0..100 {
        if app.state.store.unreleased_orders(10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.state.store.unreleased_orders(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_retries_make_one_order() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = buyer(&app, "alice", 2).await;
    let before = free_seats(&app, "SECOND").await;
    let body = order_body("same-key", &g1(), "VNP", "AOH", "SECOND", &alice.passengers);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (client, url, token, body) =
            (app.client.clone(), app.url("/api/v1/orders"), alice.token.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut created = 0;
    let mut bodies = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(status == 200 || status == 201, "{status} {body}");
        created += usize::from(status == 201);
        bodies.push(body);
    }
    assert_eq!(created, 1, "exactly one call created the order");
    assert!(bodies.iter().all(|b| *b == bodies[0]), "every retry got the same answer");
    assert_eq!(free_seats(&app, "SECOND").await, before - 2, "one hold");
    let (_, list) = send(&app, "GET", "/api/v1/orders", Some(&alice.token), None).await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn a_multi_leg_order_holds_every_leg_or_none() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = buyer(&app, "alice", 1).await;
    let before = free_seats(&app, "SECOND").await;
    // Leg 2 asks for standing places while seats remain: the engine refuses it.
    let body = json!({"idempotency_key": "two-legs", "legs": [
        {"run_id": g1(), "from": "VNP", "to": "AOH", "class": "SECOND", "passenger_ids": alice.passengers},
        {"run_id": g1(), "from": "VNP", "to": "AOH", "class": "STANDING", "passenger_ids": alice.passengers}]});
    let (status, e) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body)).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40903)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("legs[1]"), "{e}");
    assert_eq!(free_seats(&app, "SECOND").await, before, "leg 1 was not kept");
    // Two good legs (a round trip on two runs) are both held.
    let back = g1().replace("G1-", "G2-");
    let body = json!({"idempotency_key": "round-trip", "legs": [
        {"run_id": g1(), "from": "VNP", "to": "AOH", "class": "SECOND", "passenger_ids": alice.passengers, "seat_prefs": ["F"]},
        {"run_id": back, "from": "AOH", "to": "VNP", "class": "SECOND", "passenger_ids": alice.passengers}]});
    let (status, order) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body)).await;
    assert_eq!(status, 201, "{order}");
    assert!(order["legs"][0]["seats"][0]["seat"].as_str().unwrap().ends_with('F'), "{order}");
    assert_eq!(order["legs"][1]["run_id"], back.as_str());
    assert_eq!(free_seats(&app, "SECOND").await, before - 1);
    let order_no = order["order_no"].as_str().unwrap();
    pay(&app, &alice.token, order_no).await;
    let done = wait_status(&app, &alice.token, order_no, "TICKETED").await;
    assert_eq!(done["tickets"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_orders_are_4xx_with_codes() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = buyer(&app, "alice", 1).await;
    let p = &alice.passengers;
    let cases = [
        (order_body("", &g1(), "VNP", "AOH", "SECOND", p), 400, 40002, "idempotency_key"),
        (order_body("k", "G1-19990101", "VNP", "AOH", "SECOND", p), 404, 40403, "run_id"),
        (order_body("k", "nonsense", "VNP", "AOH", "SECOND", p), 400, 40002, "run_id"),
        (order_body("k", &g1(), "AOH", "VNP", "SECOND", p), 400, 40002, "legs[0].to"),
        (order_body("k", &g1(), "VNP", "XXX", "SECOND", p), 400, 40002, "legs[0].to"),
        (order_body("k", &g1(), "VNP", "AOH", "HARD_SLEEPER", p), 400, 40002, "legs[0].class"),
        (order_body("k", &g1(), "VNP", "AOH", "SECOND", &[]), 400, 40002, "passenger_ids"),
        (order_body("k", &g1(), "VNP", "AOH", "SECOND", &[p[0], p[0]]), 400, 40002, "passenger_ids"),
        (order_body("k", &g1(), "VNP", "AOH", "SECOND", &[999_999]), 404, 40401, "passenger_ids"),
        (json!({"idempotency_key": "k", "legs": []}), 400, 40002, "legs"),
        (json!({"idempotency_key": "k"}), 400, 40011, "legs"),
    ];
    for (body, status, code, names) in cases {
        let (s, e) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body.clone())).await;
        assert_eq!((s, e["code"].as_u64()), (status, Some(code)), "{body}: {e}");
        assert!(e["message"].as_str().unwrap().contains(names), "{body}: {e}");
    }
    let (status, e) =
        send(&app, "POST", "/api/v1/orders", None, Some(order_body("k", &g1(), "VNP", "AOH", "SECOND", p))).await;
    assert_eq!((status, e["code"].as_u64()), (401, Some(40101)));
    let (status, e) = send(&app, "GET", "/api/v1/orders/ENOSUCH", Some(&alice.token), None).await;
    assert_eq!((status, e["code"].as_u64()), (404, Some(40404)));
    let (_, order) = send(
        &app,
        "POST",
        "/api/v1/orders",
        Some(&alice.token),
        Some(order_body("ok", &g1(), "VNP", "AOH", "SECOND", p)),
    )
    .await;
    let path = format!("/api/v1/orders/{}/payments", order["order_no"].as_str().unwrap());
    let (status, e) = send(&app, "POST", &path, Some(&alice.token), Some(json!({"channel": "bitcoin"}))).await;
    assert_eq!((status, e["code"].as_u64()), (404, Some(40407)));
}

/// The relay paused plays a bus outage: payments commit, the outbox holds their events, and
/// once the relay resumes every order is ticketed.
#[tokio::test]
async fn the_outbox_rides_out_a_bus_outage() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = buyer(&app, "alice", 1).await;
    app.state.relay.set_paused(true);
    let mut orders = Vec::new();
    for i in 0..5 {
        let body = order_body(&format!("o-{i}"), &g1(), "VNP", "AOH", "SECOND", &alice.passengers);
        let (status, order) = send(&app, "POST", "/api/v1/orders", Some(&alice.token), Some(body)).await;
        assert_eq!(status, 201, "{order}");
        let no = order["order_no"].as_str().unwrap().to_string();
        pay(&app, &alice.token, &no).await;
        wait_status(&app, &alice.token, &no, "PAID").await;
        orders.push(no);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.state.store.outbox_pending(100).await.unwrap().len(), 5);
    let audit = app.state.store.payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.in_flight_total), (5, 5));
    app.state.relay.set_paused(false);
    for no in &orders {
        wait_status(&app, &alice.token, no, "TICKETED").await;
    }
    assert!(app.state.store.outbox_pending(100).await.unwrap().is_empty());
    assert_eq!(app.state.store.payment_audit().await.unwrap().ticketed, 5);
}

/// The buy path's time limit: with the SQLite file locked by another process's write
/// transaction, placing an order cannot finish; the client gets 503/50302 at `buy_timeout_ms`
/// (not the store's 5 s busy wait), and a retry with the same key once the lock is gone places
/// the order exactly once.
#[tokio::test]
async fn a_stuck_order_is_answered_503_at_the_buy_time_limit() {
    use sqlx::Connection;
    let app = spawn_app_with(Backend::Sqlite, |c| c.buy_timeout_ms = 300).await;
    let b = buyer(&app, "stuck", 1).await;
    let mut lock =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.dir.join("chepiao.db").display())).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut lock).await.unwrap();
    let body = order_body("stuck-1", &g1(), "VNP", "AOH", "SECOND", &b.passengers);
    let sent = std::time::Instant::now();
    let (status, err) = send(&app, "POST", "/api/v1/orders", Some(&b.token), Some(body.clone())).await;
    let took = sent.elapsed();
    assert_eq!((status, err["code"].as_u64()), (503, Some(50302)), "{err}");
    assert!(took < Duration::from_secs(3), "answered at the time limit, not the store's busy wait: {took:?}");
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);
    let (status, order) = send(&app, "POST", "/api/v1/orders", Some(&b.token), Some(body.clone())).await;
    assert!(status == 201 || status == 200, "{status} {order}");
    let (again, same) = send(&app, "POST", "/api/v1/orders", Some(&b.token), Some(body)).await;
    assert_eq!((again, &same["order_no"]), (200, &order["order_no"]), "{same}");
    let (_, list) = send(&app, "GET", "/api/v1/orders", Some(&b.token), None).await;
    assert_eq!((list["total"].as_u64(), &list["items"][0]["order_no"]), (Some(1), &order["order_no"]), "{list}");
}
