//! The binary itself: first start imports the bundled network and serves it; SIGTERM drains
//! and exits 0; bad configuration fails with a message, not a panic.

#[path = "cli/cluster.rs"]
mod cluster;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn chepiao() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chepiao"));
    // Keep the developer's CHEPIAO_* settings out of these tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("CHEPIAO_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chepiao-cli-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn serve_imports_on_first_start_and_stops_cleanly_on_sigterm() {
    let dir = temp_dir();
    let mut child = chepiao()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("the URL is printed").to_string();
    let addr = url.trim_start_matches("http://").trim_end_matches('/');

    // Speak HTTP by hand: a search proves the network was imported.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /api/v1/stations?q=VNP HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("北京南"), "{response}");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(dir.join("chepiao.db").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_configuration_is_an_error_message() {
    let out = chepiao().args(["serve", "--sale-window-days", "0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sale_window_days"), "{err}");

    let out = chepiao().args(["serve"]).env("CHEPIAO_LISTEN", "not-an-address").output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn import_reports_what_it_skipped() {
    let dir = temp_dir();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/rail");
    let out = chepiao().arg("import").arg("--data-dir").arg(&dir).arg("--data").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3379 stations, 8736 trains"), "{stdout}");
    assert!(stdout.contains("抚顺北") && stdout.contains("西安南"), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Start `chepiao serve` on `dir` with `env`; the child and its address.
fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = chepiao();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("the URL is printed");
    (child, url.trim_end_matches('/').to_string())
}

/// SIGKILL after the payment was acknowledged but before any ticket was issued (the relay is
/// paused for the first run): after a restart the order still reaches TICKETED (I2, I4). Then
/// the ticket passes an offline `chepiao gate`, and the audit chain is checked.
#[tokio::test]
async fn a_paid_order_is_ticketed_after_sigkill() {
    use chepiao_api::Client;
    use chepiao_api::payments::NotifyBody;
    use serde_json::Value;
    let dir = temp_dir();
    let secret = "kill-test-secret";
    let (mut child, base) = serve(&dir, &[("CHEPIAO_RELAY_PAUSED", "true"), ("CHEPIAO_MOCKPAY_SECRET", secret)]);
    let anonymous = Client::new(&base);
    anonymous.register("kim", "correct horse").await.unwrap();
    let token = anonymous.login("kim", "correct horse").await.unwrap().token;
    let kim = anonymous.with_token(&token);
    let pid = kim.add_passenger("金一", "PASSPORT", "E7654321").await.unwrap().passenger_id;
    let order = kim.create_order(&g1_order("k1", pid), None).await.unwrap();
    assert_eq!(order.status, 201, "{:?}", order.body);
    let order_no = order.body.order_no;
    let started = kim.pay(&order_no, "mockpay").await.unwrap();
    let notify = NotifyBody {
        out_trade_no: started.payment_no.clone(),
        payment_no: started.payment_no,
        amount_fen: order.body.amount_fen,
        status: "SUCCESS".into(),
        txn_id: "T1".into(),
        ts: chrono::Utc::now().timestamp(),
        nonce: "n1".into(),
    };
    let body = serde_json::to_vec(&notify).unwrap();
    let signature = chepiao_flow::channels::sign(secret.as_bytes(), &body);
    assert_eq!(anonymous.notify("mockpay", &body, &signature).await.unwrap().result, "PAID", "acknowledged");
    assert_eq!(kim.order(&order_no).await.unwrap().status, "PAID");

    Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();

    let (mut child, base2) = serve(
        &dir,
        &[
            ("CHEPIAO_MOCKPAY_SECRET", secret),
            ("CHEPIAO_GATE_KEYS", "g9=gate-key-of-g9-0001"),
            ("CHEPIAO_TICKET_VALID_BEFORE_S", "259200"),
        ],
    );
    let kim = kim.with_base(&base2);
    let mut qr = String::new();
    let mut status = String::new();
    for _ in 0..200 {
        let o = kim.order(&order_no).await.unwrap();
        status = o.status.clone();
        if status == "TICKETED" {
            let tickets = o.tickets.unwrap();
            assert_eq!(tickets.len(), 1);
            qr = tickets[0].qr.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "TICKETED");

    // `chepiao gate`: sync, scan offline (once), upload.
    let state = dir.join("gate.json");
    let gate = |args: &[&str]| {
        chepiao()
            .arg("gate")
            .arg("--state")
            .arg(&state)
            .args(["--gate-key", "gate-key-of-g9-0001"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = gate(&["sync", "--server", &base2, "--gate-id", "g9"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gate(&["scan", "--station", "VNP", &qr]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ACCEPTED"));
    let out = gate(&["scan", "--station", "VNP", &qr]);
    assert_eq!(out.status.code(), Some(3), "a second scan is refused");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ALREADY_SCANNED"));
    let out = gate(&["upload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"][0]["result"], "ACCEPTED", "{report}");
    let out = chepiao().arg("gate").arg("--state").arg(&state).arg("upload").output().unwrap();
    assert!(!out.status.success(), "no key, no upload");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();

    // The payment is in the audit log, whose chain verifies until a row is edited.
    let verify = || chepiao().args(["audit", "verify", "--data-dir"]).arg(&dir).output().unwrap();
    let out = verify();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log intact"));
    {
        let db = rusqlite::Connection::open(dir.join("chepiao.db")).unwrap();
        let refused = db.execute("UPDATE audit_log SET detail = 'forged' WHERE seq = 1", []);
        assert!(refused.is_err(), "the log is append-only");
        // Someone with the database file in hand drops the guard and edits anyway.
        db.execute("DROP TRIGGER audit_log_no_update", []).unwrap();
        db.execute("UPDATE audit_log SET detail = 'forged' WHERE seq = 1", []).unwrap();
    }
    let out = verify();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit entry 1"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// A rush of buyers on one run, the server killed with SIGKILL at random moments and restarted
/// on the same data directory, again and again. Placements cut between the engine's hold and
/// the order row leave holds no order carries; the reconciliation at each start releases them.
/// At the end every seat the engine holds belongs to a live order (no phantom sell-out), and no
/// live order shows a seat the engine does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_rush_leaves_no_seat_held_without_an_order() {
    use chepiao_api::Client;
    let dir = temp_dir();
    let env = [
        ("CHEPIAO_RISK_RATE_PER_S", "100000"),
        ("CHEPIAO_RISK_BURST", "100000"),
        ("CHEPIAO_IP_RATE_PER_S", "1000000"),
        ("CHEPIAO_IP_BURST", "1000000"),
        ("CHEPIAO_RISK_SLOW_SCORE", "100"),
        ("CHEPIAO_RISK_REFUSE_SCORE", "100"),
        // Each rusher orders again and again on one run: the purchase rules would refuse all
        // but the first (this test is about holds cut from their orders, not the rules).
        ("CHEPIAO_RULE_ONE_UNPAID_ORDER", "false"),
        ("CHEPIAO_RULE_NO_OVERLAPPING_TRIPS", "false"),
        ("CHEPIAO_RULE_CANCELLATIONS_PER_DAY_MAX", "0"),
    ];
    let (mut child, base) = serve(&dir, &env);
    let api = Client::new(&base);
    let mut buyers = Vec::new();
    for i in 0..24 {
        let name = format!("rusher{i}");
        api.register(&name, "correct horse").await.unwrap();
        let b = api.with_token(&api.login(&name, "correct horse").await.unwrap().token);
        let p = b.add_passenger("旅客", "PASSPORT", &format!("E{:07}", i + 1)).await.unwrap();
        buyers.push((b, p.passenger_id));
    }
    let run = format!("G1-{}", tomorrow().format("%Y%m%d"));
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut orphans_released = 0.0;
    for cycle in 0..5u64 {
        let tasks: Vec<_> = buyers
            .iter()
            .enumerate()
            .map(|(i, (b, pid))| {
                let (b, pid, run) = (b.clone().with_base(&base), *pid, run.clone());
                tokio::spawn(async move {
                    for n in 0u64.. {
                        let req = order_on(&run, &format!("c{cycle}-b{i}-{n}"), pid);
                        // Every other order is cancelled, so seats keep coming back and the rush
                        // never sells out: holds are being made at every moment a kill can land.
                        match b.create_order(&req, None).await {
                            Err(chepiao_api::ClientError::Transport(_)) => return, // the server is gone
                            Ok(o) if n % 2 == 0 => drop(b.cancel(&o.body.order_no).await),
                            _ => {}
                        }
                    }
                })
            })
            .collect();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(300 + rng % 700)).await;
        Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap();
        futures_util::future::join_all(tasks).await;
        let (next, next_base) = serve(&dir, &env);
        child = next;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = reqwest::get(format!("{next_base}/metrics")).await.unwrap().text().await.unwrap();
        orphans_released += counter(&metrics, "chepiao_orphan_holds_released_total");
        buyers.iter_mut().for_each(|(b, _)| *b = b.with_base(&next_base));
        api_base_check(&next_base).await;
        if cycle == 4 {
            check_no_phantoms(&next_base, &buyers, &run).await;
        }
    }
    eprintln!("orphan holds released at the restarts (as far as /metrics saw): {orphans_released}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// One second-class seat on G1 tomorrow, 北京南 → 上海虹桥, for passenger `pid`.
fn g1_order(key: &str, pid: i64) -> chepiao_api::orders::OrderRequest {
    order_on(&format!("G1-{}", tomorrow().format("%Y%m%d")), key, pid)
}

/// One second-class seat on `run`, 北京南 → 上海虹桥, for passenger `pid`.
fn order_on(run: &str, key: &str, pid: i64) -> chepiao_api::orders::OrderRequest {
    let leg = chepiao_api::orders::LegBody {
        run_id: run.into(),
        from: "VNP".into(),
        to: "AOH".into(),
        class: chepiao_domain::SeatClass::Second,
        passenger_ids: vec![pid],
        seat_prefs: None,
    };
    chepiao_api::orders::OrderRequest { idempotency_key: key.into(), legs: vec![leg] }
}

fn tomorrow() -> chrono::NaiveDate {
    chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
        + chrono::Days::new(1)
}

/// A counter's value in Prometheus text (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().last()?.parse().ok()).unwrap_or(0.0)
}

async fn api_base_check(base: &str) {
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200, "ready after the restart");
}

/// The seats the engine holds on `run` (second class, whole journey) are exactly the seats of
/// the buyers' live orders, once the reconciliation at start has run.
async fn check_no_phantoms(base: &str, buyers: &[(chepiao_api::Client, i64)], run: &str) {
    use chepiao_domain::SeatClass;
    let anon = chepiao_api::Client::new(base);
    let mut live = 0;
    for (b, _) in buyers {
        let mut page = 1;
        loop {
            let list = b.orders(None, page, 100).await.unwrap();
            live += list
                .items
                .iter()
                .filter(|o| ["PENDING_PAYMENT", "PAID", "TICKETED"].contains(&o.status.as_str()))
                .count();
            if list.items.len() < 100 {
                break;
            }
            page += 1;
        }
    }
    let mut held = 0;
    for _ in 0..100 {
        held = 540 - anon.seats(run, "VNP", "AOH", SeatClass::Second).await.unwrap().free as usize;
        if held == live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(live > 0, "the rush placed orders");
    assert_eq!(held, live, "seats the engine holds vs seats of live orders");
}

/// Two nodes on one database would each sell the whole inventory: the second refuses to start,
/// saying why and where to read more; the first (restarted) still starts.
#[test]
fn a_second_node_on_one_database_refuses_to_start() {
    let first = temp_dir();
    let (mut child, _) = serve(&first, &[]);
    let second = temp_dir();
    let url = format!("sqlite://{}", first.join("chepiao.db").display());
    let out = chepiao()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&second)
        .env("CHEPIAO_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second node started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to seat engine") && err.contains("docs/DEPLOY.md"), "{err}");
    Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    let (mut again, _) = serve(&first, &[]);
    Command::new("kill").args(["-TERM", &again.id().to_string()]).status().unwrap();
    assert!(again.wait().unwrap().success());
    std::fs::remove_dir_all(&first).ok();
    std::fs::remove_dir_all(&second).ok();
}
