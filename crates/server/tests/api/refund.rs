//! Refunds over HTTP: the fee by tier, the seat back on sale exactly once (I3), the money back
//! through the channel, the ticket revoked (410 at the gate, listed for offline gates), and an
//! order refunded in part.

use std::time::Duration;

use chepiao_domain::SeatClass;
use chepiao_store::RefundStatus;

use crate::app::{Backend, GATE_KEY, REFUND_TIER, code, scan, spawn_after_sale, wait_until};

async fn refund_returns_the_seat_once_and_revokes_the_ticket(backend: Backend) {
    let app = spawn_after_sale(backend).await;
    let before = app.free_seats(SeatClass::Second).await;
    let (alice, done) = app.ticketed("alice", 2).await;
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 2);
    let tickets = done.tickets.unwrap();
    let (t0, sn) = (&tickets[0], tickets[0].ticket_sn.as_str());

    // Bob cannot refund Alice's ticket.
    let bob = app.buyer("bob", 1).await;
    assert_eq!(code(bob.api.refund(sn).await).0, 404);

    let r = alice.api.refund(sn).await.unwrap();
    let fee = chepiao_flow::refunds::refund_fee(t0.price_fen, 3600, &[REFUND_TIER]);
    assert_eq!((r.fee_fen, r.refund_fen), (fee, t0.price_fen - fee), "{r:?}");
    // Asking again answers the same refund.
    assert_eq!(alice.api.refund(sn).await.unwrap().refund_no, r.refund_no);
    // The seat goes back once the outbox event is handled, and only once.
    wait_until("the seat back", || async { app.free_seats(SeatClass::Second).await == before - 1 }).await;
    wait_until("the money back", || async {
        app.store().ticket_refund(&r.refund_no).await.unwrap().unwrap().status == RefundStatus::Done
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.free_seats(SeatClass::Second).await, before - 1, "returned exactly once");

    let o = alice.api.order(&done.order_no).await.unwrap();
    assert_eq!((o.status.as_str(), o.tickets.unwrap()[0].status.as_str()), ("PARTIALLY_REFUNDED", "REFUNDED"));
    // The gate refuses it, and offline gates learn of it.
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan(&t0.qr, "VNP")).await).0, 410);
    let page = app.api.revocations(GATE_KEY, 0).await.unwrap();
    assert_eq!(page.revoked[0].ticket_sn, sn);
    let later = app.api.revocations(GATE_KEY, page.next).await.unwrap();
    assert!(later.revoked.is_empty());
    assert_eq!(later.next, page.next);
    assert_eq!(code(alice.api.revocations("", 0).await).0, 401, "a passenger's token is not a gate key");

    // Refunding the last live ticket refunds the order.
    alice.api.refund(&tickets[1].ticket_sn).await.unwrap();
    assert_eq!(alice.api.order(&done.order_no).await.unwrap().status, "REFUNDED");
    assert_eq!(app.store().payment_audit().await.unwrap().in_flight_total, 0);
}

crate::on_both_backends!(
    refund_returns_the_seat_once_and_revokes_the_ticket,
    refund_returns_the_seat_once_and_revokes_the_ticket_sqlite,
    refund_returns_the_seat_once_and_revokes_the_ticket_postgres
);

#[tokio::test]
async fn a_checked_in_ticket_cannot_be_refunded() {
    let app = spawn_after_sale(Backend::Sqlite).await;
    let (alice, done) = app.ticketed("alice", 1).await;
    let t = &done.tickets.unwrap()[0];
    app.api.check_in(GATE_KEY, &scan(&t.qr, "VNP")).await.unwrap();
    assert_eq!(code(alice.api.refund(&t.ticket_sn).await), (409, 40909));
}
