//! Search counts and seat maps come from the seat engine, and what the engine holds survives
//! a server restart.

use chepiao_domain::{RunId, SeatClass};
use chepiao_engine::LegRequest;
use chepiao_flow::calendar::run_spec;

use crate::app::{Backend, TestApp, code, g1, order_req, restart_app, spawn_app, spawn_app_with, tomorrow, wait_until};

/// Hold `passengers` seats of `class` on G1 tomorrow from stop `from` to stop `to`, directly
/// in the app's engine (below the flow: no order, so the seat map shows only this).
async fn hold_g1(app: &TestApp, key: u128, from: u8, to: u8, class: SeatClass, passengers: u8) -> Vec<u16> {
    let network = &app.state.flow.network;
    let train = network.train(network.train_idx(&"G1".parse().unwrap()).unwrap());
    let leg = LegRequest {
        run: RunId::new(train.code.clone(), tomorrow()),
        spec: run_spec(train),
        from,
        to,
        class,
        passengers,
        prefs: vec![],
    };
    let held = app.state.flow.engine.hold(key, vec![leg], 600_000).await.unwrap().unwrap();
    held.legs[0].seats.clone()
}

#[tokio::test]
async fn holds_show_in_search_and_in_the_seat_map() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(app.g1_remaining("VNP", "AOH", SeatClass::Second).await, 540);
    // G1 stops: 北京南 0, 济南西 1, 南京南 2, 上海虹桥 3. Three seats 北京南 → 济南西.
    let seats = hold_g1(&app, 1, 0, 1, SeatClass::Second, 3).await;
    assert_eq!(app.g1_remaining("VNP", "AOH", SeatClass::Second).await, 537);
    assert_eq!(app.g1_remaining("VNP", "JGK", SeatClass::Second).await, 537);
    // The same seats are free again from 济南西 on.
    assert_eq!(app.g1_remaining("JGK", "AOH", SeatClass::Second).await, 540);

    let map = app.api.seats(&g1(), "VNP", "AOH", SeatClass::Second).await.unwrap();
    assert_eq!(map.free, 537);
    let taken: Vec<(u8, String)> = map
        .coaches
        .iter()
        .flat_map(|c| c.seats.iter().filter(|s| !s.free).map(move |s| (c.coach, s.seat.to_string())))
        .collect();
    let network = &app.state.flow.network;
    let layout = network.train(network.train_idx(&"G1".parse().unwrap()).unwrap()).layout();
    let expected: Vec<(u8, String)> = seats
        .iter()
        .map(|&s| {
            let p = layout.seat_at(s).unwrap();
            (p.coach, p.label.to_string())
        })
        .collect();
    assert_eq!(taken, expected);
    // A group of three sits together: one coach, one row.
    assert!(taken.iter().all(|(c, l)| *c == taken[0].0 && l[..2] == taken[0].1[..2]), "{taken:?}");
    assert_eq!(app.api.seats(&g1(), "JGK", "AOH", SeatClass::Second).await.unwrap().free, 540);
}

/// During a sale a search answer is kept for `search_stale_ms` after the engine changed (余票 a
/// moment old, as 12306 shows it); then the next search asks the engine again.
#[tokio::test]
async fn a_kept_search_answer_is_given_again_until_it_is_stale() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.search_stale_ms = 60_000).await;
    assert_eq!(app.g1_remaining("VNP", "AOH", SeatClass::Second).await, 540);
    hold_g1(&app, 1, 0, 1, SeatClass::Second, 3).await;
    assert_eq!(app.g1_remaining("VNP", "AOH", SeatClass::Second).await, 540, "the kept answer, under a minute old");
    assert_eq!(app.g1_remaining("VNP", "JGK", SeatClass::Second).await, 537, "another journey is asked anew");
    app.advance(std::time::Duration::from_secs(60));
    assert_eq!(app.g1_remaining("VNP", "AOH", SeatClass::Second).await, 537, "a minute later the engine is asked");
}

#[tokio::test]
async fn standing_appears_only_when_second_class_is_sold_out() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(app.g1_remaining("VNP", "JGK", SeatClass::Standing).await, 0);
    for k in 0..108 {
        hold_g1(&app, 100 + k, 0, 1, SeatClass::Second, 5).await;
    }
    assert_eq!(app.g1_remaining("VNP", "JGK", SeatClass::Standing).await, 60);
}

/// An order's seats survive a restart (I4); engine holds no order carries (a crash between
/// the hold and the order row) are released by the reconciliation at start.
#[tokio::test]
async fn what_the_engine_held_survives_a_restart_and_orphans_do_not() {
    let app = spawn_app(Backend::Sqlite).await;
    let buyer = app.buyer("alice", 5).await;
    let req = order_req("k1", &g1(), "VNP", "AOH", SeatClass::First, &buyer.passengers);
    assert_eq!(buyer.api.create_order(&req, None).await.unwrap().status, 201);
    hold_g1(&app, 7, 0, 3, SeatClass::Second, 2).await;
    assert_eq!(app.g1_remaining("VNP", "AOH", SeatClass::Second).await, 538);
    let dir = app.stop().await;
    let app = restart_app(dir).await;
    assert_eq!(app.g1_remaining("VNP", "AOH", SeatClass::First).await, 47);
    wait_until("the orphan hold released", || async { app.g1_remaining("VNP", "AOH", SeatClass::Second).await == 540 })
        .await;
}

#[tokio::test]
async fn seat_map_parameters_are_checked() {
    let app = spawn_app(Backend::Sqlite).await;
    let run = g1();
    for (query, mentions) in [
        ("from=AOH&to=VNP&class=SECOND", "`to`"),
        ("from=VNP&to=XXX&class=SECOND", "`to`"),
        ("from=VNP&to=AOH&class=STANDING", "`class`"),
        ("from=VNP&to=AOH&class=HARD_SLEEPER", "`class`"),
        ("from=VNP&to=AOH&class=COMFY", "`class`"),
        ("from=VNP&to=AOH", "`class`"),
    ] {
        let r = app.api.request(reqwest::Method::GET, &format!("/api/v1/runs/{run}/seats?{query}"));
        let e = chepiao_api::Client::send::<serde_json::Value>(r).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(400), Some(40002)), "{query}: {e}");
        assert!(e.to_string().contains(mentions), "{query}: {e}");
    }
    assert_eq!(code(app.api.seats("G1-20300101", "VNP", "AOH", SeatClass::Second).await).0, 404);
}
