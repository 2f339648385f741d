//! A PostgreSQL server of a test's own (initdb into a temporary directory, a port of its own),
//! so the test can restart it without disturbing the shared one other tests use.

use std::path::PathBuf;
use std::process::Command;

pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    /// Run the server's tools as `postgres` (they refuse to run as root).
    as_postgres: bool,
}

/// The directory with initdb and pg_ctl, if PostgreSQL's tools are installed.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

impl PrivatePostgres {
    /// Start one, or say why it cannot be (then the caller skips).
    pub fn start(test: &str) -> Option<PrivatePostgres> {
        let Some(bin) = bin_dir() else {
            eprintln!("skipped {test}: PostgreSQL's initdb and pg_ctl are not installed under /usr/lib/postgresql");
            return None;
        };
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("chepiao-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            assert!(Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().unwrap().success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = PrivatePostgres { dir, port, bin, as_postgres };
        pg.run("initdb", &["-A", "trust", "-U", "postgres", "--no-sync", "-D"], true);
        pg.ctl("start");
        Some(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stop it (fast shutdown: sessions are cut, as in a real restart).
    pub fn stop(&self) {
        self.ctl("stop");
    }

    pub fn start_again(&self) {
        self.ctl("start");
    }

    fn ctl(&self, what: &str) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let log = self.dir.join("server.log");
        let args = ["-w", "-m", "fast", "-o", &opts, "-l", log.to_str().unwrap(), what, "-D"];
        self.run("pg_ctl", &args, true);
    }

    fn run(&self, tool: &str, args: &[&str], with_dir: bool) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args);
        if with_dir {
            cmd.arg(self.dir.join("data"));
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.run("pg_ctl", &["-m", "immediate", "stop", "-D"], true));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root (PostgreSQL's tools then run as `postgres`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
