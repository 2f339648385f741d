//! Station look-up, train search and run details, as a client sees them.

use chepiao_api::network::TrainResult;
use chepiao_domain::SeatClass;

use crate::app::{Backend, code, g1, spawn_app, tomorrow};

fn find<'a>(trains: &'a [TrainResult<'static>], code: &str) -> &'a TrainResult<'static> {
    trains.iter().find(|t| t.train_code == code).unwrap_or_else(|| panic!("{code} missing"))
}

async fn g1_runs_beijing_south_to_shanghai_hongqiao(backend: Backend) {
    let app = spawn_app(backend).await;
    let date = tomorrow();
    let trains = app.api.trains("VNP", "AOH", &date.to_string()).await.unwrap();
    let g1 = find(&trains, "G1");
    assert_eq!(g1.from.name, "北京南");
    assert_eq!(g1.from.departs_at.to_string(), format!("{date}T09:00:00+08:00"));
    assert_eq!(g1.to.name, "上海虹桥");
    assert_eq!(g1.to.arrives_at.to_string(), format!("{date}T13:28:00+08:00"));
    assert_eq!(g1.duration_min, 268);
    assert_eq!(g1.run_id.to_string(), crate::app::g1());
    let second = g1.classes.iter().find(|c| c.class == SeatClass::Second).unwrap();
    assert_eq!(second.remaining, 540);
    assert!(second.price_fen > 10_000);
    // Every result really calls at 北京南 then 上海虹桥, sorted by departure.
    let departs: Vec<String> = trains.iter().map(|t| t.from.departs_at.to_string()).collect();
    assert!(departs.windows(2).all(|w| w[0] <= w[1]), "{departs:?}");
    assert!(trains.iter().all(|t| t.from.telecode == "VNP" && t.to.telecode == "AOH"));
}

crate::on_both_backends!(g1_runs_beijing_south_to_shanghai_hongqiao, g1_on_sqlite, g1_on_postgres);

#[tokio::test]
async fn city_station_searches_its_siblings() {
    let app = spawn_app(Backend::Sqlite).await;
    let trains = app.api.trains("BJP", "SHH", &tomorrow().to_string()).await.unwrap();
    // 北京 (BJP) covers 北京南, 上海 (SHH) covers 上海虹桥.
    let g1 = find(&trains, "G1");
    assert_eq!((g1.from.telecode.as_ref(), g1.to.telecode.as_ref()), ("VNP", "AOH"));
    // A specific station does not: nothing from 北京南 lands at 北京西.
    assert!(app.api.trains("VNP", "BXP", &tomorrow().to_string()).await.unwrap().is_empty());
}

#[tokio::test]
async fn overnight_train_is_found_on_its_boarding_date() {
    let app = spawn_app(Backend::Sqlite).await;
    // K101 leaves 北京 at 23:20 and calls at 济南 at 05:19 the next morning: boarding at 济南
    // on date D means the run of D-1.
    let date = tomorrow();
    let trains = app.api.trains("JNK", "NJH", &date.to_string()).await.unwrap();
    let k101 = find(&trains, "K101");
    assert_eq!(k101.run_id.to_string(), crate::app::run_on("K101", date.add_days(-1)));
    assert_eq!(k101.from.departs_at.to_string(), format!("{date}T05:34:00+08:00"));
    let classes: Vec<SeatClass> = k101.classes.iter().map(|c| c.class).collect();
    assert_eq!(classes, [SeatClass::SoftSleeper, SeatClass::HardSleeper, SeatClass::HardSeat, SeatClass::Standing]);
}

#[tokio::test]
async fn stations_by_pinyin_initials_name_and_telecode() {
    let app = spawn_app(Backend::Sqlite).await;
    for q in ["beijingnan", "bjn", "北京南", "VNP", "vnp"] {
        let found = app.api.stations(q).await.unwrap();
        assert_eq!(found[0].telecode, "VNP", "q={q}: {found:?}");
        assert_eq!((found[0].name.as_str(), found[0].city.as_str()), ("北京南", "北京"));
    }
    let found: Vec<chepiao_api::network::StationView> =
        chepiao_api::Client::send(app.api.request(reqwest::Method::GET, "/api/v1/stations?q=shanghai&limit=3"))
            .await
            .unwrap()
            .body;
    assert_eq!(found.len(), 3);
    assert!(found.iter().all(|s| s.pinyin.starts_with("shanghai")));
    assert!(app.api.stations("qqqqqq").await.unwrap().is_empty());
}

#[tokio::test]
async fn run_details_and_unknown_runs() {
    let app = spawn_app(Backend::Sqlite).await;
    let run = app.api.run(&g1()).await.unwrap();
    let names: Vec<&str> = run.stops.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["北京南", "济南西", "南京南", "上海虹桥"]);
    assert_eq!(run.stops[1].arrives_at.as_deref(), Some(format!("{}T10:22:00+08:00", tomorrow()).as_str()));
    assert_eq!(run.classes.iter().find(|c| c.class == SeatClass::Second).unwrap().capacity, 540);
    assert_eq!(code(app.api.run("G1-20300101").await), (404, 40403));
    assert_eq!(code(app.api.run("NOPE").await), (400, 40002));
}
