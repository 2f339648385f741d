//! The binary itself: first start imports the bundled network and serves it; SIGTERM drains
//! and exits 0; bad configuration fails with a message, not a panic.

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
