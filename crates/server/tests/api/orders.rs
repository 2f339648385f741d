//! The purchase flow over HTTP: order → pay → signed notify → outbox → bus → tickets, on both
//! SQL backends; idempotency under concurrent retries (I6); seats back exactly once on cancel
//! and expiry (I3); notify forgery, replay, reordering and wrong amounts; a bus outage that
//! the outbox rides out (I2); another user's order and tickets are 404.

use std::time::Duration;

use chepiao_api::orders::{LegBody, OrderRequest};
use chepiao_domain::SeatClass;
use serde_json::json;

use crate::app::{
    Backend, MOCKPAY_SECRET, code, g1, leg, notify_body, order_req, spawn_app, spawn_app_with, wait_until,
};

async fn purchase_end_to_end(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.buyer("alice", 2).await;
    let before = app.free_seats(SeatClass::Second).await;
    let req = order_req("trip-1", &g1(), "VNP", "AOH", SeatClass::Second, &alice.passengers);
    let created = alice.api.create_order(&req, None).await.unwrap();
    let order = &created.body;
    assert_eq!((created.status, order.status.as_str()), (201, "PENDING_PAYMENT"));
    let seats = &order.legs[0].seats;
    assert_eq!(seats.len(), 2);
    assert_eq!(seats[0].coach, seats[1].coach, "a group sits in one coach");
    assert_eq!(order.amount_fen, seats[0].price_fen * 2);
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 2);
    // A retry answers the same body; the same key with other legs is refused.
    let again = alice.api.create_order(&req, None).await.unwrap();
    assert_eq!((again.status, serde_json::to_value(&again.body).unwrap()), (200, serde_json::to_value(order).unwrap()));
    let other = order_req("trip-1", &g1(), "VNP", "JGK", SeatClass::Second, &alice.passengers);
    assert_eq!(code(alice.api.create_order(&other, None).await), (409, 40904));
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 2, "retries hold nothing more");

    let order_no = order.order_no.as_str();
    let payment_no = app.pay(&alice, order_no).await;
    let done = app.wait_status(&alice, order_no, "TICKETED").await;
    let payments = done.payments.as_ref().unwrap();
    assert_eq!((payments[0].payment_no.as_str(), payments[0].status.as_str()), (payment_no.as_str(), "SUCCESS"));
    let tickets = done.tickets.as_ref().unwrap();
    assert_eq!(tickets.len(), 2);
    let sn = tickets[0].ticket_sn.as_str();
    assert_ne!(sn, tickets[1].ticket_sn);
    assert_eq!(tickets[0].seat, seats[0].seat);
    // The QR code verifies against the published key and says what the ticket says.
    let payload = app.state.flow.signer.verify(&tickets[0].qr).expect("a valid signature");
    assert_eq!(
        (payload.sn.as_str(), payload.run.as_str(), payload.seat.as_str()),
        (sn, g1().as_str(), seats[0].seat.as_str())
    );
    assert!(payload.pax.starts_with("旅*"), "{}", payload.pax);
    let keys = app.api.keys().await.unwrap();
    assert_eq!((keys.keys[0].key_id.as_str(), keys.keys[0].algorithm.as_str()), (payload.kid.as_str(), "Ed25519"));
    assert_eq!(alice.api.ticket(sn).await.unwrap().status, "ISSUED");
    assert!(alice.api.qr_svg(sn).await.unwrap().contains("<svg"));
    let svg = alice.api.request(reqwest::Method::GET, &format!("/api/v1/tickets/{sn}/qr.svg")).send().await.unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    // Sold seats stay sold.
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 2);

    // Bob sees none of it, and cannot book Alice's passengers either.
    let bob = app.buyer("bob", 1).await;
    assert_eq!(code(bob.api.order(order_no).await).0, 404);
    assert_eq!(code(bob.api.ticket(sn).await).0, 404);
    assert_eq!(code(bob.api.qr_svg(sn).await).0, 404);
    assert_eq!(code(bob.api.cancel(order_no).await).0, 404);
    let theirs = order_req("b-1", &g1(), "VNP", "AOH", SeatClass::Second, &alice.passengers[..1]);
    assert_eq!(code(bob.api.create_order(&theirs, None).await).0, 404);

    let list = alice.api.orders(Some("TICKETED"), 1, 10).await.unwrap();
    assert_eq!((list.total, list.page, list.items[0].order_no.as_str()), (1, 1, order_no));
    assert_eq!(alice.api.orders(Some("EXPIRED"), 1, 20).await.unwrap().total, 0);
    assert_eq!(code(alice.api.orders(None, 1, 1000).await), (400, 40002));
    let audit = app.store().audit_range(0, 100).await.unwrap();
    assert!(audit.iter().any(|a| a.entry.subject == payment_no), "the notify is audited");

    // The invariant audit finds nothing wrong, and does find a seat given to two orders.
    let seats = chepiao_flow::audit::audit_seats(app.store()).await.unwrap();
    assert_eq!((seats.live_orders, seats.tickets, seats.problems.len()), (1, 2, 0), "{:?}", seats.problems);
    let stored = app.store().order(order_no).await.unwrap().unwrap();
    let twin = chepiao_store::NewOrder {
        order_no: "EDOUBLE".into(),
        user_id: bob.user_id,
        idem_key: "twin".into(),
        request_hash: vec![0; 32],
        amount_fen: stored.amount_fen,
        pay_before_ms: stored.pay_before_ms,
        created_at_ms: stored.created_at_ms,
        legs_json: stored.legs_json.clone(),
        holds: Vec::new(),
        kind: chepiao_store::OrderKind::Order,
        source: "api".into(),
        trips: Vec::new(),
        lines: Vec::new(),
    };
    app.store().create_order(&twin).await.unwrap();
    let seats = chepiao_flow::audit::audit_seats(app.store()).await.unwrap();
    assert_eq!(seats.problems.len(), 2, "{:?}", seats.problems);
    assert!(seats.problems[0].starts_with("I1:"), "{:?}", seats.problems);
}

crate::on_both_backends!(purchase_end_to_end, purchase_end_to_end_sqlite, purchase_end_to_end_postgres);

async fn notifies_are_verified_deduplicated_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.buyer("alice", 1).await;
    let req = order_req("n-1", &g1(), "VNP", "AOH", SeatClass::First, &alice.passengers);
    let order = alice.api.create_order(&req, None).await.unwrap().body;
    let (order_no, amount) = (order.order_no.as_str(), order.amount_fen);
    let started = alice.api.pay(order_no, "mockpay").await.unwrap();
    let p = started.payment_no.as_str();
    let now = chrono::Utc::now().timestamp();

    let good = notify_body(p, amount, "SUCCESS", "nonce-1", now);
    assert_eq!(code(app.notify(&good, "not-the-secret").await), (401, 40102), "forged");
    let stale = notify_body(p, amount, "SUCCESS", "nonce-0", now - 600);
    assert_eq!(code(app.notify(&stale, MOCKPAY_SECRET).await), (400, 40012), "stale");
    let wrong = notify_body(p, amount - 1, "SUCCESS", "nonce-x", now);
    assert_eq!(code(app.notify(&wrong, MOCKPAY_SECRET).await), (400, 40013), "wrong amount");
    let unknown = notify_body("PNOSUCH", amount, "SUCCESS", "nonce-y", now);
    assert_eq!(code(app.notify(&unknown, MOCKPAY_SECRET).await), (404, 40405), "unknown payment");
    assert_eq!(code(app.notify("{\"out_trade_no\": 1}", MOCKPAY_SECRET).await), (400, 40011), "malformed");
    let pending = app.wait_status(&alice, order_no, "PENDING_PAYMENT").await;
    assert_eq!(pending.payments.unwrap()[0].status, "CREATED");

    assert_eq!(app.notify(&good, MOCKPAY_SECRET).await.unwrap().result, "PAID");
    // The provider resends the very same message (API.md: 200, no second effect); a different
    // message reusing its nonce is a replay.
    assert_eq!(app.notify(&good, MOCKPAY_SECRET).await.unwrap().result, "DUPLICATE", "a resent notify");
    let reused = notify_body(p, amount, "FAILED", "nonce-1", now);
    assert_eq!(code(app.notify(&reused, MOCKPAY_SECRET).await), (409, 40907), "a nonce reused by another body");
    // The provider retries with a fresh nonce, and a late FAILED arrives after the SUCCESS.
    let retry = notify_body(p, amount, "SUCCESS", "nonce-2", now);
    assert_eq!(app.notify(&retry, MOCKPAY_SECRET).await.unwrap().result, "DUPLICATE");
    let late_failure = notify_body(p, amount, "FAILED", "nonce-3", now);
    assert_eq!(app.notify(&late_failure, MOCKPAY_SECRET).await.unwrap().result, "DUPLICATE");
    let done = app.wait_status(&alice, order_no, "TICKETED").await;
    assert_eq!(done.tickets.unwrap().len(), 1, "one ticket however many notifies");
    assert_eq!(done.payments.unwrap()[0].status, "SUCCESS");

    // Every notify that passed the signature is in the chained audit log, the wrong amount too.
    let audit = app.store().audit_range(0, 1000).await.unwrap();
    chepiao_store::verify_chain((chepiao_store::AUDIT_GENESIS.to_vec(), 0), &audit).unwrap();
    assert!(audit.iter().any(|a| a.entry.detail.starts_with("AmountMismatch")), "{audit:?}");
    assert!(audit.iter().any(|a| a.entry.detail.starts_with("Replayed")));
}

crate::on_both_backends!(
    notifies_are_verified_deduplicated_and_audited,
    notifies_are_verified_deduplicated_and_audited_sqlite,
    notifies_are_verified_deduplicated_and_audited_postgres
);

#[tokio::test]
async fn cancel_gives_seats_back_once_and_a_late_payment_is_refunded() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.buyer("alice", 3).await;
    let before = app.free_seats(SeatClass::Second).await;
    let req = order_req("c-1", &g1(), "VNP", "AOH", SeatClass::Second, &alice.passengers);
    let order_no = alice.api.create_order(&req, None).await.unwrap().body.order_no;
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 3);
    // The payer opens the pay page, then the order is cancelled before the notify arrives.
    let started = alice.api.pay(&order_no, "mockpay").await.unwrap();
    assert_eq!(alice.api.cancel(&order_no).await.unwrap().status, "CANCELLED");
    assert_eq!(app.free_seats(SeatClass::Second).await, before);
    assert_eq!(alice.api.cancel(&order_no).await.unwrap().status, "CANCELLED");
    assert_eq!(app.free_seats(SeatClass::Second).await, before, "seats back exactly once");
    assert_eq!(code(alice.api.pay(&order_no, "mockpay").await), (409, 40906));

    app.api.press_pay(&started.pay_url, true).await.unwrap();
    wait_until("the late payment refunded", || async {
        let o = alice.api.order(&order_no).await.unwrap();
        assert_eq!(o.status, "CANCELLED", "a late payment never revives an order");
        o.payments.unwrap()[0].status == "REFUNDED"
    })
    .await;
    assert_eq!(app.free_seats(SeatClass::Second).await, before);
    let audit = app.store().payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.refunded, audit.in_flight_total), (1, 1, 0));
}

/// The pay window passes on the app's clock (no waiting): the sweeper expires the order, the
/// seats come back once, and the release is recorded.
#[tokio::test]
async fn unpaid_orders_expire_and_free_their_seats() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.buyer("alice", 2).await;
    let before = app.free_seats(SeatClass::Business).await;
    let req = order_req("x-1", &g1(), "VNP", "AOH", SeatClass::Business, &alice.passengers);
    let order_no = alice.api.create_order(&req, None).await.unwrap().body.order_no;
    assert_eq!(app.free_seats(SeatClass::Business).await, before - 2);
    app.advance(Duration::from_secs(app.state.config.pay_window_s + 1));
    app.wait_status(&alice, &order_no, "EXPIRED").await;
    wait_until("the seats back", || async { app.free_seats(SeatClass::Business).await == before }).await;
    assert_eq!(code(alice.api.cancel(&order_no).await), (409, 40905));
    // The release is recorded just after the engine gave the seats back.
    wait_until("the release recorded", || async { app.store().unreleased_orders(10).await.unwrap().is_empty() }).await;
    assert_eq!(app.free_seats(SeatClass::Business).await, before, "given back once");
}

#[tokio::test]
async fn concurrent_retries_make_one_order() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.buyer("alice", 2).await;
    let before = app.free_seats(SeatClass::Second).await;
    let req = order_req("same-key", &g1(), "VNP", "AOH", SeatClass::Second, &alice.passengers);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (api, req) = (alice.api.clone(), req.clone());
            tokio::spawn(async move { api.create_order(&req, None).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 1, "exactly one call created the order");
    assert!(answers.iter().all(|a| a.status == 200 || a.status == 201));
    let first = serde_json::to_value(&answers[0].body).unwrap();
    assert!(answers.iter().all(|a| serde_json::to_value(&a.body).unwrap() == first), "every retry got the same answer");
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 2, "one hold");
    assert_eq!(alice.api.orders(None, 1, 20).await.unwrap().total, 1);
}

#[tokio::test]
async fn a_multi_leg_order_holds_every_leg_or_none() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.buyer("alice", 1).await;
    let before = app.free_seats(SeatClass::Second).await;
    // Leg 2 asks for standing places while seats remain: the engine refuses it.
    let p = &alice.passengers;
    let two = OrderRequest {
        idempotency_key: "two-legs".into(),
        legs: vec![leg(&g1(), "VNP", "AOH", SeatClass::Second, p), leg(&g1(), "VNP", "AOH", SeatClass::Standing, p)],
    };
    let e = alice.api.create_order(&two, None).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(40903)), "{e}");
    assert!(e.to_string().contains("legs[1]"), "{e}");
    assert_eq!(app.free_seats(SeatClass::Second).await, before, "leg 1 was not kept");
    // Two good legs (a round trip on two runs) are both held.
    let back = g1().replace("G1-", "G2-");
    let out = LegBody { seat_prefs: Some(vec!["F".into()]), ..leg(&g1(), "VNP", "AOH", SeatClass::Second, p) };
    let round_trip = OrderRequest {
        idempotency_key: "round-trip".into(),
        legs: vec![out, leg(&back, "AOH", "VNP", SeatClass::Second, p)],
    };
    let order = alice.api.create_order(&round_trip, None).await.unwrap().body;
    assert!(order.legs[0].seats[0].seat.ends_with('F'), "{order:?}");
    assert_eq!(order.legs[1].run_id, back);
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 1);
    app.pay(&alice, &order.order_no).await;
    let done = app.wait_status(&alice, &order.order_no, "TICKETED").await;
    assert_eq!(done.tickets.unwrap().len(), 2);
}

#[tokio::test]
async fn bad_orders_are_4xx_with_codes() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.buyer("alice", 1).await;
    let p = &alice.passengers;
    let second = SeatClass::Second;
    let cases = [
        (json!(order_req("", &g1(), "VNP", "AOH", second, p)), 400, 40002, "idempotency_key"),
        (json!(order_req("k", "G1-19990101", "VNP", "AOH", second, p)), 404, 40403, "run_id"),
        (json!(order_req("k", "nonsense", "VNP", "AOH", second, p)), 400, 40002, "run_id"),
        (json!(order_req("k", &g1(), "AOH", "VNP", second, p)), 400, 40002, "legs[0].to"),
        (json!(order_req("k", &g1(), "VNP", "XXX", second, p)), 400, 40002, "legs[0].to"),
        (json!(order_req("k", &g1(), "VNP", "AOH", SeatClass::HardSleeper, p)), 400, 40002, "legs[0].class"),
        (json!(order_req("k", &g1(), "VNP", "AOH", second, &[])), 400, 40002, "passenger_ids"),
        (json!(order_req("k", &g1(), "VNP", "AOH", second, &[p[0], p[0]])), 400, 40002, "passenger_ids"),
        (json!(order_req("k", &g1(), "VNP", "AOH", second, &[999_999])), 404, 40401, "passenger_ids"),
        (json!({"idempotency_key": "k", "legs": []}), 400, 40002, "legs"),
        (json!({"idempotency_key": "k"}), 400, 40011, "legs"),
    ];
    for (body, status, want, names) in cases {
        let r = alice.api.request(reqwest::Method::POST, "/api/v1/orders").json(&body);
        let e = chepiao_api::Client::send::<serde_json::Value>(r).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(status), Some(want)), "{body}: {e}");
        assert!(e.to_string().contains(names), "{body}: {e}");
    }
    let req = order_req("k", &g1(), "VNP", "AOH", second, p);
    assert_eq!(code(app.api.create_order(&req, None).await), (401, 40101));
    assert_eq!(code(alice.api.order("ENOSUCH").await), (404, 40404));
    let order = alice.api.create_order(&order_req("ok", &g1(), "VNP", "AOH", second, p), None).await.unwrap().body;
    assert_eq!(code(alice.api.pay(&order.order_no, "bitcoin").await), (404, 40407));
}

/// The relay paused plays a bus outage: payments commit, the outbox holds their events, and
/// once the relay resumes every order is ticketed.
#[tokio::test]
async fn the_outbox_rides_out_a_bus_outage() {
    let app = spawn_app(Backend::Sqlite).await;
    app.state.flow.relay.set_paused(true);
    let mut orders = Vec::new();
    for i in 0..5 {
        // A buyer each: a passenger travels on one journey at a time.
        let b = app.buyer(&format!("buyer{i}"), 1).await;
        let req = order_req(&format!("o-{i}"), &g1(), "VNP", "AOH", SeatClass::Second, &b.passengers);
        let no = b.api.create_order(&req, None).await.unwrap().body.order_no;
        app.pay(&b, &no).await;
        app.wait_status(&b, &no, "PAID").await;
        orders.push((b, no));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.store().outbox_due(i64::MAX, 100).await.unwrap().len(), 5);
    let audit = app.store().payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.in_flight_total), (5, 5));
    app.state.flow.relay.set_paused(false);
    for (b, no) in &orders {
        app.wait_status(b, no, "TICKETED").await;
    }
    assert!(app.store().outbox_due(i64::MAX, 100).await.unwrap().is_empty());
    assert_eq!(app.store().payment_audit().await.unwrap().ticketed, 5);
}

/// The buy path's time limit: with the SQLite file locked by another connection's write
/// transaction, placing an order cannot finish; the client gets 503/50302 at `buy_timeout_ms`
/// (not the store's 5 s busy wait), and a retry with the same key once the lock is gone places
/// the order exactly once.
#[tokio::test]
async fn a_stuck_order_is_answered_503_at_the_buy_time_limit() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.buy_timeout_ms = 300).await;
    let b = app.buyer("stuck", 1).await;
    let lock = rusqlite::Connection::open(app.dir.join("chepiao.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let req = order_req("stuck-1", &g1(), "VNP", "AOH", SeatClass::Second, &b.passengers);
    let sent = std::time::Instant::now();
    assert_eq!(code(b.api.create_order(&req, None).await), (503, 50302));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(3), "answered at the time limit, not the store's busy wait: {took:?}");
    let free = app.free_seats(SeatClass::Second).await;
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    // The placement went on without its client: the order is recorded with its seat, not left
    // as a hold no order carries.
    wait_until("the placement finished", || async { b.api.orders(None, 1, 20).await.unwrap().total == 1 }).await;
    assert_eq!(app.free_seats(SeatClass::Second).await, free, "one seat held, by the order");
    let list = b.api.orders(None, 1, 20).await.unwrap();
    let again = b.api.create_order(&req, None).await.unwrap();
    assert_eq!((again.status, &again.body.order_no), (200, &list.items[0].order_no), "a retry finds it");
}
