//! The backend-agnostic store suite. Each backend's integration test hands in a fresh, empty
//! store and calls [`run_all`]; a failing check panics with the backend's name in the message.

use chepiao_domain::network::{NetworkData, Station, Stop, Train};
use chepiao_domain::{RunId, ServiceDate};

use crate::{AddPassenger, NewPassenger, RunStatus, Store, StoreError};

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

/// Run every check against `store`, which must be empty.
pub async fn run_all(store: &dyn Store) {
    empty_store_has_no_network(store).await;
    network_round_trips_and_reimport_is_idempotent(store).await;
    runs_are_created_once_per_train_and_date(store).await;
    run_status_changes_stick(store).await;
    window_limits_are_enforced(store).await;
    users_are_unique_by_name(store).await;
    passengers_belong_to_their_user(store).await;
}

async fn users_are_unique_by_name(store: &dyn Store) {
    let id = store.create_user("alice", "$argon2id$x", 1).await.unwrap().expect("created");
    assert_eq!(store.create_user("alice", "$argon2id$y", 2).await.unwrap(), None, "{}", store.backend());
    let u = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((u.id, u.password_hash.as_str()), (id, "$argon2id$x"));
    assert_eq!(store.user_by_name("bob").await.unwrap(), None);
}

async fn passengers_belong_to_their_user(store: &dyn Store) {
    let alice = store.user_by_name("alice").await.unwrap().unwrap().id;
    let bob = store.create_user("bob", "$argon2id$z", 3).await.unwrap().unwrap();
    let p = |user_id, index: u8| NewPassenger {
        user_id,
        name_enc: vec![1, 2, 3, index],
        id_type: "ID_CARD".into(),
        id_no_enc: vec![4, 5, 6, index],
        id_no_index: vec![index; 32],
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
    assert_eq!((list[0].id, list[0].name_enc.as_slice()), (first, &[1, 2, 3, 1][..]));
    assert!(list.iter().all(|x| x.user_id == alice));
    assert_eq!(store.passengers(bob).await.unwrap().len(), 1);
}

async fn empty_store_has_no_network(store: &dyn Store) {
    store.ping().await.unwrap();
    let net = store.load_network().await.unwrap();
    assert!(net.stations.is_empty() && net.trains.is_empty(), "{}: fresh store not empty", store.backend());
}

async fn network_round_trips_and_reimport_is_idempotent(store: &dyn Store) {
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

async fn runs_are_created_once_per_train_and_date(store: &dyn Store) {
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

async fn run_status_changes_stick(store: &dyn Store) {
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

async fn window_limits_are_enforced(store: &dyn Store) {
    let backwards = store.ensure_runs(date("2026-11-24"), date("2026-11-21")).await;
    assert!(matches!(backwards, Err(StoreError::Limit(_))), "{}", store.backend());
    let huge = store.runs_between(date("2026-01-01"), date("2030-01-01")).await;
    assert!(matches!(huge, Err(StoreError::Limit(_))), "{}", store.backend());
}
