//! Station look-up, train search and run details, as a client sees them.

use serde_json::Value;

use crate::helpers::{Backend, postgres_url, spawn_app, tomorrow};

fn find<'a>(trains: &'a Value, code: &str) -> &'a Value {
    trains.as_array().unwrap().iter().find(|t| t["train_code"] == code).unwrap_or_else(|| panic!("{code} missing"))
}

async fn g1_runs_beijing_south_to_shanghai_hongqiao(backend: Backend) {
    let app = spawn_app(backend).await;
    let date = tomorrow();
    let (status, trains) = app.get_json(&format!("/api/v1/trains?from=VNP&to=AOH&date={date}")).await;
    assert_eq!(status, 200, "{trains}");
    let g1 = find(&trains, "G1");
    assert_eq!(g1["from"]["name"], "北京南");
    assert_eq!(g1["from"]["departs_at"], format!("{date}T09:00:00+08:00"));
    assert_eq!(g1["to"]["name"], "上海虹桥");
    assert_eq!(g1["to"]["arrives_at"], format!("{date}T13:28:00+08:00"));
    assert_eq!(g1["duration_min"], 268);
    assert_eq!(g1["run_id"], format!("G1-{}", date.to_string().replace('-', "")));
    let second = g1["classes"].as_array().unwrap().iter().find(|c| c["class"] == "SECOND").unwrap();
    assert_eq!(second["remaining"], 540);
    assert!(second["price_fen"].as_i64().unwrap() > 10_000);
    // Every result really calls at 北京南 then 上海虹桥, sorted by departure.
    let departs: Vec<&str> =
        trains.as_array().unwrap().iter().map(|t| t["from"]["departs_at"].as_str().unwrap()).collect();
    assert!(departs.windows(2).all(|w| w[0] <= w[1]), "{departs:?}");
    assert!(trains.as_array().unwrap().iter().all(|t| t["from"]["telecode"] == "VNP" && t["to"]["telecode"] == "AOH"));
}

#[tokio::test]
async fn g1_on_sqlite() {
    g1_runs_beijing_south_to_shanghai_hongqiao(Backend::Sqlite).await;
}

#[tokio::test]
async fn g1_on_postgres() {
    if postgres_url().is_none() {
        eprintln!("CHEPIAO_TEST_POSTGRES_URL not set: skipped");
        return;
    }
    g1_runs_beijing_south_to_shanghai_hongqiao(Backend::Postgres).await;
}

#[tokio::test]
async fn city_station_searches_its_siblings() {
    let app = spawn_app(Backend::Sqlite).await;
    let (status, trains) = app.get_json(&format!("/api/v1/trains?from=BJP&to=SHH&date={}", tomorrow())).await;
    assert_eq!(status, 200);
    // 北京 (BJP) covers 北京南, 上海 (SHH) covers 上海虹桥.
    let g1 = find(&trains, "G1");
    assert_eq!((g1["from"]["telecode"].as_str(), g1["to"]["telecode"].as_str()), (Some("VNP"), Some("AOH")));
    // A specific station does not: nothing from 北京南 lands at 北京西.
    let (_, none) = app.get_json(&format!("/api/v1/trains?from=VNP&to=BXP&date={}", tomorrow())).await;
    assert_eq!(none.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn overnight_train_is_found_on_its_boarding_date() {
    let app = spawn_app(Backend::Sqlite).await;
    // K101 leaves 北京 at 23:20 and calls at 济南 at 05:19 the next morning: boarding at 济南
    // on date D means the run of D-1.
    let date = tomorrow();
    let (status, trains) = app.get_json(&format!("/api/v1/trains?from=JNK&to=NJH&date={date}")).await;
    assert_eq!(status, 200, "{trains}");
    let k101 = find(&trains, "K101");
    assert_eq!(k101["run_id"], format!("K101-{}", date.add_days(-1).to_string().replace('-', "")));
    assert_eq!(k101["from"]["departs_at"], format!("{date}T05:34:00+08:00"));
    let classes: Vec<&str> = k101["classes"].as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(classes, ["SOFT_SLEEPER", "HARD_SLEEPER", "HARD_SEAT", "STANDING"]);
}

#[tokio::test]
async fn stations_by_pinyin_initials_name_and_telecode() {
    let app = spawn_app(Backend::Sqlite).await;
    for q in ["beijingnan", "bjn", "北京南", "VNP", "vnp"] {
        let (status, found) = app.get_json(&format!("/api/v1/stations?q={}", urlencode(q))).await;
        assert_eq!(status, 200);
        assert_eq!(found[0]["telecode"], "VNP", "q={q}: {found}");
        assert_eq!(found[0]["name"], "北京南");
        assert_eq!(found[0]["city"], "北京");
    }
    let (_, found) = app.get_json("/api/v1/stations?q=shanghai&limit=3").await;
    assert_eq!(found.as_array().unwrap().len(), 3);
    assert!(found.as_array().unwrap().iter().all(|s| s["pinyin"].as_str().unwrap().starts_with("shanghai")));
    let (_, none) = app.get_json("/api/v1/stations?q=qqqqqq").await;
    assert_eq!(none, serde_json::json!([]));
}

#[tokio::test]
async fn run_details_and_unknown_runs() {
    let app = spawn_app(Backend::Sqlite).await;
    let run_id = format!("G1-{}", tomorrow().to_string().replace('-', ""));
    let (status, run) = app.get_json(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = run["stops"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["北京南", "济南西", "南京南", "上海虹桥"]);
    assert_eq!(run["stops"][1]["arrives_at"], format!("{}T10:22:00+08:00", tomorrow()));
    let second = run["classes"].as_array().unwrap().iter().find(|c| c["class"] == "SECOND").unwrap();
    assert_eq!(second["capacity"], 540);

    let (status, body) = app.get_json("/api/v1/runs/G1-20300101").await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(40403)));
    let (status, body) = app.get_json("/api/v1/runs/NOPE").await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(40002)));
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
