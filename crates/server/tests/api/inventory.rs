//! Search counts and seat maps come from the seat engine, and what the engine holds survives
//! a server restart.

use chepiao_domain::{RunId, SeatClass};
use chepiao_engine::LegRequest;
use chepiao_server::inventory::run_spec;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, restart_app, spawn_app, tomorrow};

/// Hold `passengers` seats of `class` on G1 tomorrow from stop `from` to stop `to`, directly
/// in the app's engine (orders over HTTP come with the purchase flow).
async fn hold_g1(app: &TestApp, key: u128, from: u8, to: u8, class: SeatClass, passengers: u8) -> Vec<u16> {
    let network = &app.state.network;
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
    let held = app.state.engine.hold(key, vec![leg], 600_000).await.unwrap().unwrap();
    held.legs[0].seats.clone()
}

async fn g1_second_left(app: &TestApp, from: &str, to: &str) -> u64 {
    let (status, trains) = app.get_json(&format!("/api/v1/trains?from={from}&to={to}&date={}", tomorrow())).await;
    assert_eq!(status, 200, "{trains}");
    let g1 = trains.as_array().unwrap().iter().find(|t| t["train_code"] == "G1").unwrap();
    g1["classes"].as_array().unwrap().iter().find(|c| c["class"] == "SECOND").unwrap()["remaining"].as_u64().unwrap()
}

fn run_g1() -> String {
    format!("G1-{}", tomorrow().to_string().replace('-', ""))
}

#[tokio::test]
async fn holds_show_in_search_and_in_the_seat_map() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(g1_second_left(&app, "VNP", "AOH").await, 540);
    // G1 stops: 北京南 0, 济南西 1, 南京南 2, 上海虹桥 3. Three seats 北京南 → 济南西.
    let seats = hold_g1(&app, 1, 0, 1, SeatClass::Second, 3).await;
    assert_eq!(g1_second_left(&app, "VNP", "AOH").await, 537);
    assert_eq!(g1_second_left(&app, "VNP", "JGK").await, 537);
    // The same seats are free again from 济南西 on.
    assert_eq!(g1_second_left(&app, "JGK", "AOH").await, 540);

    let (status, map) = app.get_json(&format!("/api/v1/runs/{}/seats?from=VNP&to=AOH&class=SECOND", run_g1())).await;
    assert_eq!(status, 200, "{map}");
    assert_eq!(map["free"], 537);
    let taken: Vec<(u64, String)> = map["coaches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let coach = c["coach"].as_u64().unwrap();
            c["seats"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["free"] == false)
                .map(move |s| (coach, s["seat"].as_str().unwrap().to_string()))
        })
        .collect();
    let layout = app.state.network.train(app.state.network.train_idx(&"G1".parse().unwrap()).unwrap()).layout();
    let expected: Vec<(u64, String)> = seats
        .iter()
        .map(|&s| {
            let p = layout.seat_at(s).unwrap();
            (u64::from(p.coach), p.label.to_string())
        })
        .collect();
    assert_eq!(taken, expected);
    // A group of three sits together: one coach, one row.
    assert!(taken.iter().all(|(c, l)| *c == taken[0].0 && l[..2] == taken[0].1[..2]), "{taken:?}");
    let (_, later) = app.get_json(&format!("/api/v1/runs/{}/seats?from=JGK&to=AOH&class=SECOND", run_g1())).await;
    assert_eq!(later["free"], 540);
}

#[tokio::test]
async fn standing_appears_only_when_second_class_is_sold_out() {
    let app = spawn_app(Backend::Sqlite).await;
    let standing = |trains: &Value| {
        let g1 = trains.as_array().unwrap().iter().find(|t| t["train_code"] == "G1").unwrap().clone();
        g1["classes"].as_array().unwrap().iter().find(|c| c["class"] == "STANDING").unwrap()["remaining"]
            .as_u64()
            .unwrap()
    };
    let url = format!("/api/v1/trains?from=VNP&to=JGK&date={}", tomorrow());
    assert_eq!(standing(&app.get_json(&url).await.1), 0);
    for k in 0..108 {
        hold_g1(&app, 100 + k, 0, 1, SeatClass::Second, 5).await;
    }
    assert_eq!(standing(&app.get_json(&url).await.1), 60);
}

#[tokio::test]
async fn what_the_engine_held_survives_a_restart() {
    let app = spawn_app(Backend::Sqlite).await;
    hold_g1(&app, 7, 0, 3, SeatClass::First, 5).await;
    let dir = app.stop().await;
    let app = restart_app(dir).await;
    let (_, trains) = app.get_json(&format!("/api/v1/trains?from=VNP&to=AOH&date={}", tomorrow())).await;
    let g1 = trains.as_array().unwrap().iter().find(|t| t["train_code"] == "G1").unwrap();
    let first = g1["classes"].as_array().unwrap().iter().find(|c| c["class"] == "FIRST").unwrap();
    assert_eq!(first["remaining"], 47);
}

#[tokio::test]
async fn seat_map_parameters_are_checked() {
    let app = spawn_app(Backend::Sqlite).await;
    let run = run_g1();
    for (query, mentions) in [
        ("from=AOH&to=VNP&class=SECOND", "`to`"),
        ("from=VNP&to=XXX&class=SECOND", "`to`"),
        ("from=VNP&to=AOH&class=STANDING", "`class`"),
        ("from=VNP&to=AOH&class=HARD_SLEEPER", "`class`"),
        ("from=VNP&to=AOH&class=COMFY", "`class`"),
        ("from=VNP&to=AOH", "`class`"),
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/runs/{run}/seats?{query}")).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(40002)), "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(mentions), "{query}: {body}");
    }
    let (status, _) = app.get_json("/api/v1/runs/G1-20300101/seats?from=VNP&to=AOH&class=SECOND").await;
    assert_eq!(status, 404);
}
