//! After the sale, over HTTP on both backends: rebooking (the new seat held first; a failed
//! hold changes nothing; the fare difference charged or given back; the old ticket revoked),
//! the waitlist (wishes fulfilled in join order as refunds bring seats back, all passengers or
//! none; deadline refunds; cancel) and the offline gate (a ticket revoked after the gate's last
//! sync, and a ticket scanned at two gates, are both reported at upload).

use std::time::Duration;

use chepiao_api::checkin::{OfflineScan, ScanUpload};
use chepiao_api::gate::{GateState, Verdict};
use chepiao_api::orders::TicketOut;
use chepiao_api::tickets::RebookRequest;
use chepiao_api::waitlist::{WishOut, WishRequest};
use chepiao_domain::SeatClass;

use crate::app::{
    Backend, Buyer, GATE, GATE_KEY, GATE_TWO, GATE_TWO_KEY, TestApp, after_sale, code, g1, restart_app_with, scan,
    spawn_after_sale, wait_until,
};

/// Buy every place of `class` on G1 (VNP → AOH), ticketed: `b` first, then new buyers named
/// after it (a passenger travels on one journey at a time); returns the tickets.
async fn buy_all(app: &TestApp, b: &Buyer, class: SeatClass) -> Vec<TicketOut> {
    let mut tickets = Vec::new();
    for i in 0.. {
        let left = app.free_seats(class).await as usize;
        if left == 0 {
            break;
        }
        let more;
        let b = if i == 0 {
            b
        } else {
            more = app.buyer(&format!("{}-{i}", b.name), b.passengers.len()).await;
            &more
        };
        let done = app.buy(b, &format!("all-{class:?}-{i}"), class, left.min(b.passengers.len())).await;
        tickets.extend(done.tickets.unwrap());
    }
    tickets
}

fn rebook_to(class: SeatClass) -> RebookRequest {
    RebookRequest { run_id: g1(), class, seat_prefs: None, idempotency_key: None }
}

async fn rebook(backend: Backend) {
    let app = spawn_after_sale(backend).await;
    let (alice, done) = app.ticketed("alice", 1).await;
    let old = done.tickets.unwrap()[0].clone();
    let second_free = app.free_seats(SeatClass::Second).await;

    // Business class sold out: the rebook's hold fails and nothing changes.
    let filler = app.buyer("filler", 5).await;
    buy_all(&app, &filler, SeatClass::Business).await;
    assert_eq!(code(alice.api.rebook(&old.ticket_sn, &rebook_to(SeatClass::Business)).await), (409, 40903));
    assert_eq!(alice.api.ticket(&old.ticket_sn).await.unwrap().status, "ISSUED");
    assert_eq!(alice.api.orders(None, 1, 20).await.unwrap().total, 1, "no order was made");
    assert_eq!(app.free_seats(SeatClass::Second).await, second_free, "the old seat is still sold");

    // To first class: dearer, so the order costs the difference, paid like any order.
    let first_free = app.free_seats(SeatClass::First).await;
    let order = alice.api.rebook(&old.ticket_sn, &rebook_to(SeatClass::First)).await.unwrap();
    assert_eq!(order.status, 201);
    let first_price = order.body.legs[0].seats[0].price_fen;
    assert_eq!(order.body.amount_fen, first_price - old.price_fen, "{order:?}");
    assert_eq!(order.body.status, "PENDING_PAYMENT");
    let again = alice.api.rebook(&old.ticket_sn, &rebook_to(SeatClass::First)).await.unwrap();
    assert_eq!((again.status, &again.body.order_no), (200, &order.body.order_no), "a retry finds the same order");
    assert_eq!(alice.api.ticket(&old.ticket_sn).await.unwrap().status, "ISSUED", "valid until the new one is paid");
    let no = &order.body.order_no;
    app.pay(&alice, no).await;
    let new = app.wait_status(&alice, no, "TICKETED").await.tickets.unwrap()[0].clone();
    assert_eq!(alice.api.ticket(&old.ticket_sn).await.unwrap().status, "REBOOKED");
    assert_eq!(app.free_seats(SeatClass::First).await, first_free - 1);
    wait_until("the old seat back on sale", || async { app.free_seats(SeatClass::Second).await == second_free + 1 })
        .await;
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan(&old.qr, "VNP")).await).0, 410, "the old ticket is revoked");
    let page = app.api.revocations(GATE_KEY, 0).await.unwrap();
    assert!(page.revoked.iter().any(|r| r.ticket_sn == old.ticket_sn), "{page:?}");
    assert_eq!(code(alice.api.refund(&old.ticket_sn).await), (409, 40909), "a rebooked ticket is not refundable");
    assert_eq!(code(alice.api.rebook(&old.ticket_sn, &rebook_to(SeatClass::Second)).await), (409, 40910));

    // A ticket a rebook issued is not rebooked again (one 改签 per ticket, as on 12306).
    let once = code(alice.api.rebook(&new.ticket_sn, &rebook_to(SeatClass::Second)).await);
    assert_eq!(once, (409, 40916));
    // The new ticket was paid in two parts (the first fare, then the difference to first
    // class): its refund is split across both payments, and it is revoked.
    let r = alice.api.refund(&new.ticket_sn).await.unwrap();
    wait_until("the split refund done", || async {
        app.store().ticket_refund(&r.refund_no).await.unwrap().unwrap().status == chepiao_store::RefundStatus::Done
    })
    .await;
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan(&new.qr, "VNP")).await).0, 410);
    wait_until("the first-class seat back", || async { app.free_seats(SeatClass::First).await == first_free }).await;

    // To a cheaper class: nothing to pay, settled at once; the difference comes back.
    let bob = app.buyer("bob", 1).await;
    let first = app.buy(&bob, "bob-first", SeatClass::First, 1).await.tickets.unwrap()[0].clone();
    let order = bob.api.rebook(&first.ticket_sn, &rebook_to(SeatClass::Second)).await.unwrap();
    assert_eq!(order.status, 201);
    assert_eq!((order.body.amount_fen, order.body.status.as_str()), (0, "PAID"), "{order:?}");
    let no = &order.body.order_no;
    app.wait_status(&bob, no, "TICKETED").await;
    assert_eq!(bob.api.ticket(&first.ticket_sn).await.unwrap().status, "REBOOKED");
    wait_until("bob's first-class seat back", || async { app.free_seats(SeatClass::First).await == first_free }).await;
    assert_eq!(app.store().rebooked_to(&first.ticket_sn).await.unwrap().as_deref(), Some(no.as_str()));
    wait_until("every payment settled", || async { app.store().payment_audit().await.unwrap().in_flight_total == 0 })
        .await;
}

crate::on_both_backends!(rebook, rebook_sqlite, rebook_postgres);

fn rfc3339_in(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339()
}

fn wish(b: &Buyer, n: usize, deadline_in_s: i64) -> WishRequest {
    WishRequest {
        run_id: g1(),
        from: "VNP".into(),
        to: "AOH".into(),
        class: SeatClass::Business,
        passenger_ids: b.passengers[..n].to_vec(),
        deadline: rfc3339_in(deadline_in_s),
        idempotency_key: None,
    }
}

/// Join the waitlist with `n` of `b`'s passengers, and pay the wish.
async fn join(app: &TestApp, b: &Buyer, n: usize, deadline_in_s: i64) -> (String, WishOut) {
    let w = b.api.join_waitlist(&wish(b, n, deadline_in_s)).await.unwrap();
    assert_eq!((w.status, w.body.status.as_str()), (201, "PENDING_PAYMENT"));
    let started = b.api.pay_wish(&w.body.waitlist_id, "mockpay").await.unwrap();
    assert_eq!(started.amount_fen, w.body.amount_fen);
    app.api.press_pay(&started.pay_url, true).await.unwrap();
    (w.body.waitlist_id.clone(), w.body)
}

async fn wait_wish(b: &Buyer, id: &str, want: &str) -> WishOut {
    for _ in 0..300 {
        let w = b.api.wish(id).await.unwrap();
        if w.status == want {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("wish {id} never reached {want}: {:?}", b.api.wish(id).await);
}

async fn waitlist(backend: Backend) {
    let app = spawn_after_sale(backend).await;
    let alice = app.buyer("alice", 5).await;
    let tickets = buy_all(&app, &alice, SeatClass::Business).await;
    assert!(tickets.len() >= 4, "G1 has at least 4 business places");
    let bob = app.buyer("bob", 2).await;
    let carol = app.buyer("carol", 1).await;

    // Bad wishes are refused with codes.
    assert_eq!(code(bob.api.join_waitlist(&wish(&bob, 2, 30 * 24 * 3600)).await), (400, 40002), "after departure");
    let theirs = WishRequest { passenger_ids: carol.passengers.clone(), ..wish(&bob, 2, 600) };
    assert_eq!(code(bob.api.join_waitlist(&theirs).await), (404, 40401), "another user's passenger");

    // Bob's group of two joins first, Carol (one) second; both pay and wait.
    let (bob_wish, w) = join(&app, &bob, 2, 3600).await;
    assert_eq!(w.amount_fen, 2 * tickets[0].price_fen);
    let (carol_wish, _) = join(&app, &carol, 1, 3600).await;
    wait_wish(&bob, &bob_wish, "WAITING").await;
    wait_wish(&carol, &carol_wish, "WAITING").await;
    assert_eq!(code(carol.api.wish(&bob_wish).await).0, 404, "another user's wish");

    // One seat back: not enough for Bob's two, so Carol's fits and is fulfilled.
    alice.api.refund(&tickets[0].ticket_sn).await.unwrap();
    let w = wait_wish(&carol, &carol_wish, "FULFILLED").await;
    assert_eq!(app.wait_status(&carol, &w.order_no, "TICKETED").await.tickets.unwrap().len(), 1);
    assert_eq!(bob.api.wish(&bob_wish).await.unwrap().status, "WAITING", "a group waits for all its seats");
    // Two more back: Bob's two passengers travel together.
    alice.api.refund(&tickets[1].ticket_sn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bob.api.wish(&bob_wish).await.unwrap().status, "WAITING", "one seat is not two");
    alice.api.refund(&tickets[2].ticket_sn).await.unwrap();
    let w = wait_wish(&bob, &bob_wish, "FULFILLED").await;
    let order = app.wait_status(&bob, &w.order_no, "TICKETED").await;
    assert_eq!(order.tickets.unwrap().len(), 2, "all passengers or none");
    assert_eq!(bob.api.notifications().await.unwrap().items[0].kind, "wish.fulfilled");
    assert_eq!(code(bob.api.cancel_wish(&bob_wish).await), (409, 40911), "a fulfilled wish is not cancelled");
    assert_eq!(app.free_seats(SeatClass::Business).await, 0, "every returned seat went to a wish");

    // A wish still waiting at its deadline is refunded in full.
    let dave = app.buyer("dave", 1).await;
    let (dave_wish, _) = join(&app, &dave, 1, 2).await;
    let w = wait_wish(&dave, &dave_wish, "EXPIRED").await;
    wait_until("the expired wish refunded", || async {
        let pays = app.store().payments_of(&w.order_no).await.unwrap();
        pays.iter().all(|p| p.status == chepiao_store::PaymentStatus::Refunded) && !pays.is_empty()
    })
    .await;
    assert_eq!(dave.api.notifications().await.unwrap().items[0].kind, "wish.expired");

    // A cancelled wish is refunded too, and cancelling again answers the same.
    let erin = app.buyer("erin", 1).await;
    let (erin_wish, _) = join(&app, &erin, 1, 3600).await;
    wait_wish(&erin, &erin_wish, "WAITING").await;
    assert_eq!(erin.api.cancel_wish(&erin_wish).await.unwrap().status, "CANCELLED");
    assert_eq!(erin.api.cancel_wish(&erin_wish).await.unwrap().status, "CANCELLED");
    // A seat back now goes to no one: Erin cancelled.
    alice.api.refund(&tickets[3].ticket_sn).await.unwrap();
    wait_until("the seat back on sale", || async { app.free_seats(SeatClass::Business).await == 1 }).await;
    wait_until("every payment settled", || async { app.store().payment_audit().await.unwrap().in_flight_total == 0 })
        .await;
}

crate::on_both_backends!(waitlist, waitlist_sqlite, waitlist_postgres);

/// A wish on a run that a sale guards is matched only once the sale opens: a wish placed before
/// the run was put on sale (the operator added the sale later) does not get past the waiting
/// room's opening.
#[tokio::test]
async fn wishes_on_a_sales_run_wait_for_its_opening() {
    let app = spawn_after_sale(Backend::Sqlite).await;
    let alice = app.buyer("alice", 5).await;
    let tickets = buy_all(&app, &alice, SeatClass::Business).await;
    let bob = app.buyer("bob", 1).await;
    let (bob_wish, _) = join(&app, &bob, 1, 3 * 3600).await;
    wait_wish(&bob, &bob_wish, "WAITING").await;
    // The operator puts G1 on sale, opening in an hour, and restarts the server.
    let sale = chepiao_server::hotsale::room::SaleConfig {
        sale_id: "later".into(),
        opens_at: (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        run_ids: vec![g1()],
        admit_per_s: 100,
    };
    let app = restart_app_with(app.stop().await, |c| {
        after_sale(c);
        c.sales = vec![sale];
    })
    .await;
    let (alice, bob) = (app.again(&alice).await, app.again(&bob).await);
    alice.api.refund(&tickets[0].ticket_sn).await.unwrap();
    wait_until("the seat back on sale", || async { app.free_seats(SeatClass::Business).await == 1 }).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await; // rounds of the matcher go by
    assert_eq!(bob.api.wish(&bob_wish).await.unwrap().status, "WAITING", "matched before the sale opened");
    app.advance(Duration::from_secs(3_601));
    wait_wish(&bob, &bob_wish, "FULFILLED").await;
}

/// An offline gate's own clock (a device's, not the server's).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn gate(app: &TestApp, id: &str, key: &str) -> GateState {
    let mut g = GateState { server: app.api.base().to_string(), gate_id: id.into(), ..GateState::default() };
    let report = g.sync(&http(), key, now_ms()).await.unwrap();
    assert_eq!(report.keys, 1);
    g
}

fn refused(v: Verdict) -> &'static str {
    match v {
        Verdict::Reject { code, .. } => code,
        Verdict::Accept(p) => panic!("accepted {}", p.sn),
    }
}

async fn offline_gate(backend: Backend) {
    let app = spawn_after_sale(backend).await;
    let (alice, done) = app.ticketed("alice", 2).await;
    let tickets = done.tickets.unwrap();
    let (t0, t1) = (&tickets[0], &tickets[1]);
    let (qr0, qr1) = (t0.qr.as_str(), t1.qr.as_str());
    let mut g1 = gate(&app, GATE, GATE_KEY).await;
    let mut g2 = gate(&app, GATE_TWO, GATE_TWO_KEY).await;
    let stranger = GateState { server: app.api.base().to_string(), ..GateState::default() };
    assert!(stranger.clone().sync(&http(), "wrong", now_ms()).await.is_err());

    // Refunded after the gates' last sync: offline, they cannot know.
    alice.api.refund(&t0.ticket_sn).await.unwrap();
    assert!(matches!(g1.scan(qr0, "VNP", now_ms(), 300), Verdict::Accept(_)));
    assert!(matches!(g1.scan(qr1, "VNP", now_ms(), 300), Verdict::Accept(_)));
    assert_eq!(refused(g1.scan(qr1, "VNP", now_ms(), 300)), "ALREADY_SCANNED");
    assert_eq!(refused(g1.scan(qr1, "AOH", now_ms(), 300)), "WRONG_STATION");
    let forged = format!("{}x", &qr1[..qr1.len() - 1]);
    assert_eq!(refused(g1.scan(&forged, "VNP", now_ms(), 300)), "BAD_CODE");
    let far = now_ms() + 30 * 24 * 3600 * 1000;
    assert_eq!(refused(g1.scan(qr1, "VNP", far, 900)), "OUTSIDE_VALIDITY");
    // Gate 2's clock is 200 s behind the ticket's window: within its allowed drift.
    let payload = app.state.flow.signer.verify(qr1).unwrap();
    let early = payload.nbf * 1000 - 200_000;
    assert_eq!(refused(g2.scan(qr1, "VNP", early, 100)), "OUTSIDE_VALIDITY", "100 s of drift is not enough");
    assert!(matches!(g2.scan(qr1, "VNP", early, 300), Verdict::Accept(_)));

    // The state file keeps the scans across a restart of the gate.
    let file = app.dir.join("gate1.json");
    g1.save(&file).unwrap();
    let mut g1 = GateState::load(&file).unwrap();
    assert_eq!(g1.scans.len(), 2);

    let report = g1.upload(&http(), GATE_KEY, now_ms()).await.unwrap();
    let results: Vec<(&str, &str)> =
        report.results.iter().map(|r| (r.ticket_sn.as_deref().unwrap(), r.result.as_str())).collect();
    assert_eq!(results, [(t0.ticket_sn.as_str(), "REVOKED"), (t1.ticket_sn.as_str(), "ACCEPTED")], "{report:?}");
    assert!(g1.upload(&http(), GATE_KEY, now_ms()).await.unwrap().results.is_empty(), "uploaded once");
    // Gate 2 scanned the same ticket: the duplicate is reported with both scans.
    let report = g2.upload(&http(), GATE_TWO_KEY, now_ms()).await.unwrap();
    let dup = &report.results[0];
    assert_eq!(dup.result, "DUPLICATE", "{report:?}");
    assert_eq!((dup.first.as_ref().unwrap().gate_id.as_str(), dup.this.gate_id.as_str()), (GATE, GATE_TWO));
    assert_eq!(alice.api.ticket(&t1.ticket_sn).await.unwrap().status, "CHECKED_IN");
    // An upload answered but lost is sent again: the same scan is not a duplicate of itself.
    let resent = OfflineScan { qr: qr1.into(), station: "VNP".into(), scanned_at: g1.scans[1].scanned_at.clone() };
    let upload = ScanUpload { gate_id: GATE.into(), scans: vec![resent] };
    assert_eq!(app.api.upload_scans(GATE_KEY, &upload).await.unwrap().results[0].result, "ACCEPTED");
    let empty = ScanUpload { gate_id: GATE.into(), scans: vec![] };
    assert_eq!(code(app.api.upload_scans(GATE_TWO_KEY, &empty).await).0, 401, "gate 2's key is not gate 1's");
    // Synced again, the gate refuses the refunded ticket on its own.
    assert_eq!(g1.sync(&http(), GATE_KEY, now_ms()).await.unwrap().new_revocations, 1);
    let mut g3 = gate(&app, GATE, GATE_KEY).await;
    assert_eq!(refused(g3.scan(qr0, "VNP", now_ms(), 300)), "REVOKED");
    let audit = app.store().audit_range(0, 10_000).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.entry.kind.as_str()).collect();
    assert!(kinds.contains(&"checkin.offline.duplicate") && kinds.contains(&"checkin.offline.revoked"), "{kinds:?}");
}

crate::on_both_backends!(offline_gate, offline_gate_sqlite, offline_gate_postgres);
