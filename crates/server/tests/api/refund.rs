//! Refunds over HTTP: the fee by tier, the seat back on sale exactly once (I3), the money back
//! through the channel, the ticket revoked (410 at the gate, listed for offline gates), and an
//! order refunded in part.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, TestApp, postgres_url, spawn_app_with};
use crate::orders::{buyer, g1, send, ticketed};

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.gates = vec![chepiao_server::secrets::Secret("g1=gate-secret".into())];
        c.ticket_valid_before_s = 3 * 24 * 3600;
        // One flat tier keeps the expected fee independent of the hour the test runs at.
        c.refund_fee_tiers = vec![chepiao_server::config::FeeTier { hours_before: 0, percent: 10 }];
    })
    .await
}

async fn free_seats(app: &TestApp) -> u64 {
    let path = format!("/api/v1/runs/{}/seats?from=VNP&to=AOH&class=SECOND", g1());
    send(app, "GET", &path, None, None).await.1["free"].as_u64().unwrap()
}

async fn refund_returns_the_seat_once_and_revokes_the_ticket(backend: Backend) {
    let app = spawn(backend).await;
    let before = free_seats(&app).await;
    let (alice, no, done) = ticketed(&app, "alice", 2).await;
    assert_eq!(free_seats(&app).await, before - 2);
    let t0 = done["tickets"][0].clone();
    let sn = t0["ticket_sn"].as_str().unwrap();
    let price = t0["price_fen"].as_i64().unwrap();

    // Bob cannot refund Alice's ticket.
    let bob = buyer(&app, "bob", 1).await;
    let (status, _) = send(&app, "POST", &format!("/api/v1/tickets/{sn}/refund"), Some(&bob.token), None).await;
    assert_eq!(status, 404);

    let (status, r) = send(&app, "POST", &format!("/api/v1/tickets/{sn}/refund"), Some(&alice.token), None).await;
    assert_eq!(status, 200, "{r}");
    let fee = chepiao_server::flow::refunds::refund_fee(
        price,
        3600,
        &[chepiao_server::config::FeeTier { hours_before: 0, percent: 10 }],
    );
    assert_eq!((r["fee_fen"].as_i64(), r["refund_fen"].as_i64()), (Some(fee), Some(price - fee)), "{r}");
    // Asking again answers the same refund.
    let (status, again) = send(&app, "POST", &format!("/api/v1/tickets/{sn}/refund"), Some(&alice.token), None).await;
    assert_eq!((status, again["refund_no"].clone()), (200, r["refund_no"].clone()));
    // The seat goes back once the outbox event is handled, and only once.
    for _ in 0..200 {
        if free_seats(&app).await == before - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(free_seats(&app).await, before - 1);
    let refund_no = r["refund_no"].as_str().unwrap();
    for _ in 0..200 {
        if app.state.store.ticket_refund(refund_no).await.unwrap().unwrap().status == chepiao_store::RefundStatus::Done
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.state.store.ticket_refund(refund_no).await.unwrap().unwrap().status,
        chepiao_store::RefundStatus::Done,
        "money back"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(free_seats(&app).await, before - 1, "returned exactly once");

    let (_, o) = send(&app, "GET", &format!("/api/v1/orders/{no}"), Some(&alice.token), None).await;
    assert_eq!(o["status"], "PARTIALLY_REFUNDED");
    assert_eq!(o["tickets"][0]["status"], "REFUNDED");
    // The gate refuses it, and offline gates learn of it.
    let r = app
        .client
        .post(app.url("/api/v1/checkin"))
        .header("x-gate-key", "gate-secret")
        .json(&json!({"qr": t0["qr"], "station": "VNP", "gate_id": "g1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410);
    let r = app
        .client
        .get(app.url("/api/v1/checkin/revocations?since=0"))
        .header("x-gate-key", "gate-secret")
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["revoked"][0]["ticket_sn"], sn);
    let next = page["next"].as_i64().unwrap();
    let r = app
        .client
        .get(app.url(&format!("/api/v1/checkin/revocations?since={next}")))
        .header("x-gate-key", "gate-secret")
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert!(page["revoked"].as_array().unwrap().is_empty());
    assert_eq!(page["next"], next);
    let (status, _) = send(&app, "GET", "/api/v1/checkin/revocations?since=0", Some(&alice.token), None).await;
    assert_eq!(status, 401, "a passenger's token is not a gate key");

    // Refunding the last live ticket refunds the order.
    let sn1 = done["tickets"][1]["ticket_sn"].as_str().unwrap();
    let (status, e) = send(&app, "POST", &format!("/api/v1/tickets/{sn1}/refund"), Some(&alice.token), None).await;
    assert_eq!(status, 200, "{e}");
    let (_, o) = send(&app, "GET", &format!("/api/v1/orders/{no}"), Some(&alice.token), None).await;
    assert_eq!(o["status"], "REFUNDED");
    let audit = app.state.store.payment_audit().await.unwrap();
    assert_eq!(audit.in_flight_total, 0);
}

#[tokio::test]
async fn refund_returns_the_seat_once_and_revokes_the_ticket_sqlite() {
    refund_returns_the_seat_once_and_revokes_the_ticket(Backend::Sqlite).await;
}

#[tokio::test]
async fn refund_returns_the_seat_once_and_revokes_the_ticket_postgres() {
    if postgres_url().is_none() {
        return;
    }
    refund_returns_the_seat_once_and_revokes_the_ticket(Backend::Postgres).await;
}

#[tokio::test]
async fn a_checked_in_ticket_cannot_be_refunded() {
    let app = spawn(Backend::Sqlite).await;
    let (alice, _, done) = ticketed(&app, "alice", 1).await;
    let t = &done["tickets"][0];
    let r = app
        .client
        .post(app.url("/api/v1/checkin"))
        .header("x-gate-key", "gate-secret")
        .json(&json!({"qr": t["qr"], "station": "VNP", "gate_id": "g1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let sn = t["ticket_sn"].as_str().unwrap();
    let (status, e) = send(&app, "POST", &format!("/api/v1/tickets/{sn}/refund"), Some(&alice.token), None).await;
    assert_eq!((status, e["code"].as_u64()), (409, Some(40909)), "{e}");
}
