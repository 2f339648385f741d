//! The backend-agnostic store suite: one check per function, each on a fresh, empty store.
//!
//! A backend's test file calls [`store_suite!`] with a function that makes a fresh store (or
//! says why it cannot and returns None: then every check prints that it was skipped), and gets
//! one `#[tokio::test]` per check. A failing check panics with the backend's name in the message.

use chepiao_domain::network::{NetworkData, Station, Stop, Train};
use chepiao_domain::{RunId, ServiceDate};

use crate::*;

/// One `#[tokio::test]` per check of the suite, each on a store made by `$make` (an async fn
/// returning `Option<impl Deref<Target = dyn Store>>`; None skips the check).
#[macro_export]
macro_rules! store_suite {
    ($make:path) => {
        $crate::store_suite!(@each $make;
            empty_store_has_no_network,
            network_round_trips_and_reimport_is_idempotent,
            runs_are_created_once_per_train_and_date,
            run_status_changes_stick,
            window_limits_are_enforced,
            users_are_unique_by_name,
            passengers_belong_to_their_user,
            orders_are_idempotent_per_user_and_key,
            orders_page_newest_first,
            orders_move_only_along_the_state_machine,
            notifies_pay_once_refuse_replays_and_refund_late_payments,
            a_notify_batch_is_decided_in_order,
            the_outbox_hands_out_oldest_first,
            failing_events_back_off_and_go_dead_alone,
            orders_record_their_holds,
            a_database_belongs_to_one_engine,
            a_duties_lease_passes_to_another_node_when_its_holder_is_not_seen,
            tickets_issue_once_and_check_in_once,
            ticket_refunds_revoke_once,
            unticketable_orders_are_refunded,
            wishes_are_fulfilled_or_ended_once,
            rebooks_swap_a_ticket_once,
            free_orders_settle_once,
            audit_chain_verifies);
    };
    (@each $make:path; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some(store) = $make().await else { return };
                $crate::testsuite::$check(&*store).await;
            }
        )*
    };
}

fn station(code: &str, name: &str, city: &str) -> Station {
    Station {
        telecode: code.parse().unwrap(),
        name: name.into(),
        pinyin: format!("py{code}"),
        initials: code.to_lowercase(),
        city: city.into(),
        country: (code == "YTM").then(|| "老挝".to_string()),
    }
}

fn stop(code: &str, arrive_min: Option<u32>, depart_min: Option<u32>, km: u32) -> Stop {
    Stop { telecode: code.parse().unwrap(), arrive_min, depart_min, km }
}

/// A small network: two trains over four stations, one overnight.
pub fn sample_network() -> NetworkData {
    NetworkData {
        stations: vec![
            station("VNP", "北京南", "北京"),
            station("JGK", "济南西", "济南"),
            station("AOH", "上海虹桥", "上海"),
            station("YTM", "万象", "万象"),
        ],
        trains: vec![
            Train {
                code: "G1".parse().unwrap(),
                stops: vec![
                    stop("VNP", None, Some(540), 0),
                    stop("JGK", Some(622), Some(624), 341),
                    stop("AOH", Some(808), None, 1117),
                ],
            },
            Train {
                code: "Z9".parse().unwrap(),
                stops: vec![stop("AOH", None, Some(1380), 0), stop("VNP", Some(1440 + 420), None, 1200)],
            },
        ],
    }
}

fn date(s: &str) -> ServiceDate {
    s.parse().unwrap()
}

/// A new user named `name`.
async fn user(store: &dyn Store, name: &str) -> i64 {
    store.create_user(name, "$argon2id$x", 1).await.unwrap().expect("a fresh name")
}

fn new_order(user_id: i64, no: &str, key: &str, pay_before_ms: i64) -> NewOrder {
    NewOrder {
        order_no: no.into(),
        user_id,
        idem_key: key.into(),
        request_hash: vec![7; 32],
        amount_fen: 55_300,
        pay_before_ms,
        created_at_ms: pay_before_ms - 600_000,
        legs_json: "[]".into(),
        holds: Vec::new(),
        kind: OrderKind::Order,
        source: "api".into(),
        trips: Vec::new(),
        lines: Vec::new(),
    }
}

/// Every outbox row not dead, whenever due.
async fn pending(store: &dyn Store, limit: u32) -> Result<Vec<OutboxRow>> {
    store.outbox_due(i64::MAX, limit).await
}

/// A new unpaid order `no` with a far-off pay window.
async fn order(store: &dyn Store, user_id: i64, no: &str) -> OrderRecord {
    match store.create_order(&new_order(user_id, no, &format!("key-{no}"), 9_000_000_000_000)).await.unwrap() {
        CreateOrder::Created(o) => o,
        other => panic!("{}: {other:?}", store.backend()),
    }
}

fn notify(payment_no: &str, amount_fen: i64, nonce: &str, at_ms: i64) -> Notify {
    Notify {
        channel: "mockpay".into(),
        payment_no: payment_no.into(),
        amount_fen,
        success: true,
        txn_id: format!("T-{nonce}"),
        nonce: nonce.into(),
        raw: format!("{{\"nonce\":\"{nonce}\"}}"),
        received_at_ms: at_ms,
    }
}

fn new_payment(payment_no: &str, order_no: &str) -> NewPayment {
    NewPayment {
        payment_no: payment_no.into(),
        order_no: order_no.into(),
        channel: "mockpay".into(),
        amount_fen: 55_300,
        created_at_ms: 10,
    }
}

/// A paid order `no` (paid by payment `P<no>`).
async fn paid_order(store: &dyn Store, user_id: i64, no: &str) -> OrderRecord {
    order(store, user_id, no).await;
    store.create_payment(&new_payment(&format!("P{no}"), no)).await.unwrap();
    let paid = store.apply_notify(&notify(&format!("P{no}"), 55_300, &format!("n-{no}"), 60)).await.unwrap();
    assert_eq!(paid, NotifyOutcome::Paid { order_no: no.into() }, "{}", store.backend());
    store.order(no).await.unwrap().unwrap()
}

fn ticket(order: &OrderRecord, i: i64) -> TicketRecord {
    TicketRecord {
        ticket_sn: format!("{}{i}", order.order_no),
        order_no: order.order_no.clone(),
        user_id: order.user_id,
        leg: 0,
        passenger_idx: i,
        passenger_id: 1,
        run_id: "G1-20261122".into(),
        from_station: "VNP".into(),
        to_station: "AOH".into(),
        class: "SECOND".into(),
        coach: 5,
        seat: format!("0{i}A"),
        price_fen: 55_300,
        status: TicketStatus::Issued,
        qr: "qr".into(),
        issued_at_ms: 40,
    }
}

/// A ticketed order `no` with `n` tickets.
async fn ticketed_order(store: &dyn Store, user_id: i64, no: &str, n: i64) -> (OrderRecord, Vec<TicketRecord>) {
    let order = paid_order(store, user_id, no).await;
    let tickets: Vec<TicketRecord> = (0..n).map(|i| ticket(&order, i)).collect();
    let batch = [OrderTickets { order_no: no.into(), tickets: tickets.clone() }];
    assert_eq!(store.issue_tickets(&batch, 40).await.unwrap(), [no.to_string()], "{}", store.backend());
    (store.order(no).await.unwrap().unwrap(), tickets)
}

fn refund_of(t: &TicketRecord, refund_no: &str) -> TicketRefundRecord {
    TicketRefundRecord {
        refund_no: refund_no.into(),
        ticket_sn: t.ticket_sn.clone(),
        order_no: t.order_no.clone(),
        payment_no: format!("P{}", t.order_no),
        refund_fen: 50_000,
        fee_fen: 5_300,
        status: RefundStatus::Pending,
        created_at_ms: 48,
    }
}

fn scan(ticket_sn: &str, gate_id: &str, at_ms: i64) -> Scan {
    Scan { ticket_sn: ticket_sn.into(), gate_id: gate_id.into(), station: "VNP".into(), at_ms }
}

fn events(rows: &[OutboxRow]) -> Vec<OutboxEvent> {
    rows.iter().map(|r| r.event.clone()).collect()
}

pub async fn empty_store_has_no_network(store: &dyn Store) {
    store.ping().await.unwrap();
    let net = store.load_network().await.unwrap();
    assert!(net.stations.is_empty() && net.trains.is_empty(), "{}: fresh store not empty", store.backend());
}

pub async fn network_round_trips_and_reimport_is_idempotent(store: &dyn Store) {
    let data = sample_network();
    store.save_network(&data).await.unwrap();
    store.save_network(&data).await.unwrap();
    let mut loaded = store.load_network().await.unwrap();
    loaded.stations.sort_by_key(|s| s.telecode);
    loaded.trains.sort_by(|a, b| a.code.cmp(&b.code));
    let mut expected = data.clone();
    expected.stations.sort_by_key(|s| s.telecode);
    expected.trains.sort_by(|a, b| a.code.cmp(&b.code));
    assert_eq!(loaded, expected, "{}: network did not round-trip", store.backend());

    // A re-import with a changed timetable replaces the train's stops.
    let mut changed = data;
    changed.trains[0].stops.remove(1);
    changed.stations[0].pinyin = "beijingnan".into();
    store.save_network(&changed).await.unwrap();
    let loaded = store.load_network().await.unwrap();
    let g1 = loaded.trains.iter().find(|t| t.code.as_str() == "G1").unwrap();
    assert_eq!(g1.stops.len(), 2, "{}: stops not replaced", store.backend());
    let vnp = loaded.stations.iter().find(|s| s.telecode.as_str() == "VNP").unwrap();
    assert_eq!(vnp.pinyin, "beijingnan");
}

pub async fn runs_are_created_once_per_train_and_date(store: &dyn Store) {
    store.save_network(&sample_network()).await.unwrap();
    let created = store.ensure_runs(date("2026-11-21"), date("2026-11-23")).await.unwrap();
    assert_eq!(created, 6, "{}: 2 trains x 3 days", store.backend());
    let again = store.ensure_runs(date("2026-11-22"), date("2026-11-24")).await.unwrap();
    assert_eq!(again, 2, "{}: only the new day is created", store.backend());
    let mut runs = store.runs_between(date("2026-11-22"), date("2026-11-23")).await.unwrap();
    runs.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let ids: Vec<String> = runs.iter().map(|r| r.run_id.to_string()).collect();
    assert_eq!(ids, ["G1-20261122", "G1-20261123", "Z9-20261122", "Z9-20261123"], "{}", store.backend());
    assert!(runs.iter().all(|r| r.status == RunStatus::Scheduled));
}

pub async fn run_status_changes_stick(store: &dyn Store) {
    store.save_network(&sample_network()).await.unwrap();
    store.ensure_runs(date("2026-11-21"), date("2026-11-23")).await.unwrap();
    let run: RunId = "G1-20261122".parse().unwrap();
    assert!(store.set_run_status(&run, RunStatus::Cancelled).await.unwrap());
    // ensure_runs must not put a cancelled run back on sale.
    store.ensure_runs(date("2026-11-21"), date("2026-11-24")).await.unwrap();
    let runs = store.runs_between(date("2026-11-22"), date("2026-11-22")).await.unwrap();
    let g1 = runs.iter().find(|r| r.run_id == run).unwrap();
    assert_eq!(g1.status, RunStatus::Cancelled, "{}", store.backend());
    let missing: RunId = "G1-20300101".parse().unwrap();
    assert!(!store.set_run_status(&missing, RunStatus::Cancelled).await.unwrap());
}

pub async fn window_limits_are_enforced(store: &dyn Store) {
    let backwards = store.ensure_runs(date("2026-11-24"), date("2026-11-21")).await;
    assert!(matches!(backwards, Err(StoreError::Limit(_))), "{}", store.backend());
    let huge = store.runs_between(date("2026-01-01"), date("2030-01-01")).await;
    assert!(matches!(huge, Err(StoreError::Limit(_))), "{}", store.backend());
}

pub async fn users_are_unique_by_name(store: &dyn Store) {
    let id = store.create_user("alice", "$argon2id$x", 1).await.unwrap().expect("created");
    assert_eq!(store.create_user("alice", "$argon2id$y", 2).await.unwrap(), None, "{}", store.backend());
    let u = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((u.id, u.password_hash.as_str()), (id, "$argon2id$x"));
    assert_eq!(store.user_by_name("bob").await.unwrap(), None);
}

pub async fn passengers_belong_to_their_user(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let p = |user_id, index: u8| NewPassenger {
        user_id,
        name_enc: vec![1, 2, 3, index],
        id_type: "ID_CARD".into(),
        id_no_enc: vec![4, 5, 6, index],
        id_no_index: vec![index; 32],
        masked: format!("张* {index}"),
        created_at_ms: 10,
    };
    let AddPassenger::Added(first) = store.add_passenger(&p(alice, 1), 2).await.unwrap() else { panic!() };
    assert_eq!(store.add_passenger(&p(alice, 1), 2).await.unwrap(), AddPassenger::Duplicate, "{}", store.backend());
    // The same person may be on another user's list.
    assert!(matches!(store.add_passenger(&p(bob, 1), 2).await.unwrap(), AddPassenger::Added(_)));
    assert!(matches!(store.add_passenger(&p(alice, 2), 2).await.unwrap(), AddPassenger::Added(_)));
    assert_eq!(store.add_passenger(&p(alice, 3), 2).await.unwrap(), AddPassenger::TooMany, "{}", store.backend());
    let list = store.passengers(alice).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!((list[0].id, list[0].name_enc.as_slice(), list[0].masked.as_str()), (first, &[1, 2, 3, 1][..], "张* 1"));
    assert!(list.iter().all(|x| x.user_id == alice));
    assert_eq!(store.passengers(bob).await.unwrap().len(), 1);
}

pub async fn orders_are_idempotent_per_user_and_key(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let CreateOrder::Created(first) = store.create_order(&new_order(alice, "E1", "k1", 1_000_000)).await.unwrap()
    else {
        panic!("{name}: first order not created")
    };
    assert_eq!((first.status, first.version), (OrderStatus::PendingPayment, 0));
    // The same key again, even with another order number: the first order.
    let again = store.create_order(&new_order(alice, "E2", "k1", 2_000_000)).await.unwrap();
    assert_eq!(again, CreateOrder::Existing(first.clone()), "{name}");
    // Another user may use the same key.
    assert!(matches!(
        store.create_order(&new_order(bob, "E3", "k1", 1_000_000)).await.unwrap(),
        CreateOrder::Created(_)
    ));
    assert_eq!(store.order_by_key(alice, "k1").await.unwrap().as_ref(), Some(&first), "{name}");
    assert_eq!(store.order_by_key(alice, "k9").await.unwrap(), None);
    // A batch: new orders, a key taken before, and a key used twice within the batch.
    let batch = [
        new_order(bob, "EB1", "b1", 1_000_000),
        new_order(alice, "EB2", "k1", 1_000_000),
        new_order(bob, "EB3", "b2", 1_000_000),
        new_order(bob, "EB4", "b2", 1_000_000),
    ];
    let done = store.create_orders(&batch).await.unwrap();
    assert!(matches!(&done[0], CreateOrder::Created(o) if o.order_no == "EB1"), "{name}: {done:?}");
    assert!(matches!(&done[1], CreateOrder::Existing(o) if o.order_no == "E1"), "{name}: {done:?}");
    assert!(matches!(&done[2], CreateOrder::Created(o) if o.order_no == "EB3"), "{name}: {done:?}");
    assert!(matches!(&done[3], CreateOrder::Existing(o) if o.order_no == "EB3"), "{name}: {done:?}");
    let all = store.orders_after("", 100).await.unwrap();
    assert_eq!(all.iter().map(|o| o.order_no.as_str()).collect::<Vec<_>>(), ["E1", "E3", "EB1", "EB3"], "{name}");
    assert_eq!(store.orders_after("E3", 1).await.unwrap()[0].order_no, "EB1");
    assert_eq!(store.order("E1").await.unwrap(), Some(first));
    assert_eq!(store.order("nope").await.unwrap(), None);
    let found = store.orders_in(&["E1".into(), "EB3".into(), "nope".into()]).await.unwrap();
    assert_eq!(found.len(), 2, "{name}");
}

pub async fn orders_page_newest_first(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    for i in 0..6 {
        store.create_order(&new_order(alice, &format!("E1{i}"), &format!("k1{i}"), 1_000_000 + i)).await.unwrap();
    }
    let q = |status, page, page_size| PageQuery { user_id: alice, status, page, page_size };
    let page = store.orders_of(q(None, 1, 4)).await.unwrap();
    assert_eq!((page.items.len(), page.total), (4, 6), "{name}");
    assert_eq!(page.items[0].order_no, "E15", "{name}: newest first");
    assert_eq!(store.orders_of(q(None, 2, 4)).await.unwrap().items.len(), 2);
    assert_eq!(store.orders_of(q(Some(OrderStatus::Paid), 1, 10)).await.unwrap().total, 0);
    assert!(matches!(store.orders_of(q(None, 0, 10)).await, Err(StoreError::Limit(_))), "{name}");
}

pub async fn orders_move_only_along_the_state_machine(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    let order = order(store, alice, "E10").await;
    for (no, pay_before) in [("E11", 1_000_000), ("E12", 1_000_001), ("E13", 2_000_000)] {
        store.create_order(&new_order(alice, no, no, pay_before)).await.unwrap();
    }
    let t = Transition::of(&order, OrderStatus::Cancelled, 5);
    let cancelled = store.transition_order(&t).await.unwrap().expect("cancelled");
    assert_eq!((cancelled.status, cancelled.version), (OrderStatus::Cancelled, 1), "{name}");
    // A second writer holding the old version loses.
    let late = Transition::of(&order, OrderStatus::Expired, 6);
    assert_eq!(store.transition_order(&late).await.unwrap(), None, "{name}");
    // Expiry takes only unpaid orders past their window.
    let expired = store.expire_orders(1_000_002, 100).await.unwrap();
    let mut nos: Vec<_> = expired.iter().map(|o| o.order_no.as_str()).collect();
    nos.sort();
    assert_eq!(nos, ["E11", "E12"], "{name}");
    assert!(store.expire_orders(1_000_002, 100).await.unwrap().is_empty(), "{name}: expired once");
    let mut unreleased: Vec<_> = store.unreleased_orders(100).await.unwrap().into_iter().map(|o| o.order_no).collect();
    unreleased.sort();
    assert_eq!(unreleased, ["E10", "E11", "E12"], "{name}");
    for no in &unreleased {
        store.mark_seats_released(no).await.unwrap();
    }
    assert!(store.unreleased_orders(100).await.unwrap().is_empty());
}

pub async fn notifies_pay_once_refuse_replays_and_refund_late_payments(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    order(store, alice, "E13").await;
    store.create_payment(&new_payment("P13", "E13")).await.unwrap();
    assert_eq!(
        store.apply_notify(&notify("P13", 1, "n0", 20)).await.unwrap(),
        NotifyOutcome::AmountMismatch { expected_fen: 55_300 }
    );
    assert_eq!(store.order("E13").await.unwrap().unwrap().status, OrderStatus::PendingPayment, "{name}");
    let paid = store.apply_notify(&notify("P13", 55_300, "n1", 21)).await.unwrap();
    assert_eq!(paid, NotifyOutcome::Paid { order_no: "E13".into() }, "{name}");
    // The provider resends the same bytes: a duplicate, no second effect. Other bytes reusing the
    // nonce: a replay, refused.
    let resent = store.apply_notify(&notify("P13", 55_300, "n1", 21)).await.unwrap();
    assert_eq!(resent, NotifyOutcome::Duplicate { status: PaymentStatus::Success }, "{name}");
    let replay = Notify { raw: "{\"nonce\":\"n1\",\"ts\":22}".into(), ..notify("P13", 55_300, "n1", 22) };
    assert_eq!(store.apply_notify(&replay).await.unwrap(), NotifyOutcome::Replayed, "{name}");
    let dup = store.apply_notify(&notify("P13", 55_300, "n2", 23)).await.unwrap();
    assert_eq!(dup, NotifyOutcome::Duplicate { status: PaymentStatus::Success }, "{name}");
    assert_eq!(store.apply_notify(&notify("P404", 1, "n3", 24)).await.unwrap(), NotifyOutcome::UnknownPayment);
    assert_eq!(store.order("E13").await.unwrap().unwrap().status, OrderStatus::Paid, "{name}");
    let payments = store.payments_of("E13").await.unwrap();
    assert_eq!(payments[0].status, PaymentStatus::Success);
    assert_eq!(payments[0].txn_id.as_deref(), Some("T-n1"));

    // A payment for a cancelled order is captured, then refunded through the outbox.
    let e10 = order(store, alice, "E10").await;
    store.transition_order(&Transition::of(&e10, OrderStatus::Cancelled, 24)).await.unwrap();
    store.create_payment(&new_payment("P10", "E10")).await.unwrap();
    let late = store.apply_notify(&notify("P10", 55_300, "n4", 25)).await.unwrap();
    assert_eq!(late, NotifyOutcome::RefundDue { order_no: "E10".into(), order_status: OrderStatus::Cancelled });
    let outbox = pending(store, 100).await.unwrap();
    assert_eq!(
        events(&outbox),
        [OutboxEvent::Ticket { order_no: "E13".into() }, OutboxEvent::Refund { payment_no: "P10".into() }],
        "{name}"
    );
    let done = |r: &str| RefundDone { payment_no: "P10".into(), refund_id: r.into(), now_ms: 30 };
    assert!(store.complete_refund(&done("R1")).await.unwrap());
    assert!(!store.complete_refund(&done("R1")).await.unwrap(), "{name}: refunded once");
    assert_eq!(store.payment("P10").await.unwrap().unwrap().status, PaymentStatus::Refunded);
    assert_eq!(store.prune_nonces(24).await.unwrap(), 3, "{name}: n0, n1 and n2 were seen before 24");
}

pub async fn a_notify_batch_is_decided_in_order(store: &dyn Store) {
    let name = store.backend();
    let bob = user(store, "bob").await;
    order(store, bob, "E20").await;
    store.create_payments(&[new_payment("P20a", "E20"), new_payment("P20b", "E20")]).await.unwrap();
    assert_eq!(store.payments_of("E20").await.unwrap().len(), 2, "{name}");
    // A nonce used twice in it, a payment paid then retried, and a second payment of the
    // order the first one just paid.
    let batch = [
        notify("P20a", 55_300, "m1", 26),
        notify("P20a", 55_300, "m1", 26),
        Notify { raw: "{\"nonce\":\"m1\",\"forged\":1}".into(), ..notify("P20a", 55_300, "m1", 26) },
        notify("P20a", 55_300, "m2", 26),
        notify("P20b", 55_300, "m3", 26),
    ];
    let outcomes = store.apply_notifies(&batch).await.unwrap();
    assert_eq!(
        outcomes,
        [
            NotifyOutcome::Paid { order_no: "E20".into() },
            NotifyOutcome::Duplicate { status: PaymentStatus::Success },
            NotifyOutcome::Replayed,
            NotifyOutcome::Duplicate { status: PaymentStatus::Success },
            NotifyOutcome::RefundDue { order_no: "E20".into(), order_status: OrderStatus::Paid },
        ],
        "{name}"
    );
    assert_eq!(store.payment("P20b").await.unwrap().unwrap().status, PaymentStatus::RefundPending);
    assert_eq!(store.order("E20").await.unwrap().unwrap().status, OrderStatus::Paid);
    let events = events(&pending(store, 100).await.unwrap());
    assert!(events.contains(&OutboxEvent::Refund { payment_no: "P20b".into() }), "{name}: {events:?}");
    assert!(events.contains(&OutboxEvent::Ticket { order_no: "E20".into() }));
    assert_eq!(store.audit_range(0, 100).await.unwrap().len(), batch.len(), "{name}: every notify is audited");
}

pub async fn the_outbox_hands_out_oldest_first(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    for no in ["E1", "E2", "E3"] {
        paid_order(store, alice, no).await;
    }
    let rows = pending(store, 100).await.unwrap();
    assert_eq!(rows.len(), 3, "{name}");
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id), "{name}: oldest first");
    assert_eq!(pending(store, 2).await.unwrap(), rows[..2], "{name}");
    store.outbox_done(&[rows[0].id, rows[2].id]).await.unwrap();
    assert_eq!(pending(store, 100).await.unwrap(), [rows[1].clone()], "{name}");
    store.outbox_done(&[]).await.unwrap();
}

pub async fn failing_events_back_off_and_go_dead_alone(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    for no in ["E1", "E2", "E3"] {
        paid_order(store, alice, no).await;
    }
    let rows = store.outbox_due(i64::MAX, 100).await.unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    assert!(rows.iter().all(|r| r.state == OutboxState::Pending && r.attempts == 0), "{name}: {rows:?}");
    let now = rows.iter().map(|r| r.next_at_ms).max().unwrap();
    // Handed to the bus: not due again until the redelivery time, unless the bus refused them.
    store.outbox_sent(&ids, now + 60_000).await.unwrap();
    assert!(store.outbox_due(now + 59_999, 100).await.unwrap().is_empty(), "{name}");
    let lost = store.outbox_due(now + 60_000, 100).await.unwrap();
    assert_eq!((lost.len(), lost[0].state, lost[0].attempts), (3, OutboxState::Sent, 1), "{name}");
    store.outbox_unsent(&ids[2..], now).await.unwrap();
    let third = &store.outbox_due(now, 100).await.unwrap()[0];
    assert_eq!((third.id, third.state, third.attempts), (ids[2], OutboxState::Pending, 0), "{name}: not counted");
    // One event fails over and over: it backs off, then goes DEAD; the others are unaffected.
    let policy = RetryPolicy { attempts_max: 3, backoff_ms_min: 100, backoff_ms_max: 150 };
    let fail = [OutboxFailure { id: ids[0], error: "x".repeat(2 * ERROR_LEN_MAX) }];
    assert!(store.outbox_failed(&fail, policy, now).await.unwrap().is_empty(), "{name}");
    let row = store.outbox_list(OutboxState::Pending, 0, 10).await.unwrap();
    let row = row.iter().find(|r| r.id == ids[0]).unwrap();
    assert_eq!((row.attempts, row.next_at_ms), (1, now + 100), "{name}");
    assert_eq!(row.last_error.as_ref().unwrap().len(), ERROR_LEN_MAX, "{name}: errors are cut");
    for attempt in 2..=3 {
        store.outbox_sent(&ids[..1], now + 60_000).await.unwrap();
        let dead = store.outbox_failed(&fail, policy, now).await.unwrap();
        assert_eq!(dead.len(), usize::from(attempt == 3), "{name}: attempt {attempt}");
    }
    assert!(store.outbox_due(i64::MAX, 100).await.unwrap().iter().all(|r| r.id != ids[0]), "{name}: dead never due");
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.sent, counts.dead), (1, 1, 1), "{name}");
    assert_eq!(store.outbox_list(OutboxState::Dead, 0, 10).await.unwrap()[0].id, ids[0], "{name}");
    // The process that was the bus restarts: what it had in hand is due again.
    assert_eq!(store.outbox_requeue_sent(now).await.unwrap(), 1, "{name}");
    // An operator's retry: due now, attempts from zero; a row not dead is not retried.
    let retried = store.outbox_retry(ids[0], now).await.unwrap().expect("it was DEAD");
    assert_eq!((retried.state, retried.attempts, retried.next_at_ms), (OutboxState::Pending, 0, now), "{name}");
    assert!(store.outbox_retry(ids[0], now).await.unwrap().is_none(), "{name}");
    let due = store.outbox_due(now, 100).await.unwrap();
    assert_eq!(due.len(), 3, "{name}: {due:?}");
    assert!(due.iter().all(|r| r.state == OutboxState::Pending), "{name}");
}

pub async fn orders_record_their_holds(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    assert_eq!(store.hold_id_max().await.unwrap(), 0, "{name}");
    let mut a = new_order(alice, "E1", "k1", 9_000_000_000_000);
    a.holds = vec![256, 513];
    let mut b = new_order(alice, "E2", "k2", 9_000_000_000_000);
    b.holds = vec![1024];
    // A retry of k1 with a surplus hold: the order exists, its hold is not recorded.
    let mut retry = new_order(alice, "E9", "k1", 9_000_000_000_000);
    retry.holds = vec![2048];
    store.create_orders(&[a, b, retry]).await.unwrap();
    let known = store.known_holds(&[1, 256, 513, 1024, 2048]).await.unwrap();
    let mut known = known.clone();
    known.sort();
    assert_eq!(known, [256, 513, 1024], "{name}");
    assert_eq!(store.hold_id_max().await.unwrap(), 1024, "{name}");
    let too_many = vec![1; HOLDS_LOOKUP_MAX + 1];
    assert!(matches!(store.known_holds(&too_many).await, Err(StoreError::Limit(_))), "{name}");
}

pub async fn a_database_belongs_to_one_engine(store: &dyn Store) {
    let name = store.backend();
    let first = store.claim_lease(ENGINE_LEASE, "engine-a", "pid-1", 1_000).await.unwrap();
    assert_eq!((first.holder.as_str(), first.since_ms, first.seen_at_ms), ("engine-a", 1_000, 1_000), "{name}");
    // Another engine is told whose it is, and changes nothing.
    let other = store.claim_lease(ENGINE_LEASE, "engine-b", "pid-2", 5_000).await.unwrap();
    assert_eq!((other.holder.as_str(), other.instance.as_str(), other.seen_at_ms), ("engine-a", "pid-1", 1_000));
    // The same engine restarted (a new process) renews its claim.
    let again = store.claim_lease(ENGINE_LEASE, "engine-a", "pid-3", 9_000).await.unwrap();
    assert_eq!((again.instance.as_str(), again.since_ms, again.seen_at_ms), ("pid-3", 1_000, 9_000), "{name}");
}

pub async fn a_duties_lease_passes_to_another_node_when_its_holder_is_not_seen(store: &dyn Store) {
    let name = store.backend();
    let ttl = 10_000;
    let a = store.take_lease(DUTIES_LEASE, "node-a", "a", 1_000, ttl).await.unwrap();
    assert_eq!((a.holder.as_str(), a.since_ms), ("node-a", 1_000), "{name}");
    // Node b is refused while a renews within the time to live.
    let b = store.take_lease(DUTIES_LEASE, "node-b", "b", 10_999, ttl).await.unwrap();
    assert_eq!(b.holder, "node-a", "{name}: a was seen 9.999 s ago");
    let a = store.take_lease(DUTIES_LEASE, "node-a", "a", 11_000, ttl).await.unwrap();
    assert_eq!((a.holder.as_str(), a.since_ms, a.seen_at_ms), ("node-a", 1_000, 11_000), "{name}");
    // a stops renewing (it died): once it was last seen more than the ttl ago, b takes it.
    let b = store.take_lease(DUTIES_LEASE, "node-b", "b", 21_000, ttl).await.unwrap();
    assert_eq!(b.holder, "node-a", "{name}: exactly the ttl is not yet stale");
    let b = store.take_lease(DUTIES_LEASE, "node-b", "b", 21_001, ttl).await.unwrap();
    assert_eq!((b.holder.as_str(), b.since_ms, b.seen_at_ms), ("node-b", 21_001, 21_001), "{name}");
    // a, back, is told it is b's.
    let a = store.take_lease(DUTIES_LEASE, "node-a", "a", 21_500, ttl).await.unwrap();
    assert_eq!(a.holder, "node-b", "{name}");
    // The engine's claim never expires: it is not a time-to-live lease.
    store.claim_lease(ENGINE_LEASE, "engine-a", "pid-1", 1_000).await.unwrap();
    let other = store.claim_lease(ENGINE_LEASE, "engine-b", "pid-2", i64::MAX / 2).await.unwrap();
    assert_eq!(other.holder, "engine-a", "{name}");
}

pub async fn tickets_issue_once_and_check_in_once(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    let order = paid_order(store, alice, "E13").await;
    let tickets = vec![ticket(&order, 0), ticket(&order, 1)];
    let batch = [OrderTickets { order_no: "E13".into(), tickets: tickets.clone() }];
    assert_eq!(store.issue_tickets(&batch, 40).await.unwrap(), ["E13"], "{name}");
    assert!(store.issue_tickets(&batch, 41).await.unwrap().is_empty(), "{name}: issued once");
    assert_eq!(store.order("E13").await.unwrap().unwrap().status, OrderStatus::Ticketed);
    assert_eq!(store.tickets_of("E13").await.unwrap(), tickets, "{name}");
    assert_eq!(store.ticket("E131").await.unwrap(), Some(tickets[1].clone()));
    assert_eq!(store.tickets_after("E130", 10).await.unwrap(), [tickets[1].clone()]);
    // A ticket checks in once, ever.
    assert_eq!(store.check_in(&scan("E130", "g1", 45)).await.unwrap(), CheckIn::Accepted, "{name}");
    assert_eq!(
        store.check_in(&scan("E130", "g2", 46)).await.unwrap(),
        CheckIn::AlreadyCheckedIn { gate_id: "g1".into(), at_ms: 45 },
        "{name}"
    );
    assert_eq!(store.check_in(&scan("nope", "g1", 47)).await.unwrap(), CheckIn::Unknown);
    assert_eq!(store.ticket("E130").await.unwrap().unwrap().status, TicketStatus::CheckedIn);
}

pub async fn ticket_refunds_revoke_once(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    let (_, tickets) = ticketed_order(store, alice, "E13", 2).await;
    store.check_in(&scan("E130", "g1", 45)).await.unwrap();
    let refund = refund_of(&tickets[1], "T1");
    let RefundTicket::Started(started) = store.refund_ticket(&refund).await.unwrap() else { panic!("{name}") };
    assert_eq!(started.status, RefundStatus::Pending);
    let again = TicketRefundRecord { refund_no: "T2".into(), ..refund.clone() };
    assert_eq!(store.refund_ticket(&again).await.unwrap(), RefundTicket::Existing(started.clone()), "{name}");
    let checked_in = refund_of(&tickets[0], "T3");
    assert_eq!(store.refund_ticket(&checked_in).await.unwrap(), RefundTicket::NotRefundable(TicketStatus::CheckedIn));
    assert_eq!(store.order("E13").await.unwrap().unwrap().status, OrderStatus::PartiallyRefunded, "{name}");
    let revoked = store.revocations(0, 10).await.unwrap();
    assert_eq!(revoked.iter().map(|r| r.ticket_sn.as_str()).collect::<Vec<_>>(), ["E131"], "{name}");
    assert!(store.revocations(revoked[0].seq, 10).await.unwrap().is_empty());
    assert_eq!(store.check_in(&scan("E131", "g1", 49)).await.unwrap(), CheckIn::Revoked(TicketStatus::Refunded));
    let pending = events(&pending(store, 100).await.unwrap());
    assert!(pending.contains(&OutboxEvent::TicketRefund { refund_no: "T1".into() }), "{name}: {pending:?}");
    let done = TicketRefundDone { refund_no: "T1".into(), channel_refund_id: "R-T1".into(), now_ms: 50 };
    assert!(store.complete_ticket_refund(&done).await.unwrap());
    assert!(!store.complete_ticket_refund(&done).await.unwrap(), "{name}: done once");
    assert_eq!(store.ticket_refund("T1").await.unwrap().unwrap().status, RefundStatus::Done);
}

pub async fn unticketable_orders_are_refunded(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    ticketed_order(store, alice, "E13", 1).await;
    paid_order(store, alice, "E14").await;
    let u = Unticketable { order_no: "E14".into(), reason: "hold expired".into(), now_ms: 51 };
    assert!(store.refund_unticketable(&u).await.unwrap(), "{name}");
    assert!(!store.refund_unticketable(&u).await.unwrap(), "{name}: once");
    assert_eq!(store.order("E14").await.unwrap().unwrap().status, OrderStatus::Refunded);
    assert_eq!(store.payment("PE14").await.unwrap().unwrap().status, PaymentStatus::RefundPending);
    assert!(events(&pending(store, 100).await.unwrap()).contains(&OutboxEvent::Refund { payment_no: "PE14".into() }));
    let audit = store.payment_audit().await.unwrap();
    assert_eq!((audit.captured, audit.ticketed, audit.refunded, audit.in_flight_total), (2, 1, 0, 1), "{name}");
    assert_eq!(audit.in_flight, ["PE14"]);
    let done = RefundDone { payment_no: "PE14".into(), refund_id: "R2".into(), now_ms: 53 };
    assert!(store.complete_refund(&done).await.unwrap());
    let audit = store.payment_audit().await.unwrap();
    assert_eq!((audit.refunded, audit.in_flight_total), (1, 0), "{name}");
    // A ticketed order is not PAID: it cannot be made unticketable.
    let ticketed = Unticketable { order_no: "E13".into(), ..u };
    assert!(!store.refund_unticketable(&ticketed).await.unwrap(), "{name}");
}

pub async fn wishes_are_fulfilled_or_ended_once(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    let wish = |id: &str, deadline_ms: i64| NewWish {
        wish_id: id.into(),
        user_id: alice,
        run_id: "G1-20261122".into(),
        class: "SECOND".into(),
        from_station: "VNP".into(),
        to_station: "AOH".into(),
        passenger_ids: vec![1, 2],
        deadline_ms,
        created_at_ms: 60,
    };
    let order = |no: &str| new_order(alice, no, &format!("wish:{no}"), 9_000_000_000_000);
    let CreateWish::Created(w1) = store.create_wish(&wish("W1", 1_000), &order("EW1")).await.unwrap() else {
        panic!("{name}: wish not created")
    };
    assert_eq!(
        (w1.status, w1.passenger_ids.as_slice(), w1.order_no.as_str()),
        (WishStatus::Active, &[1, 2][..], "EW1")
    );
    let again = store.create_wish(&wish("W1b", 1_000), &order("EW1")).await.unwrap();
    assert_eq!(again, CreateWish::Existing(w1.clone()), "{name}: the same key finds the same wish");
    store.create_order(&new_order(alice, "X", "k1", 1)).await.unwrap();
    assert!(matches!(
        store.create_wish(&wish("W1c", 1), &new_order(alice, "X2", "k1", 1)).await.unwrap(),
        CreateWish::KeyTaken(_)
    ));
    assert!(store.waiting_wishes(10).await.unwrap().is_empty(), "{name}: unpaid wishes do not wait");
    store.create_payment(&new_payment("PW1", "EW1")).await.unwrap();
    store.apply_notify(&notify("PW1", 55_300, "n-w1", 61)).await.unwrap();
    for (id, no) in [("W2", "EW2"), ("W3", "EW3")] {
        store.create_wish(&wish(id, 1_000), &order(no)).await.unwrap();
    }
    store.create_payment(&new_payment("PW2", "EW2")).await.unwrap();
    store.apply_notify(&notify("PW2", 55_300, "n-w2", 61)).await.unwrap();
    let waiting: Vec<String> = store.waiting_wishes(10).await.unwrap().into_iter().map(|w| w.wish_id).collect();
    assert_eq!(waiting, ["W1", "W2"], "{name}: paid wishes wait in join order");
    // Fulfilled once: the order gets its seats and a ticketing event; the user a notification.
    let fulfil =
        |id: &str, legs: &str, now_ms| Fulfil { wish_id: id.into(), legs_json: legs.into(), holds: vec![], now_ms };
    assert!(store.fulfil_wish(&fulfil("W1", "[{\"seats\":1}]", 70)).await.unwrap(), "{name}");
    assert!(!store.fulfil_wish(&fulfil("W1", "[]", 71)).await.unwrap(), "{name}: fulfilled once");
    assert_eq!(store.wish("W1").await.unwrap().unwrap().status, WishStatus::Fulfilled);
    assert_eq!(store.order("EW1").await.unwrap().unwrap().legs_json, "[{\"seats\":1}]");
    let outbox = events(&pending(store, 1_000).await.unwrap());
    assert!(outbox.contains(&OutboxEvent::Ticket { order_no: "EW1".into() }), "{name}");
    let notes = store.notifications(alice, 10).await.unwrap();
    assert_eq!((notes[0].kind.as_str(), notes[0].subject.as_str()), ("wish.fulfilled", "W1"), "{name}");
    assert!(matches!(store.end_wish("W1", WishStatus::Cancelled, 72).await.unwrap(), EndWish::NotActive(_)));
    // Cancelled once: a paid wish's payment goes to the refund outbox.
    assert!(matches!(store.end_wish("W2", WishStatus::Cancelled, 73).await.unwrap(), EndWish::Ended(_)), "{name}");
    assert!(matches!(store.end_wish("W2", WishStatus::Cancelled, 74).await.unwrap(), EndWish::NotActive(_)));
    assert_eq!(store.order("EW2").await.unwrap().unwrap().status, OrderStatus::Refunded, "{name}");
    assert_eq!(store.payment("PW2").await.unwrap().unwrap().status, PaymentStatus::RefundPending, "{name}");
    assert!(!store.fulfil_wish(&fulfil("W2", "[]", 75)).await.unwrap(), "{name}: a cancelled wish is not fulfilled");
    assert_eq!(store.end_wish("nope", WishStatus::Expired, 75).await.unwrap(), EndWish::Unknown);
    // The deadline ends an unpaid wish too; its order dies with it.
    assert!(store.expire_wishes(999, 10).await.unwrap().is_empty(), "{name}: not due yet");
    let expired: Vec<String> = store.expire_wishes(1_000, 10).await.unwrap().into_iter().map(|w| w.wish_id).collect();
    assert_eq!(expired, ["W3"], "{name}");
    assert_eq!(store.order("EW3").await.unwrap().unwrap().status, OrderStatus::Expired, "{name}");
    assert_eq!(store.notifications(alice, 10).await.unwrap()[0].kind, "wish.expired");
}

pub async fn rebooks_swap_a_ticket_once(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    ticketed_order(store, alice, "ER1", 1).await;
    paid_order(store, alice, "ER2").await;
    let refund = TicketRefundRecord {
        refund_no: "TR1".into(),
        ticket_sn: "ER10".into(),
        order_no: "ER1".into(),
        payment_no: "PER1".into(),
        refund_fen: 0,
        fee_fen: 0,
        status: RefundStatus::Pending,
        created_at_ms: 81,
    };
    assert_eq!(store.rebook_swap("ER2", &refund).await.unwrap(), RebookSwap::Swapped, "{name}");
    assert_eq!(store.rebook_swap("ER2", &refund).await.unwrap(), RebookSwap::AlreadyOurs, "{name}");
    let other = TicketRefundRecord { refund_no: "TR2".into(), ..refund.clone() };
    assert_eq!(store.rebook_swap("ER9", &other).await.unwrap(), RebookSwap::Lost(TicketStatus::Rebooked), "{name}");
    assert_eq!(store.rebooked_to("ER10").await.unwrap().as_deref(), Some("ER2"));
    assert_eq!(store.check_in(&scan("ER10", "g1", 82)).await.unwrap(), CheckIn::Revoked(TicketStatus::Rebooked));
    let again = TicketRefundRecord { refund_no: "TR3".into(), ..refund.clone() };
    assert_eq!(
        store.refund_ticket(&again).await.unwrap(),
        RefundTicket::NotRefundable(TicketStatus::Rebooked),
        "{name}: a rebooked ticket is not refundable"
    );
    assert!(store.revocations(0, 100).await.unwrap().iter().any(|r| r.ticket_sn == "ER10"), "{name}");
    assert_eq!(store.ticket_refund("TR1").await.unwrap().unwrap().status, RefundStatus::Pending);
}

pub async fn free_orders_settle_once(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    let mut free = new_order(alice, "ER3", "key-ER3", 9_000_000_000_000);
    free.amount_fen = 0;
    store.create_order(&free).await.unwrap();
    assert!(store.settle_free_order("ER3", 83).await.unwrap(), "{name}");
    assert!(!store.settle_free_order("ER3", 84).await.unwrap(), "{name}: settled once");
    assert_eq!(store.order("ER3").await.unwrap().unwrap().status, OrderStatus::Paid);
    assert!(events(&pending(store, 10).await.unwrap()).contains(&OutboxEvent::Ticket { order_no: "ER3".into() }));
    order(store, alice, "ER2").await;
    assert!(!store.settle_free_order("ER2", 85).await.unwrap(), "{name}: a priced order needs a payment");
}

pub async fn audit_chain_verifies(store: &dyn Store) {
    let name = store.backend();
    let alice = user(store, "alice").await;
    for no in ["E1", "E2", "E3"] {
        paid_order(store, alice, no).await;
    }
    let entry = AuditEntry { at_ms: 60, kind: "admin.test".into(), subject: "x".into(), detail: "y".into() };
    let seq = store.audit_append(&entry).await.unwrap();
    let all = store.audit_range(0, 1000).await.unwrap();
    assert_eq!((all.len(), all.last().unwrap().seq), (4, seq), "{name}: every notify is audited");
    let (_, last) = verify_chain((AUDIT_GENESIS.to_vec(), 0), &all).unwrap();
    assert_eq!(last, seq);
    // Paging continues the chain.
    let (head, at) = verify_chain((AUDIT_GENESIS.to_vec(), 0), &all[..2]).unwrap();
    verify_chain((head, at), &store.audit_range(2, 1000).await.unwrap()).unwrap();
}
