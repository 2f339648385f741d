//! Online check-in over HTTP: gates only, signature, station and date checked, and a ticket
//! checks in once, ever, even when many gates scan it at once (I5).

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, postgres_url, spawn_app_with};
use crate::orders::{send, ticketed};

const GATE: &str = "g1";
const GATE_KEY: &str = "gate-secret";

async fn spawn(backend: Backend, valid_before_s: u64) -> TestApp {
    spawn_app_with(backend, |c| {
        c.gates = vec![chepiao_server::secrets::Secret(format!("{GATE}={GATE_KEY}"))];
        c.ticket_valid_before_s = valid_before_s;
    })
    .await
}

/// `n` tickets on G1 tomorrow (北京南 → 上海虹桥): the buyer's token and the QR codes.
async fn tickets(app: &TestApp, n: usize) -> (String, Vec<String>) {
    let (b, _, done) = ticketed(app, "alice", n).await;
    let qrs = done["tickets"].as_array().unwrap().iter().map(|t| t["qr"].as_str().unwrap().to_string()).collect();
    (b.token, qrs)
}

async fn check_in(app: &TestApp, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.client.post(app.url("/api/v1/checkin")).json(&body);
    if let Some(k) = key {
        req = req.header("x-gate-key", k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn a_ticket_checks_in_once(backend: Backend) {
    let app = spawn(backend, 3 * 24 * 3600).await;
    let (token, qrs) = tickets(&app, 2).await;
    let body = |qr: &str, station: &str| json!({"qr": qr, "station": station, "gate_id": GATE});
    let code = |r: &(u16, Value)| (r.0, r.1["code"].as_u64());

    assert_eq!(code(&check_in(&app, None, body(&qrs[0], "VNP")).await), (401, Some(40103)));
    assert_eq!(code(&check_in(&app, Some("wrong"), body(&qrs[0], "VNP")).await), (401, Some(40103)));
    // A passenger's token is not a gate key.
    let r = app
        .client
        .post(app.url("/api/v1/checkin"))
        .bearer_auth(&token)
        .json(&body(&qrs[0], "VNP"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(code(&check_in(&app, Some(GATE_KEY), body(&qrs[0], "AOH")).await), (422, Some(42202)));
    // A code whose payload was edited (another seat), signature kept.
    let parts: Vec<&str> = qrs[0].split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["seat"] = json!("01A");
    let forged = format!("CP1.{}.{}", b64.encode(serde_json::to_vec(&payload).unwrap()), parts[2]);
    assert_eq!(code(&check_in(&app, Some(GATE_KEY), body(&forged, "VNP")).await), (422, Some(42201)));
    assert_eq!(code(&check_in(&app, Some(GATE_KEY), body("garbage", "VNP")).await), (422, Some(42201)));

    let (status, ok) = check_in(&app, Some(GATE_KEY), body(&qrs[0], "VNP")).await;
    assert_eq!((status, ok["result"].as_str()), (200, Some("ACCEPTED")), "{ok}");
    assert_eq!(code(&check_in(&app, Some(GATE_KEY), body(&qrs[0], "VNP")).await), (409, Some(40908)));
    let sn = ok["ticket_sn"].as_str().unwrap();
    let (_, t) = send(&app, "GET", &format!("/api/v1/tickets/{sn}"), Some(&token), None).await;
    assert_eq!(t["status"], "CHECKED_IN");

    // Many gates scan the other ticket at once: one of them lets it through.
    let mut scans = Vec::new();
    for _ in 0..16 {
        let (client, url, b) = (app.client.clone(), app.url("/api/v1/checkin"), body(&qrs[1], "VNP"));
        scans.push(tokio::spawn(async move {
            client.post(url).header("x-gate-key", GATE_KEY).json(&b).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for s in scans {
        statuses.push(s.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
}

#[tokio::test]
async fn a_ticket_checks_in_once_sqlite() {
    a_ticket_checks_in_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_ticket_checks_in_once_postgres() {
    if postgres_url().is_none() {
        return;
    }
    a_ticket_checks_in_once(Backend::Postgres).await;
}

/// A code is valid from `ticket_valid_before_s` before departure: with 0, tomorrow's ticket is
/// not valid today.
#[tokio::test]
async fn a_ticket_for_another_day_is_refused() {
    let app = spawn(Backend::Sqlite, 0).await;
    let (_, qrs) = tickets(&app, 1).await;
    let (status, e) = check_in(&app, Some(GATE_KEY), json!({"qr": qrs[0], "station": "VNP", "gate_id": GATE})).await;
    assert_eq!((status, e["code"].as_u64()), (422, Some(42203)), "{e}");
}
