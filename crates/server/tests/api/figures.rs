//! The operator's figures over HTTP: sales statistics (by day, train and class; by channel and
//! source) equal to what the buyers did, live figures, the audit log's verification (and a
//! forged entry found), a sale's waiting room; and the embedded console.

use std::time::Duration;

use chepiao_api::headers;
use chepiao_api::stats::{SalesCounts, SalesStats};
use chepiao_domain::SeatClass;

use crate::app::{ADMIN_KEY, Backend, Buyer, TestApp, code, g1, order_req, tomorrow, wait_until};

/// The counts of `class` over every row of G1 (a test may straddle China's midnight).
fn g1_class(stats: &SalesStats, class: SeatClass) -> SalesCounts {
    let mut c = SalesCounts::default();
    for r in stats.rows.iter().filter(|r| r.train_code == "G1" && r.class == class.as_str()) {
        let n = &r.counts;
        c.placed += n.placed;
        c.paid += n.paid;
        c.ticketed += n.ticketed;
        c.expired += n.expired;
        c.cancelled += n.cancelled;
        c.refunded += n.refunded;
        c.seats += n.seats;
        c.revenue_fen += n.revenue_fen;
        c.refunds_fen += n.refunds_fen;
    }
    c
}

/// A buyer whose orders say they come from `source` (`X-Client`), or from no header.
async fn buyer_from(app: &TestApp, name: &str, n: usize, source: Option<&str>) -> Buyer {
    let mut b = app.buyer(name, n).await;
    if let Some(s) = source {
        b.api = b.api.with_header(headers::CLIENT, s);
    }
    b
}

/// Around today (China time): yesterday to tomorrow.
fn days() -> String {
    let today = tomorrow().add_days(-1);
    format!("from={}&to={}", today.add_days(-1), today.add_days(1))
}

async fn sales_statistics_follow_the_orders(backend: Backend) {
    let app = crate::app::spawn_after_sale(backend).await;
    // Alice (web): two second-class seats, paid, ticketed, one refunded.
    let alice = buyer_from(&app, "alice", 2, Some("web")).await;
    let done = app.buy(&alice, "a-1", SeatClass::Second, 2).await;
    let refund = alice.api.refund(&done.tickets.as_ref().unwrap()[0].ticket_sn).await.unwrap();
    // Bob (app): business class, cancelled. Carol (no header: api): first class, left to
    // expire. Dave (console): second class, unpaid.
    let bob = buyer_from(&app, "bob", 1, Some("app")).await;
    let req = order_req("b-1", &g1(), "VNP", "AOH", SeatClass::Business, &bob.passengers);
    let bob_order = bob.api.create_order(&req, None).await.unwrap().body.order_no;
    bob.api.cancel(&bob_order).await.unwrap();
    let carol = buyer_from(&app, "carol", 1, None).await;
    let req = order_req("c-1", &g1(), "VNP", "AOH", SeatClass::First, &carol.passengers);
    let carol_order = carol.api.create_order(&req, None).await.unwrap().body.order_no;
    let dave = buyer_from(&app, "dave", 1, Some("console")).await;
    let req = order_req("d-1", &g1(), "VNP", "AOH", SeatClass::Second, &dave.passengers);
    dave.api.create_order(&req, None).await.unwrap();

    live_figures_show_the_rush(&app).await;
    app.advance(Duration::from_secs(app.state.config.pay_window_s + 1));
    app.wait_status(&carol, &carol_order, "EXPIRED").await;
    // Dave's expires too now; pay windows are the same. Wait for the refund's money.
    app.wait_status(&dave, &dave.api.orders(None, 1, 1).await.unwrap().items[0].order_no, "EXPIRED").await;
    wait_until("the refund done", || async {
        app.store().ticket_refund(&refund.refund_no).await.unwrap().unwrap().status == chepiao_store::RefundStatus::Done
    })
    .await;

    let stats = app.api.admin_sales(ADMIN_KEY, &days()).await.unwrap();
    let second = g1_class(&stats, SeatClass::Second);
    let expect = SalesCounts {
        placed: 2,
        paid: 1,
        ticketed: 1,
        expired: 1,
        cancelled: 0,
        refunded: 1,
        seats: 3,
        conversion: 0.0,
        revenue_fen: done.amount_fen,
        refunds_fen: refund.refund_fen,
    };
    assert_eq!(SalesCounts { conversion: 0.0, ..second }, expect, "{stats:?}");
    let business = g1_class(&stats, SeatClass::Business);
    assert_eq!((business.placed, business.cancelled, business.paid, business.revenue_fen), (1, 1, 0, 0));
    let first = g1_class(&stats, SeatClass::First);
    assert_eq!((first.placed, first.expired, first.conversion), (1, 1, 0.0));
    let t = &stats.totals;
    assert_eq!((t.placed, t.paid, t.ticketed, t.expired, t.cancelled, t.refunded), (4, 1, 1, 2, 1, 1), "{t:?}");
    assert_eq!((t.conversion, t.revenue_fen, t.refunds_fen), (0.25, done.amount_fen, refund.refund_fen));
    assert_eq!(stats.by_channel.len(), 1, "{:?}", stats.by_channel);
    let mockpay = &stats.by_channel[0];
    assert_eq!((mockpay.channel.as_str(), mockpay.payments, mockpay.amount_fen), ("mockpay", 1, done.amount_fen));
    assert_eq!(mockpay.refunds_fen, refund.refund_fen);
    let sources: Vec<(&str, u64, u64)> =
        stats.by_source.iter().map(|s| (s.source.as_str(), s.placed, s.paid)).collect();
    assert_eq!(sources, [("api", 1, 0), ("app", 1, 0), ("console", 1, 0), ("web", 1, 1)]);
    assert!(!stats.truncated);

    // Narrowed to one class: its row only, and the totals of its orders.
    let narrow = app.api.admin_sales(ADMIN_KEY, &format!("{}&train=G1&class=SECOND", days())).await.unwrap();
    assert!(narrow.rows.iter().all(|r| r.class == "SECOND") && !narrow.rows.is_empty());
    assert_eq!(narrow.totals.placed, 2);
    let none = app.api.admin_sales(ADMIN_KEY, &format!("{}&train=G2", days())).await.unwrap();
    assert_eq!((none.rows.len(), none.totals.placed, none.by_channel.len()), (0, 0, 0));
    refusals(&app).await;
    audit_verification(&app, backend).await;
}

crate::on_both_backends!(
    sales_statistics_follow_the_orders,
    sales_statistics_follow_the_orders_sqlite,
    sales_statistics_follow_the_orders_postgres
);

/// Bad parameters are 400s with a code; no admin key is a 401.
async fn refusals(app: &TestApp) {
    for q in ["from=2026-01-02&to=2026-01-01", "from=2026-01-01&to=2026-03-01", "from=yesterday", "class=ECONOMY"] {
        assert_eq!(code(app.api.admin_sales(ADMIN_KEY, q).await), (400, 40002), "{q}");
    }
    assert_eq!(code(app.api.admin_sales("wrong-key-0123456789", &days()).await).0, 401);
    assert_eq!(code(app.api.admin_live("").await).0, 401);
    assert_eq!(code(app.api.admin_room(ADMIN_KEY, "no-such-sale").await).0, 404);
}

/// Four orders on G1 just now: G1 is the hottest run, with the engine's 余票.
async fn live_figures_show_the_rush(app: &TestApp) {
    let live = app.api.admin_live(ADMIN_KEY).await.unwrap();
    let hot = live.hottest_runs.first().expect("a hot run");
    assert_eq!((hot.run_id.as_str(), hot.orders), (g1().as_str(), 4), "{live:?}");
    let second = hot.remaining.iter().find(|c| c.class == "SECOND").unwrap().remaining;
    assert_eq!(second, app.free_seats(SeatClass::Second).await, "the whole run's 余票");
    let r = &live.risk;
    assert_eq!((r.allowed + r.slow_lane, r.refused), (4, 0), "four orders checked: {r:?}");
    assert!(live.engine.runs > 0 && live.engine.live_holds >= 2, "{:?}", live.engine);
    assert_eq!(live.outbox.dead, 0);
}

/// The chain verifies; an entry edited behind the server's back is named.
async fn audit_verification(app: &TestApp, backend: Backend) {
    let ok = app.api.admin_audit_verify(ADMIN_KEY, 0).await.unwrap();
    assert!(ok.intact && ok.entries >= 2 && ok.problem.is_none() && ok.next_after.is_none(), "{ok:?}");
    let rest = app.api.admin_audit_verify(ADMIN_KEY, 1).await.unwrap();
    assert_eq!((rest.entries, rest.intact), (ok.entries - 1, true), "from the second entry on");
    assert_eq!(code(app.api.admin_audit_verify(ADMIN_KEY, -1).await), (400, 40002));
    let unlock = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update;",
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change;",
    };
    app.sql(&format!("{unlock} UPDATE audit_log SET detail = 'forged' WHERE seq = 2;")).await;
    let broken = app.api.admin_audit_verify(ADMIN_KEY, 0).await.unwrap();
    assert!(!broken.intact, "{broken:?}");
    assert_eq!(
        (broken.entries, broken.problem.as_deref()),
        (1, Some("audit entry 2: its hash does not match its contents (edited)"))
    );
}

/// A sale's waiting room: people waiting, then admitted as it opens.
#[tokio::test]
async fn the_waiting_room_figures_move() {
    let sale = "figures-sale".to_string();
    let config = chepiao_server::hotsale::SaleConfig {
        sale_id: sale.clone(),
        opens_at: (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339(),
        run_ids: vec![g1()],
        admit_per_s: 10,
    };
    let app = crate::app::spawn_app_with(Backend::Sqlite, |c| c.sales = vec![config]).await;
    for name in ["waiter1", "waiter2", "waiter3"] {
        let (api, _, _) = app.user(name).await;
        api.join_queue(&sale).await.unwrap();
    }
    let before = app.api.admin_room(ADMIN_KEY, &sale).await.unwrap();
    assert_eq!((before.sale_id.as_str(), before.waiting, before.admitted), (sale.as_str(), 3, 0), "{before:?}");
    app.advance(Duration::from_secs(120));
    wait_until("all admitted", || async { app.api.admin_room(ADMIN_KEY, &sale).await.unwrap().admitted == 3 }).await;
    assert_eq!(app.api.admin_room(ADMIN_KEY, &sale).await.unwrap().waiting, 0);
}

/// The console is served from the binary: its page and the assets the page names.
#[tokio::test]
async fn the_console_is_embedded() {
    let app = crate::app::spawn_app(Backend::Sqlite).await;
    let page = app.get("/").await;
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("<div id=\"app\">"), "{html}");
    let script = html.split("src=\"./").nth(1).and_then(|s| s.split('"').next()).expect("a script");
    let js = app.get(&format!("/{script}")).await;
    assert_eq!(js.status(), 200, "{script}");
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(js.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert!(js.text().await.unwrap().contains("/api/v1/"), "the console speaks to the API");
    let missing = app.get("/assets/nothing.js").await;
    assert_eq!(missing.status(), 404);
}

/// The console's types are generated from `web/openapi.json`: it must be the served spec, so
/// that a change of the API reaches the console's build (and breaks it where it must).
#[tokio::test]
async fn the_console_is_built_against_the_served_api() {
    let app = crate::app::spawn_app(Backend::Sqlite).await;
    let served: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let saved = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/openapi.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert!(
        served == saved,
        "web/openapi.json is not the served spec: start a server, run `cd web && CHEPIAO_URL=… npm run spec:fetch \
         && npm run build`, and commit web/openapi.json, web/src/api/schema.d.ts and web/dist"
    );
}
