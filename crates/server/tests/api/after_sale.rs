//! After the sale, over HTTP on both backends: rebooking (the new seat held first; a failed
//! hold changes nothing; the fare difference charged or given back; the old ticket revoked),
//! the waitlist (wishes fulfilled in join order as refunds bring seats back, all passengers or
//! none; deadline refunds; cancel) and the offline gate (a ticket revoked after the gate's last
//! sync, and a ticket scanned at two gates, are both reported at upload).

use std::time::Duration;

use chepiao_server::gate::{GateState, Verdict};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, postgres_url, spawn_app_with};
use crate::orders::{Buyer, buyer, g1, order_body, pay, send, ticketed, wait_status};

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.gates = vec![
            chepiao_server::secrets::Secret("g1=gate-secret".into()),
            chepiao_server::secrets::Secret("g2=gate-two".into()),
        ];
        c.ticket_valid_before_s = 3 * 24 * 3600;
        c.refund_fee_tiers = vec![chepiao_server::config::FeeTier { hours_before: 0, percent: 10 }];
        c.wish_deadline_min_s = 1;
    })
    .await
}

async fn free(app: &TestApp, class: &str) -> u64 {
    let path = format!("/api/v1/runs/{}/seats?from=VNP&to=AOH&class={class}", g1());
    let (status, map) = send(app, "GET", &path, None, None).await;
    assert_eq!(status, 200, "{map}");
    map["free"].as_u64().unwrap()
}

/// Buy every place of `class` on G1 (VNP → AOH) for `b`, ticketed; returns the orders' tickets.
async fn buy_all(app: &TestApp, b: &Buyer, class: &str) -> Vec<Value> {
    let mut tickets = Vec::new();
    let mut i = 0;
    loop {
        let left = free(app, class).await as usize;
        if left == 0 {
            return tickets;
        }
        let n = left.min(b.passengers.len());
        let body = order_body(&format!("all-{class}-{i}"), &g1(), "VNP", "AOH", class, &b.passengers[..n]);
        let (status, order) = send(app, "POST", "/api/v1/orders", Some(&b.token), Some(body)).await;
        assert_eq!(status, 201, "{order}");
        let no = order["order_no"].as_str().unwrap().to_string();
        pay(app, &b.token, &no).await;
        let done = wait_status(app, &b.token, &no, "TICKETED").await;
        tickets.extend(done["tickets"].as_array().unwrap().iter().cloned());
        i += 1;
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

async fn ticket(app: &TestApp, token: &str, sn: &str) -> Value {
    let (status, t) = send(app, "GET", &format!("/api/v1/tickets/{sn}"), Some(token), None).await;
    assert_eq!(status, 200, "{t}");
    t
}

async fn check_in(app: &TestApp, qr: &Value) -> u16 {
    let r = app
        .client
        .post(app.url("/api/v1/checkin"))
        .header("x-gate-key", "gate-secret")
        .json(&json!({"qr": qr, "station": "VNP", "gate_id": "g1"}))
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

async fn rebook(backend: Backend) {
    let app = spawn(backend).await;
    let (alice, _, done) = ticketed(&app, "alice", 1).await;
    let old = done["tickets"][0].clone();
    let old_sn = old["ticket_sn"].as_str().unwrap().to_string();
    let second_free = free(&app, "SECOND").await;

    // Business class sold out: the rebook's hold fails and nothing changes.
    let filler = buyer(&app, "filler", 5).await;
    buy_all(&app, &filler, "BUSINESS").await;
    let path = format!("/api/v1/tickets/{old_sn}/rebook");
    let (status, e) =
        send(&app, "POST", &path, Some(&alice.token), Some(json!({"run_id": g1(), "class": "BUSINESS"}))).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40903)), "{e}");
    assert_eq!(ticket(&app, &alice.token, &old_sn).await["status"], "ISSUED");
    let (_, list) = send(&app, "GET", "/api/v1/orders", Some(&alice.token), None).await;
    assert_eq!(list["total"], 1, "no order was made: {list}");
    assert_eq!(free(&app, "SECOND").await, second_free, "the old seat is still sold");

    // To first class: dearer, so the order costs the difference, paid like any order.
    let first_free = free(&app, "FIRST").await;
    let (status, order) =
        send(&app, "POST", &path, Some(&alice.token), Some(json!({"run_id": g1(), "class": "FIRST"}))).await;
    assert_eq!(status, 201, "{order}");
    let first_price = order["legs"][0]["seats"][0]["price_fen"].as_i64().unwrap();
    let old_price = old["price_fen"].as_i64().unwrap();
    assert_eq!(order["amount_fen"].as_i64(), Some(first_price - old_price), "{order}");
    assert_eq!(order["status"], "PENDING_PAYMENT");
    let (status, again) =
        send(&app, "POST", &path, Some(&alice.token), Some(json!({"run_id": g1(), "class": "FIRST"}))).await;
    assert_eq!((status, &again["order_no"]), (200, &order["order_no"]), "a retry finds the same order");
    assert_eq!(ticket(&app, &alice.token, &old_sn).await["status"], "ISSUED", "valid until the new one is paid");
    let no = order["order_no"].as_str().unwrap();
    pay(&app, &alice.token, no).await;
    let rebooked = wait_status(&app, &alice.token, no, "TICKETED").await;
    let new = rebooked["tickets"][0].clone();
    assert_eq!(ticket(&app, &alice.token, &old_sn).await["status"], "REBOOKED");
    assert_eq!(free(&app, "FIRST").await, first_free - 1);
    wait_until("the old seat back on sale", || async { free(&app, "SECOND").await == second_free + 1 }).await;
    assert_eq!(check_in(&app, &old["qr"]).await, 410, "the old ticket is revoked");
    let r = app
        .client
        .get(app.url("/api/v1/checkin/revocations?since=0"))
        .header("x-gate-key", "gate-secret")
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert!(page["revoked"].as_array().unwrap().iter().any(|r| r["ticket_sn"] == old_sn), "{page}");
    let (status, e) = send(&app, "POST", &format!("/api/v1/tickets/{old_sn}/refund"), Some(&alice.token), None).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40909)), "a rebooked ticket is not refundable: {e}");
    let (status, e) =
        send(&app, "POST", &path, Some(&alice.token), Some(json!({"run_id": g1(), "class": "SECOND"}))).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40910)), "rebooked once: {e}");

    // Back to second class: cheaper, so nothing to pay; the difference comes back.
    let new_sn = new["ticket_sn"].as_str().unwrap();
    let path = format!("/api/v1/tickets/{new_sn}/rebook");
    let (status, order) =
        send(&app, "POST", &path, Some(&alice.token), Some(json!({"run_id": g1(), "class": "SECOND"}))).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!((order["amount_fen"].as_i64(), &order["status"]), (Some(0), &json!("PAID")), "{order}");
    let no = order["order_no"].as_str().unwrap();
    let back = wait_status(&app, &alice.token, no, "TICKETED").await;
    assert_eq!(ticket(&app, &alice.token, new_sn).await["status"], "REBOOKED");
    wait_until("the first-class seat back", || async { free(&app, "FIRST").await == first_free }).await;
    let refunds = app.state.store.rebooked_to(new_sn).await.unwrap();
    assert_eq!(refunds.as_deref(), Some(no));
    // The last ticket was paid in two parts (the first fare, then the difference to first
    // class): its refund is split across both payments, and it is revoked.
    let last = &back["tickets"][0];
    let sn = last["ticket_sn"].as_str().unwrap();
    let (status, r) = send(&app, "POST", &format!("/api/v1/tickets/{sn}/refund"), Some(&alice.token), None).await;
    assert_eq!(status, 200, "{r}");
    let refund_no = r["refund_no"].as_str().unwrap().to_string();
    wait_until("the split refund done", || async {
        let r = app.state.store.ticket_refund(&refund_no).await.unwrap().unwrap();
        r.status == chepiao_store::RefundStatus::Done
    })
    .await;
    assert_eq!(check_in(&app, &last["qr"]).await, 410);
    wait_until("every payment settled", || async {
        app.state.store.payment_audit().await.unwrap().in_flight_total == 0
    })
    .await;
}

#[tokio::test]
async fn rebook_sqlite() {
    rebook(Backend::Sqlite).await;
}

#[tokio::test]
async fn rebook_postgres() {
    if postgres_url().is_none() {
        return;
    }
    rebook(Backend::Postgres).await;
}

fn rfc3339_in(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339()
}

async fn join(app: &TestApp, b: &Buyer, n: usize, deadline_in_s: i64) -> (String, Value) {
    let body = json!({"run_id": g1(), "from": "VNP", "to": "AOH", "class": "BUSINESS",
                      "passenger_ids": &b.passengers[..n], "deadline": rfc3339_in(deadline_in_s)});
    let (status, w) = send(app, "POST", "/api/v1/waitlist", Some(&b.token), Some(body)).await;
    assert_eq!(status, 201, "{w}");
    assert_eq!(w["status"], "PENDING_PAYMENT");
    let id = w["waitlist_id"].as_str().unwrap().to_string();
    let (status, started) = send(
        app,
        "POST",
        &format!("/api/v1/waitlist/{id}/payments"),
        Some(&b.token),
        Some(json!({"channel": "mockpay"})),
    )
    .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["amount_fen"], w["amount_fen"]);
    let (status, _) = send(app, "POST", started["pay_url"].as_str().unwrap(), None, None).await;
    assert_eq!(status, 202);
    (id, w)
}

async fn wish_status(app: &TestApp, b: &Buyer, id: &str) -> Value {
    let (status, w) = send(app, "GET", &format!("/api/v1/waitlist/{id}"), Some(&b.token), None).await;
    assert_eq!(status, 200, "{w}");
    w
}

async fn wait_wish(app: &TestApp, b: &Buyer, id: &str, want: &str) -> Value {
    for _ in 0..300 {
        let w = wish_status(app, b, id).await;
        if w["status"] == want {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("wish {id} never reached {want}: {}", wish_status(app, b, id).await);
}

async fn refund(app: &TestApp, b: &Buyer, t: &Value) {
    let sn = t["ticket_sn"].as_str().unwrap();
    let (status, r) = send(app, "POST", &format!("/api/v1/tickets/{sn}/refund"), Some(&b.token), None).await;
    assert_eq!(status, 200, "{r}");
}

async fn waitlist(backend: Backend) {
    let app = spawn(backend).await;
    let alice = buyer(&app, "alice", 5).await;
    let tickets = buy_all(&app, &alice, "BUSINESS").await;
    assert!(tickets.len() >= 4, "G1 has at least 4 business places");
    let bob = buyer(&app, "bob", 2).await;
    let carol = buyer(&app, "carol", 1).await;

    // Bad wishes are refused with codes.
    let bad = json!({"run_id": g1(), "from": "VNP", "to": "AOH", "class": "BUSINESS",
                     "passenger_ids": &bob.passengers, "deadline": rfc3339_in(30 * 24 * 3600)});
    let (status, e) = send(&app, "POST", "/api/v1/waitlist", Some(&bob.token), Some(bad)).await;
    assert_eq!((status, e["code"].as_u64()), (400, Some(40002)), "a deadline after departure: {e}");
    let bad = json!({"run_id": g1(), "from": "VNP", "to": "AOH", "class": "BUSINESS",
                     "passenger_ids": &carol.passengers, "deadline": rfc3339_in(600)});
    let (status, e) = send(&app, "POST", "/api/v1/waitlist", Some(&bob.token), Some(bad)).await;
    assert_eq!((status, e["code"].as_u64()), (404, Some(40401)), "another user's passenger: {e}");

    // Bob's group of two joins first, Carol (one) second; both pay and wait.
    let (bob_wish, w) = join(&app, &bob, 2, 3600).await;
    let business_fare = tickets[0]["price_fen"].as_i64().unwrap();
    assert_eq!(w["amount_fen"].as_i64(), Some(2 * business_fare));
    let (carol_wish, _) = join(&app, &carol, 1, 3600).await;
    wait_wish(&app, &bob, &bob_wish, "WAITING").await;
    wait_wish(&app, &carol, &carol_wish, "WAITING").await;
    let (status, _) = send(&app, "GET", &format!("/api/v1/waitlist/{bob_wish}"), Some(&carol.token), None).await;
    assert_eq!(status, 404, "another user's wish");

    // One seat back: not enough for Bob's two, so Carol's fits and is fulfilled.
    refund(&app, &alice, &tickets[0]).await;
    let w = wait_wish(&app, &carol, &carol_wish, "FULFILLED").await;
    let order = wait_status(&app, &carol.token, w["order_no"].as_str().unwrap(), "TICKETED").await;
    assert_eq!(order["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(wish_status(&app, &bob, &bob_wish).await["status"], "WAITING", "a group waits for all its seats");
    // Two more back: Bob's two passengers travel together.
    refund(&app, &alice, &tickets[1]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wish_status(&app, &bob, &bob_wish).await["status"], "WAITING", "one seat is not two");
    refund(&app, &alice, &tickets[2]).await;
    let w = wait_wish(&app, &bob, &bob_wish, "FULFILLED").await;
    let order = wait_status(&app, &bob.token, w["order_no"].as_str().unwrap(), "TICKETED").await;
    assert_eq!(order["tickets"].as_array().unwrap().len(), 2, "all passengers or none");
    let (_, notes) = send(&app, "GET", "/api/v1/notifications", Some(&bob.token), None).await;
    assert_eq!(notes["items"][0]["kind"], "wish.fulfilled", "{notes}");
    let (status, e) = send(&app, "POST", &format!("/api/v1/waitlist/{bob_wish}/cancel"), Some(&bob.token), None).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40911)), "a fulfilled wish is not cancelled: {e}");
    assert_eq!(free(&app, "BUSINESS").await, 0, "every returned seat went to a wish");

    // A wish still waiting at its deadline is refunded in full.
    let dave = buyer(&app, "dave", 1).await;
    let (dave_wish, _) = join(&app, &dave, 1, 2).await;
    let w = wait_wish(&app, &dave, &dave_wish, "EXPIRED").await;
    let order_no = w["order_no"].as_str().unwrap().to_string();
    wait_until("the expired wish refunded", || async {
        let pays = app.state.store.payments_of(&order_no).await.unwrap();
        pays.iter().all(|p| p.status == chepiao_store::PaymentStatus::Refunded) && !pays.is_empty()
    })
    .await;
    let (_, notes) = send(&app, "GET", "/api/v1/notifications", Some(&dave.token), None).await;
    assert_eq!(notes["items"][0]["kind"], "wish.expired", "{notes}");

    // A cancelled wish is refunded too, and cancelling again answers the same.
    let erin = buyer(&app, "erin", 1).await;
    let (erin_wish, _) = join(&app, &erin, 1, 3600).await;
    wait_wish(&app, &erin, &erin_wish, "WAITING").await;
    let (status, w) =
        send(&app, "POST", &format!("/api/v1/waitlist/{erin_wish}/cancel"), Some(&erin.token), None).await;
    assert_eq!((status, &w["status"]), (200, &json!("CANCELLED")), "{w}");
    let (status, w) =
        send(&app, "POST", &format!("/api/v1/waitlist/{erin_wish}/cancel"), Some(&erin.token), None).await;
    assert_eq!((status, &w["status"]), (200, &json!("CANCELLED")), "{w}");
    // A seat back now goes to no one: Erin cancelled.
    refund(&app, &alice, &tickets[3]).await;
    wait_until("the seat back on sale", || async { free(&app, "BUSINESS").await == 1 }).await;
    wait_until("every payment settled", || async {
        app.state.store.payment_audit().await.unwrap().in_flight_total == 0
    })
    .await;
}

#[tokio::test]
async fn waitlist_sqlite() {
    waitlist(Backend::Sqlite).await;
}

#[tokio::test]
async fn waitlist_postgres() {
    if postgres_url().is_none() {
        return;
    }
    waitlist(Backend::Postgres).await;
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn gate(app: &TestApp, id: &str, key: &str) -> GateState {
    let mut g = GateState { server: format!("http://{}", app.addr), gate_id: id.into(), ..GateState::default() };
    let report = g.sync(&app.client, key, now_ms()).await.unwrap();
    assert_eq!(report.keys, 1);
    g
}

async fn offline_gate(backend: Backend) {
    let app = spawn(backend).await;
    let (alice, _, done) = ticketed(&app, "alice", 2).await;
    let (t0, t1) = (done["tickets"][0].clone(), done["tickets"][1].clone());
    let (qr0, qr1) = (t0["qr"].as_str().unwrap(), t1["qr"].as_str().unwrap());
    let mut g1 = gate(&app, "g1", "gate-secret").await;
    let mut g2 = gate(&app, "g2", "gate-two").await;
    assert!(GateState::default().sync(&app.client, "wrong", now_ms()).await.is_err());

    // Refunded after the gates' last sync: offline, they cannot know.
    refund(&app, &alice, &t0).await;
    assert!(matches!(g1.scan(qr0, "VNP", now_ms(), 300), Verdict::Accept(_)));
    assert!(matches!(g1.scan(qr1, "VNP", now_ms(), 300), Verdict::Accept(_)));
    let refused = |v: Verdict| match v {
        Verdict::Reject { code, .. } => code,
        Verdict::Accept(p) => panic!("accepted {}", p.sn),
    };
    assert_eq!(refused(g1.scan(qr1, "VNP", now_ms(), 300)), "ALREADY_SCANNED");
    assert_eq!(refused(g1.scan(qr1, "AOH", now_ms(), 300)), "WRONG_STATION");
    let forged = format!("{}x", &qr1[..qr1.len() - 1]);
    assert_eq!(refused(g1.scan(&forged, "VNP", now_ms(), 300)), "BAD_CODE");
    let far = now_ms() + 30 * 24 * 3600 * 1000;
    assert_eq!(refused(g1.scan(qr1, "VNP", far, 900)), "OUTSIDE_VALIDITY");
    // Gate 2's clock is 200 s behind the ticket's window: within its allowed drift.
    let payload = app.state.signer.verify(qr1).unwrap();
    let early = payload.nbf * 1000 - 200_000;
    assert_eq!(refused(g2.scan(qr1, "VNP", early, 100)), "OUTSIDE_VALIDITY", "100 s of drift is not enough");
    assert!(matches!(g2.scan(qr1, "VNP", early, 300), Verdict::Accept(_)));

    // The state file keeps the scans across a restart of the gate.
    let file = app.dir.join("gate1.json");
    g1.save(&file).unwrap();
    let mut g1 = GateState::load(&file).unwrap();
    assert_eq!(g1.scans.len(), 2);

    let report = g1.upload(&app.client, "gate-secret", now_ms()).await.unwrap();
    let results: Vec<(&str, &str)> =
        report.results.iter().map(|r| (r.ticket_sn.as_deref().unwrap(), r.result.as_str())).collect();
    let (sn0, sn1) = (t0["ticket_sn"].as_str().unwrap(), t1["ticket_sn"].as_str().unwrap());
    assert_eq!(results, [(sn0, "REVOKED"), (sn1, "ACCEPTED")], "{report:?}");
    assert!(g1.upload(&app.client, "gate-secret", now_ms()).await.unwrap().results.is_empty(), "uploaded once");
    // Gate 2 scanned the same ticket: the duplicate is reported with both scans.
    let report = g2.upload(&app.client, "gate-two", now_ms()).await.unwrap();
    let dup = &report.results[0];
    assert_eq!(dup.result, "DUPLICATE", "{report:?}");
    assert_eq!((dup.first.as_ref().unwrap().gate_id.as_str(), dup.this.gate_id.as_str()), ("g1", "g2"));
    assert_eq!(ticket(&app, &alice.token, sn1).await["status"], "CHECKED_IN");
    // An upload answered but lost is sent again: the same scan is not a duplicate of itself.
    let scan = json!({"qr": qr1, "station": "VNP", "scanned_at": g1.scans[1].scanned_at});
    let r = app
        .client
        .post(app.url("/api/v1/checkin/uploads"))
        .header("x-gate-key", "gate-secret")
        .json(&json!({"gate_id": "g1", "scans": [scan]}))
        .send()
        .await
        .unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["results"][0]["result"], "ACCEPTED", "{again}");
    let r = app
        .client
        .post(app.url("/api/v1/checkin/uploads"))
        .header("x-gate-key", "gate-two")
        .json(&json!({"gate_id": "g1", "scans": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "gate 2's key is not gate 1's");
    // Synced again, the gate refuses the refunded ticket on its own.
    let report = g1.sync(&app.client, "gate-secret", now_ms()).await.unwrap();
    assert_eq!(report.new_revocations, 1);
    let mut g3 = gate(&app, "g1", "gate-secret").await;
    assert_eq!(refused(g3.scan(qr0, "VNP", now_ms(), 300)), "REVOKED");
    let audit = app.state.store.audit_range(0, 10_000).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.entry.kind.as_str()).collect();
    assert!(kinds.contains(&"checkin.offline.duplicate") && kinds.contains(&"checkin.offline.revoked"), "{kinds:?}");
}

#[tokio::test]
async fn offline_gate_sqlite() {
    offline_gate(Backend::Sqlite).await;
}

#[tokio::test]
async fn offline_gate_postgres() {
    if postgres_url().is_none() {
        return;
    }
    offline_gate(Backend::Postgres).await;
}
