//! Online check-in over HTTP: gates only, signature, station and date checked, and a ticket
//! checks in once, ever, even when many gates scan it at once (I5).

use chepiao_api::orders::TicketOut;

use crate::app::{Backend, GATE_KEY, TestApp, code, scan, spawn_app_with};

async fn spawn(backend: Backend, valid_before_s: u64) -> TestApp {
    spawn_app_with(backend, |c| c.ticket_valid_before_s = valid_before_s).await
}

/// `n` tickets on G1 tomorrow (北京南 → 上海虹桥): the buyer's client and the tickets.
async fn tickets(app: &TestApp, n: usize) -> (chepiao_api::Client, Vec<TicketOut>) {
    let (b, done) = app.ticketed("alice", n).await;
    (b.api, done.tickets.unwrap())
}

async fn a_ticket_checks_in_once(backend: Backend) {
    let app = spawn(backend, 3 * 24 * 3600).await;
    let (alice, tickets) = tickets(&app, 2).await;
    let qr = |i: usize| tickets[i].qr.as_str();
    assert_eq!(code(app.api.check_in("", &scan(qr(0), "VNP")).await), (401, 40103));
    assert_eq!(code(app.api.check_in("wrong", &scan(qr(0), "VNP")).await), (401, 40103));
    // A passenger's token is not a gate key.
    assert_eq!(code(alice.check_in("", &scan(qr(0), "VNP")).await).0, 401);
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan(qr(0), "AOH")).await), (422, 42202));
    // A code whose payload was edited (another seat), signature kept.
    let parts: Vec<&str> = qr(0).split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["seat"] = serde_json::json!("01A");
    let forged = format!("CP1.{}.{}", b64.encode(serde_json::to_vec(&payload).unwrap()), parts[2]);
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan(&forged, "VNP")).await), (422, 42201));
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan("garbage", "VNP")).await), (422, 42201));

    let ok = app.api.check_in(GATE_KEY, &scan(qr(0), "VNP")).await.unwrap();
    assert_eq!(ok.result, "ACCEPTED");
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan(qr(0), "VNP")).await), (409, 40908));
    assert_eq!(alice.ticket(&ok.ticket_sn).await.unwrap().status, "CHECKED_IN");

    // Many gates scan the other ticket at once: one of them lets it through.
    let scans: Vec<_> = (0..16)
        .map(|_| {
            let (api, req) = (app.api.clone(), scan(qr(1), "VNP"));
            tokio::spawn(
                async move { api.check_in(GATE_KEY, &req).await.map_or_else(|e| e.status().unwrap_or(0), |_| 200) },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for s in scans {
        statuses.push(s.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
}

crate::on_both_backends!(a_ticket_checks_in_once, a_ticket_checks_in_once_sqlite, a_ticket_checks_in_once_postgres);

/// A code is valid from `ticket_valid_before_s` before departure: with 0, tomorrow's ticket is
/// not valid today.
#[tokio::test]
async fn a_ticket_for_another_day_is_refused() {
    let app = spawn(Backend::Sqlite, 0).await;
    let (_, tickets) = tickets(&app, 1).await;
    assert_eq!(code(app.api.check_in(GATE_KEY, &scan(&tickets[0].qr, "VNP")).await), (422, 42203));
}
