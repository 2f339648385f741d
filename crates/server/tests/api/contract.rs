//! The contract's gaps and abuse (#14), over HTTP: what a client written only against API.md
//! meets (no device id, many accounts behind one address, a password change), 12306's purchase
//! rules, each refused with its code and allowed again when it should be, and the safe
//! defaults (mockpay off on PostgreSQL, its notify never sent where a request's Host points, a
//! spoofed `X-Real-IP` ignored).

use std::time::Duration;

use chepiao_api::headers;
use chepiao_domain::SeatClass;
use chepiao_server::Config;

use crate::app::{Backend, TestApp, code, g1, order_req, run_on, spawn_app, spawn_app_with, tomorrow};

/// People behind one carrier-grade NAT in this test (the docs give the 2,000-person figure of
/// `chepiao load --scenario nat`).
const NAT_PEOPLE: usize = 210;

/// The defaults a real deployment starts with for everything the risk checks and per-address
/// limits look at (the test servers lift them for the flow's tests), no trusted proxy.
fn production_limits(c: &mut Config) {
    let d = Config::default();
    c.risk_rate_per_s = d.risk_rate_per_s;
    c.risk_burst = d.risk_burst;
    c.risk_slow_score = d.risk_slow_score;
    c.risk_refuse_score = d.risk_refuse_score;
    c.risk_refuse = d.risk_refuse;
    c.risk_ip_rate_per_s = d.risk_ip_rate_per_s;
    c.ip_rate_per_s = d.ip_rate_per_s;
    c.ip_burst = d.ip_burst;
    c.trusted_proxies = d.trusted_proxies;
}

/// Many honest people behind one address, none sending a device id: every one of them
/// registers, logs in, adds a passenger and places an order.
async fn honest_users_behind_one_address_all_buy(backend: Backend) {
    let app = spawn_app_with(backend, production_limits).await;
    let people = (0..NAT_PEOPLE).map(|i| {
        let app = &app;
        async move {
            let name = format!("nat{i}");
            app.api.register(&name, "correct horse").await?;
            let token = app.api.login(&name, "correct horse").await?.token;
            let api = app.api.with_token(&token);
            let p = api.add_passenger("旅客", "PASSPORT", &format!("E{:07}", i + 1)).await?;
            // Half on each of two days, so no class sells out.
            let run = run_on("G1", tomorrow().add_days((i % 2) as i64));
            let req = order_req(&format!("nat-{i}"), &run, "VNP", "AOH", SeatClass::Second, &[p.passenger_id]);
            api.create_order(&req, None).await.map(|a| a.status)
        }
    });
    // Sixteen at a time: registering and logging in hash a password each, one per core at a
    // time on the server, so hundreds in the same instant would wait past the time limit.
    let answers: Vec<_> = futures_util::StreamExt::collect(futures_util::StreamExt::buffer_unordered(
        futures_util::stream::iter(people),
        16,
    ))
    .await;
    let refused: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok(201))).collect();
    assert!(refused.is_empty(), "{} of {NAT_PEOPLE} refused, e.g. {:?}", refused.len(), refused.first());
}

crate::on_both_backends!(
    honest_users_behind_one_address_all_buy,
    honest_users_behind_one_address_all_buy_sqlite,
    honest_users_behind_one_address_all_buy_postgres
);

/// A password change: 40009 for a wrong old password; afterwards the old token is refused and
/// the new one works; a logout ends the new one too.
async fn a_password_change_ends_earlier_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, old_token, _) = app.user("alice").await;
    assert_eq!(code(alice.change_password("wrong horse", "battery staple").await), (400, 40009));
    assert_eq!(code(alice.change_password("correct horse", "short").await), (400, 40002));
    alice.passengers().await.expect("a refused change changes nothing");
    let changed = alice.change_password("correct horse", "battery staple").await.unwrap();
    assert_ne!(changed.token, old_token);
    assert_eq!(code(app.api.with_token(&old_token).passengers().await), (401, 40007), "the old token");
    assert_eq!(code(app.api.login("alice", "correct horse").await).1, 40004, "the old password");
    let fresh = app.api.with_token(&changed.token);
    fresh.passengers().await.unwrap();
    let again = app.api.with_token(&app.api.login("alice", "battery staple").await.unwrap().token);
    again.logout().await.unwrap();
    assert_eq!(code(fresh.passengers().await), (401, 40007), "a logout ends every token");
    assert_eq!(code(again.passengers().await), (401, 40007));
}

crate::on_both_backends!(
    a_password_change_ends_earlier_tokens,
    a_password_change_ends_earlier_tokens_sqlite,
    a_password_change_ends_earlier_tokens_postgres
);

/// Logins are throttled per username whatever the address: past ten tries at once, 429.
async fn logins_are_throttled_per_username(backend: Backend) {
    let app = spawn_app(backend).await;
    app.user("alice").await;
    let mut codes = Vec::new();
    for i in 0..12 {
        let from = app.api.with_header(headers::REAL_IP, &format!("10.0.0.{i}"));
        codes.push(code(from.login("alice", "wrong horse").await).0);
    }
    // Ten tries at once (the login of `user` was the first), then one every six seconds.
    assert!(codes[..9].iter().all(|&c| c == 400), "{codes:?}");
    assert!(codes[9..].iter().all(|&c| c == 429), "{codes:?}");
    // Another user is not slowed down by it.
    app.user("bob").await;
}

crate::on_both_backends!(
    logins_are_throttled_per_username,
    logins_are_throttled_per_username_sqlite,
    logins_are_throttled_per_username_postgres
);

/// 12306's rules: one unpaid order; no passenger on two overlapping journeys; three
/// cancellations a day. Each is refused with its code, and allowed again once its reason is
/// gone (paid, cancelled, the next day).
async fn purchase_rules_refuse_and_allow_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.buyer("alice", 3).await;
    let p = &b.passengers;
    let on = |key: &str, run: &str, to: &str, who: &[i64]| order_req(key, run, "VNP", to, SeatClass::Second, who);
    let day2 = run_on("G1", tomorrow().add_days(1));

    // One unpaid order at a time; paying it lets the next one through.
    let first = b.api.create_order(&on("r1", &g1(), "AOH", &p[0..1]), None).await.unwrap().body.order_no;
    assert_eq!(code(b.api.create_order(&on("r2", &day2, "AOH", &p[1..2]), None).await), (409, 40913));
    assert_eq!(b.api.create_order(&on("r1", &g1(), "AOH", &p[0..1]), None).await.unwrap().status, 200, "a retry");
    app.pay(&b, &first).await;
    app.wait_status(&b, &first, "TICKETED").await;

    // Passenger 0 travels on G1 tomorrow: another journey that overlaps it is refused (on G1
    // itself, or on another train under way at the same time), one on another day is not.
    assert_eq!(code(b.api.create_order(&on("r3", &g1(), "JGK", &p[0..1]), None).await), (409, 40914));
    let trains = app.api.trains("VNP", "AOH", &tomorrow().to_string()).await.unwrap();
    let g1_trip = trains.iter().find(|t| t.train_code == "G1").unwrap();
    let (leaves, arrives) = (g1_trip.from.departs_at.to_string(), g1_trip.to.arrives_at.to_string());
    let meanwhile = trains
        .iter()
        .find(|t| {
            t.train_code != "G1" && t.from.departs_at.to_string() > leaves && t.from.departs_at.to_string() < arrives
        })
        .expect("another train leaves 北京南 for 上海虹桥 while G1 is under way");
    let run = meanwhile.run_id.to_string();
    assert_eq!(code(b.api.create_order(&on("r3b", &run, "AOH", &p[0..1]), None).await), (409, 40914), "{run}");
    let second = b.api.create_order(&on("r4", &day2, "AOH", &p[0..1]), None).await.unwrap().body.order_no;
    // A cancelled order frees its passengers.
    b.api.cancel(&second).await.unwrap();
    let third = b.api.create_order(&on("r5", &day2, "AOH", &p[0..1]), None).await.unwrap().body.order_no;
    b.api.cancel(&third).await.unwrap();

    // The third cancellation of the day is the last: ordering opens again tomorrow.
    let fourth = b.api.create_order(&on("r6", &day2, "AOH", &p[1..2]), None).await.unwrap().body.order_no;
    b.api.cancel(&fourth).await.unwrap();
    assert_eq!(code(b.api.create_order(&on("r7", &day2, "AOH", &p[1..2]), None).await), (409, 40915));
    app.advance(Duration::from_secs(24 * 3600));
    let next_day = b.api.create_order(&on("r8", &day2, "AOH", &p[1..2]), None).await.unwrap();
    assert_eq!(next_day.status, 201);
}

crate::on_both_backends!(
    purchase_rules_refuse_and_allow_again,
    purchase_rules_refuse_and_allow_again_sqlite,
    purchase_rules_refuse_and_allow_again_postgres
);

/// One person, many accounts: the overlap rule follows the ID number, not an account's entry,
/// and the refusal does not name the other account's order.
async fn one_person_travels_once_whatever_the_account(backend: Backend) {
    let app = spawn_app(backend).await;
    // Both accounts add passport E7654321: the same person.
    let (a, _, _) = app.user("alice").await;
    let (b, _, _) = app.user("mallory").await;
    let pa = a.add_passenger("张三", "PASSPORT", "E7654321").await.unwrap().passenger_id;
    let pb = b.add_passenger("张三", "PASSPORT", "E7654321").await.unwrap().passenger_id;
    let req = |key: &str, who: i64| order_req(key, &g1(), "VNP", "AOH", SeatClass::Second, &[who]);
    let first = a.create_order(&req("a1", pa), None).await.unwrap().body.order_no;
    let refused = b.create_order(&req("b1", pb), None).await.unwrap_err();
    assert_eq!((refused.status(), refused.code()), (Some(409), Some(40914)));
    assert!(!refused.to_string().contains(&first), "another account's order is not named: {refused}");
    // Once the first order is cancelled, the person may travel on the other account's order.
    a.cancel(&first).await.unwrap();
    assert_eq!(b.create_order(&req("b2", pb), None).await.unwrap().status, 201);
}

crate::on_both_backends!(
    one_person_travels_once_whatever_the_account,
    one_person_travels_once_whatever_the_account_sqlite,
    one_person_travels_once_whatever_the_account_postgres
);

/// Each rule can be switched off.
#[tokio::test]
async fn purchase_rules_are_configurable() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.rule_one_unpaid_order = false;
        c.rule_no_overlapping_trips = false;
        c.rule_cancellations_per_day_max = 0;
    })
    .await;
    let b = app.buyer("alice", 1).await;
    for i in 0..5 {
        let req = order_req(&format!("k{i}"), &g1(), "VNP", "AOH", SeatClass::Second, &b.passengers);
        let order = b.api.create_order(&req, None).await.unwrap().body.order_no;
        if i % 2 == 0 {
            b.api.cancel(&order).await.unwrap();
        }
    }
    assert_eq!(b.api.orders(None, 1, 20).await.unwrap().total, 5);
}

/// On PostgreSQL (a production store) mockpay is off unless the configuration turns it on.
#[tokio::test]
async fn mockpay_is_off_on_postgres_by_default() {
    if !crate::app::available(Backend::Postgres, "mockpay_is_off_on_postgres_by_default") {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |c| c.mockpay = None).await;
    let b = app.buyer("alice", 1).await;
    let req = order_req("k", &g1(), "VNP", "AOH", SeatClass::Second, &b.passengers);
    let order = b.api.create_order(&req, None).await.unwrap().body.order_no;
    assert_eq!(code(b.api.pay(&order, "mockpay").await), (404, 40407));
    let ok = crate::app::notify_body("PNOSUCH", 1, "SUCCESS", "n-1", chrono::Utc::now().timestamp());
    assert_eq!(code(app.notify(&ok, crate::app::MOCKPAY_SECRET).await).0, 404, "its notify route is closed too");
}

/// The pay page's notify goes to the server itself (or `public_url`), never where the
/// request's `Host` header points: a listener at the forged address hears nothing, and the
/// payment still lands.
async fn the_pay_page_ignores_a_forged_host(backend: Backend) {
    let app = spawn_app(backend).await;
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forged = trap.local_addr().unwrap().to_string();
    let b = app.buyer("alice", 1).await;
    let order = press_pay_with_host(&app, &b, &forged).await;
    app.wait_status(&b, &order, "TICKETED").await;
    let heard = tokio::time::timeout(Duration::from_millis(500), trap.accept()).await;
    assert!(heard.is_err(), "the notify went to the forged Host");
}

crate::on_both_backends!(
    the_pay_page_ignores_a_forged_host,
    the_pay_page_ignores_a_forged_host_sqlite,
    the_pay_page_ignores_a_forged_host_postgres
);

/// With `public_url` set, the notify goes there (a listener standing for the public address
/// hears it), and still not where the request's `Host` points.
#[tokio::test]
async fn the_pay_page_notifies_public_url() {
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", public.local_addr().unwrap());
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forged = trap.local_addr().unwrap().to_string();
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_url = Some(public_url)).await;
    let b = app.buyer("alice", 1).await;
    press_pay_with_host(&app, &b, &forged).await;
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let (mut conn, _) = public.accept().await.unwrap();
        let mut head = vec![0; 64];
        let n = conn.read(&mut head).await.unwrap();
        String::from_utf8_lossy(&head[..n]).into_owned()
    })
    .await
    .expect("the notify never reached public_url");
    assert!(heard.starts_with("POST /api/v1/payments/notify/mockpay "), "{heard}");
    let forged_heard = tokio::time::timeout(Duration::from_millis(500), trap.accept()).await;
    assert!(forged_heard.is_err(), "the notify went to the forged Host");
}

/// `b` orders a seat on G1 and presses mockpay's pay page (at the server itself, whatever
/// address the pay URL names) with a forged `Host`; the order.
async fn press_pay_with_host(app: &TestApp, b: &crate::app::Buyer, host: &str) -> String {
    let req = order_req("k", &g1(), "VNP", "AOH", SeatClass::Second, &b.passengers);
    let order = b.api.create_order(&req, None).await.unwrap().body.order_no;
    let started = b.api.pay(&order, "mockpay").await.unwrap();
    let page = &started.pay_url[started.pay_url.find("/mockpay/").expect("a mockpay pay URL")..];
    let pressed = app.api.request(reqwest::Method::POST, page).header("host", host).send().await.unwrap();
    assert_eq!(pressed.status(), 202);
    order
}

/// `X-Real-IP` counts only from a trusted proxy: from anyone else each request is the peer's,
/// however many addresses it claims.
async fn a_spoofed_real_ip_is_ignored(backend: Backend) {
    let limited = |trusted: Vec<String>| {
        move |c: &mut Config| {
            c.ip_rate_per_s = 1;
            c.ip_burst = 3;
            c.trusted_proxies = trusted;
        }
    };
    let statuses = |app: TestApp| async move {
        let mut out = Vec::new();
        for i in 0..6 {
            let r = app.api.with_header(headers::REAL_IP, &format!("10.1.0.{i}")).stations("北京").await;
            out.push(r.map(|_| 200).unwrap_or_else(|e| e.status().unwrap_or(0)));
        }
        out
    };
    let untrusted = statuses(spawn_app_with(backend, limited(Vec::new())).await).await;
    assert_eq!(untrusted.iter().filter(|&&s| s == 429).count(), 3, "one address: {untrusted:?}");
    let trusted = statuses(spawn_app_with(backend, limited(vec!["127.0.0.1".into()])).await).await;
    assert!(trusted.iter().all(|&s| s == 200), "six addresses behind a trusted proxy: {trusted:?}");
}

crate::on_both_backends!(
    a_spoofed_real_ip_is_ignored,
    a_spoofed_real_ip_is_ignored_sqlite,
    a_spoofed_real_ip_is_ignored_postgres
);
