//! Three chepiao nodes selling one inventory, as real processes on loopback: a 3-server NATS
//! JetStream cluster of the test's own (ports and folders), a PostgreSQL database of its own,
//! the machine's Redis. `chepiao load` spreads a soak (orders, payments, cancellations,
//! expiries, refunds) over the three nodes while the test kills a node with SIGKILL and
//! restarts it, kills a NATS server and restarts it, and kills a node, wipes its engine folder
//! and restarts it (it must start from the shared snapshot and the log after it).
//!
//! Afterwards: the load's audit holds (I1: no seat segment sold twice; I2: every captured
//! payment ticketed or refunded), every order the nodes acknowledged is in the store (I4), and
//! the three replicas hold the same state (the same digest at the same log position per shard,
//! so the same 余票 for every run). Before the load, an order placed through one node is paid
//! through another and its tickets read from the third, an order placed through a node that
//! does not hold the duties lease is expired by the sweeper of the node that does, and a user
//! blocked through one node is refused by another (the risk lists are shared through Redis).
//!
//! Needs `nats-server`, CHEPIAO_TEST_POSTGRES_URL and CHEPIAO_TEST_REDIS_URL (`.ci/run` sets
//! them); without them it says so and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chepiao_api::Client;
use chepiao_api::stats::ShardReplica;

use super::{chepiao, g1_order, temp_dir};

const ADMIN_KEY: &str = "admin-key-for-the-cluster-test";
const MOCKPAY_SECRET: &str = "mockpay-secret-for-the-cluster-test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nats_binary() -> Option<String> {
    ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()))
        .map(String::from)
}

fn sigkill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        Command::new("kill").args(["-KILL", &c.id().to_string()]).status().unwrap();
        c.wait().unwrap();
    }
}

/// One server of the test's NATS cluster.
struct NatsServer {
    binary: String,
    name: String,
    port: u16,
    cluster_port: u16,
    routes: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-n", &self.name])
            .args(["-sd", self.dir.to_str().unwrap(), "--cluster_name", "chepiao-test"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", self.cluster_port), "--routes", &self.routes])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        sigkill(&mut self.child);
    }
}

/// Three NATS servers routed to each other, JetStream on each.
fn nats_cluster(binary: &str, root: &Path) -> Vec<NatsServer> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let mut servers: Vec<NatsServer> = (0..3)
        .map(|i| {
            let routes: Vec<String> =
                (0..3).filter(|j| *j != i).map(|j| format!("nats://127.0.0.1:{}", ports[j].1)).collect();
            NatsServer {
                binary: binary.to_string(),
                name: format!("n{}", i + 1),
                port: ports[i].0,
                cluster_port: ports[i].1,
                routes: routes.join(","),
                dir: root.join(format!("nats-{}", i + 1)),
                child: None,
            }
        })
        .collect();
    for s in &mut servers {
        s.start();
    }
    servers
}

fn wait_for_port(port: u16, within: Duration) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < within, "nothing listens on {port} after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One chepiao node: a fixed port (a restarted node comes back where the load expects it).
struct Node {
    port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start the node and wait until it serves; how long that took.
    fn start(&mut self) -> Duration {
        let started = Instant::now();
        self.starts += 1;
        let log = std::fs::File::create(self.dir.with_extension(format!("{}.log", self.starts))).unwrap();
        let mut cmd = chepiao();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--data-dir"]).arg(&self.dir);
        let child = cmd.envs(self.env.iter().cloned()).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(300));
        started.elapsed()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension(format!("{}.log", self.starts))).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        sigkill(&mut self.child);
    }
}

/// A database of the test's own on the PostgreSQL of `CHEPIAO_TEST_POSTGRES_URL`, dropped
/// with this (declare it before the nodes, so they are gone first).
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    fn fresh(admin_url: &str) -> Database {
        let name = format!("chepiao_cluster_{}", std::process::id());
        let (server, _) = admin_url.rsplit_once('/').expect("a URL with a database");
        for sql in [format!("DROP DATABASE IF EXISTS {name}"), format!("CREATE DATABASE {name}")] {
            let ok = Command::new("psql").args([admin_url, "-qc", &sql]).status().unwrap();
            assert!(ok.success(), "{sql}");
        }
        Database { admin_url: admin_url.to_string(), url: format!("{server}/{name}"), name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        Command::new("psql").args([self.admin_url.as_str(), "-qc", &sql]).status().ok();
    }
}

/// A child killed when this goes (the load, if the test fails before it ends).
struct Killed(Option<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        sigkill(&mut self.0);
    }
}

fn node_env(db: &str, nats: &str, redis: &str, tag: &str) -> Vec<(String, String)> {
    let key = |c: char| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [c as u8; 32]);
    [
        ("CLUSTER", "true".to_string()),
        ("DATABASE_URL", db.to_string()),
        ("NATS_URL", nats.to_string()),
        ("REDIS_URL", redis.to_string()),
        ("ENGINE_STREAM", format!("ENGINE_{tag}")),
        ("NATS_STREAM", format!("EVENTS_{tag}")),
        ("ENGINE_SHARDS", "2".into()),
        ("ENGINE_LOG_BYTES_MAX", (256u64 << 20).to_string()),
        ("ENGINE_SNAPSHOT_EVERY_OPS", "100".into()),
        ("JWT_SECRET", key('j')),
        ("PII_KEY", key('p')),
        ("QUEUE_SECRET", key('q')),
        ("TICKET_KEY", key('t')),
        ("MOCKPAY", "true".into()),
        ("MOCKPAY_SECRET", MOCKPAY_SECRET.into()),
        ("ADMIN_KEY", ADMIN_KEY.into()),
        ("PAY_WINDOW_S", "20".into()),
        ("RULE_ONE_UNPAID_ORDER", "false".into()),
        ("RULE_NO_OVERLAPPING_TRIPS", "false".into()),
        ("RULE_CANCELLATIONS_PER_DAY_MAX", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("CHEPIAO_{k}"), v))
    .collect()
}

/// Every replica at the same log position holds the same state: read the three until their
/// positions agree (ticks move them once a second), then compare the digests.
async fn replicas_agree(nodes: &[Node]) {
    for _ in 0..100 {
        let mut seen = Vec::new();
        for n in nodes {
            seen.push(Client::new(&n.url()).admin_engine(ADMIN_KEY).await.unwrap().shards);
        }
        // (position, digest) are read together on each shard's thread; the other fields (live
        // holds, snapshot) are read apart from them and may be a moment later, or per node.
        let at = |s: &[ShardReplica]| s.iter().map(|x| x.applied).collect::<Vec<_>>();
        let state = |s: &[ShardReplica]| s.iter().map(|x| (x.applied, x.digest.clone())).collect::<Vec<_>>();
        if seen.iter().all(|s| at(s) == at(&seen[0])) {
            assert!(seen.iter().all(|s| state(s) == state(&seen[0])), "replicas differ at one log position: {seen:#?}");
            eprintln!("cluster: the three replicas agree: {:?}", state(&seen[0]));
            return;
        }
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    panic!("the replicas never stood at one log position");
}

/// Which node holds the duties lease (by the pid in its instance name).
fn duties_holder(nodes: &[Node], db: &str) -> usize {
    let sql = "SELECT instance FROM leases WHERE name = 'background-duties'";
    for _ in 0..100 {
        let out = Command::new("psql").args([db, "-tAc", sql]).output().unwrap();
        let instance = String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(i) = nodes.iter().position(|n| instance.starts_with(&format!("pid {} ", n.pid()))) {
            return i;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no node holds the duties lease");
}

/// A user with one passenger: the client, the passenger and the user's id.
async fn buyer(url: &str, tag: &str) -> (Client, i64, i64) {
    let client = Client::new(url);
    let name = format!("cl{tag}");
    let uid = client.register(&name, "cluster-password").await.unwrap().user_id;
    let token = client.login(&name, "cluster-password").await.unwrap().token;
    let api = client.with_token(&token);
    let pid = api.add_passenger("集群", "PASSPORT", &format!("C{tag}")).await.unwrap().passenger_id;
    (api, pid, uid)
}

/// An operator blocks a user through one node: the others refuse the user within seconds
/// (the lists are shared through Redis); unblocked, the user buys again.
async fn a_block_reaches_every_node(nodes: &[Node], api: &Client, pid: i64, uid: i64) {
    let uid = uid.to_string();
    let block = |node: usize, on: bool| {
        let operator = Client::new(&nodes[node].url());
        let uid = uid.clone();
        async move { operator.admin_risk_set(ADMIN_KEY, "block", "user", &uid, on).await }
    };
    assert!(block(0, true).await.unwrap().values.contains(&uid));
    let started = Instant::now();
    loop {
        match api.with_base(&nodes[2].url()).create_order(&g1_order("blocked", pid), None).await {
            Err(e) if e.code() == Some(40301) => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(10),
                "node 2 still sells: {:?}",
                other.map(|a| a.status)
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("cluster: a block made on node 0 refused the user on node 2 after {:?}", started.elapsed());
    assert!(!block(1, false).await.unwrap().values.contains(&uid));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answer = api.with_base(&nodes[0].url()).create_order(&g1_order("unblocked", pid), None).await;
    assert!(answer.is_ok(), "unblocked on node 1, still refused on node 0: {:?}", answer.err());
}

async fn status_becomes(api: &Client, order_no: &str, want: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let status = api.order(order_no).await.unwrap().status;
        if status == want {
            return;
        }
        assert!(started.elapsed() < within, "order {order_no} is {status}, not {want}, after {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Placed through one node, paid through a second, its tickets read through the third; and an
/// order placed through a node without the duties lease expired by the node that has it.
async fn nodes_share_the_work(nodes: &[Node], db: &str, tag: &str) {
    let holder = duties_holder(nodes, db);
    let (a, b) = ((holder + 1) % 3, (holder + 2) % 3);
    let (api, pid, uid) = buyer(&nodes[a].url(), tag).await;
    let on = |i: usize| api.with_base(&nodes[i].url());
    let order = on(a).create_order(&g1_order("paid", pid), None).await.unwrap().body;
    let started = on(b).pay(&order.order_no, "mockpay").await.unwrap();
    on(b).press_pay(&started.pay_url, true).await.unwrap();
    status_becomes(&on(holder), &order.order_no, "TICKETED", Duration::from_secs(30)).await;
    let unpaid = on(a).create_order(&g1_order("unpaid", pid), None).await.unwrap().body;
    status_becomes(&on(b), &unpaid.order_no, "EXPIRED", Duration::from_secs(60)).await;
    let log = nodes[holder].log();
    eprintln!(
        "cluster: placed on node {a}, paid on node {b}, ticketed; expired by the sweeper of node {holder} (duties holder)"
    );
    assert!(log.contains("this node took the background duties"), "node {holder}'s log says it holds the duties");
    a_block_reaches_every_node(nodes, &api, pid, uid).await;
}

fn start_load(nodes: &[Node], db: &str, env: &[(String, String)], out: &Path) -> Child {
    let mut cmd = chepiao();
    cmd.args(["load", "--scenario", "soak", "--rate", "25", "--duration", "70", "--window", "35"]);
    cmd.args(["--users", "40", "--concurrency", "64", "--pay", "--pay-as-provider", "--database-url", db]);
    for n in nodes {
        cmd.args(["--url", &n.url()]);
    }
    let out = std::fs::File::create(out).unwrap();
    cmd.envs(env.iter().cloned()).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap()
}

/// The faults, while the load runs; what each recovery took.
async fn faults(nodes: &mut [Node], nats: &mut [NatsServer]) -> Vec<(String, Duration)> {
    let mut took = Vec::new();
    tokio::time::sleep(Duration::from_secs(12)).await;
    sigkill(&mut nodes[1].child);
    took.push(("chepiao node killed (SIGKILL) and restarted: ready in".to_string(), nodes[1].start()));
    tokio::time::sleep(Duration::from_secs(8)).await;
    sigkill(&mut nats[1].child);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    nats[1].start();
    took.push(("NATS server killed (SIGKILL), restarted after 5 s: listening after".to_string(), down.elapsed()));
    tokio::time::sleep(Duration::from_secs(8)).await;
    sigkill(&mut nodes[2].child);
    std::fs::remove_dir_all(nodes[2].dir.join("engine-replica")).unwrap();
    took.push(("chepiao node killed, engine folder wiped, restarted: ready in".to_string(), nodes[2].start()));
    assert!(nodes[2].log().contains("starting from the shared snapshot"), "{}", nodes[2].log());
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_sell_one_inventory_through_faults() {
    let (binary, pg, redis) =
        (nats_binary(), std::env::var("CHEPIAO_TEST_POSTGRES_URL"), std::env::var("CHEPIAO_TEST_REDIS_URL"));
    let missing: Vec<&str> = [
        (binary.is_none(), "nats-server is not installed"),
        (pg.is_err(), "CHEPIAO_TEST_POSTGRES_URL is not set"),
        (redis.is_err(), "CHEPIAO_TEST_REDIS_URL is not set"),
    ]
    .into_iter()
    .filter_map(|(gone, why)| gone.then_some(why))
    .collect();
    let (Some(binary), Ok(pg), Ok(redis)) = (binary, pg, redis) else {
        eprintln!("skipped three_nodes_sell_one_inventory_through_faults: {}", missing.join(", "));
        return;
    };
    let root = temp_dir();
    let mut nats = nats_cluster(&binary, &root);
    let nats_url: Vec<String> = nats.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect();
    let database = Database::fresh(&pg);
    let db = database.url.clone();
    let tag = format!("{}", std::process::id());
    let env = node_env(&db, &nats_url.join(","), &redis, &tag);
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node {
            port: free_port(),
            dir: root.join(format!("node-{i}")),
            env: env.clone(),
            child: None,
            starts: 0,
        })
        .collect();
    for n in &mut nodes {
        // One at a time: the first imports the network into the empty database.
        let took = n.start();
        eprintln!("cluster: node on {} ready in {took:?}", n.url());
    }
    nodes_share_the_work(&nodes, &db, &tag).await;
    let load_out = root.join("load.out");
    let mut load = Killed(Some(start_load(&nodes, &db, &env, &load_out)));
    let took = faults(&mut nodes, &mut nats).await;
    let mut child = load.0.take().expect("started");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let out = std::fs::read_to_string(&load_out).unwrap();
    eprintln!("{out}");
    for (what, t) in &took {
        eprintln!("cluster: {what} {t:?}");
    }
    assert!(status.success(), "the load failed (audit or acknowledged orders): {out}");
    assert!(out.contains("all in the store") && out.contains("I1 (no seat segment sold twice)"), "{out}");
    assert!(!out.contains("transport"), "a request no node answered: {out}");
    replicas_agree(&nodes).await;
    drop(nodes);
    drop(database);
    drop(nats);
    std::fs::remove_dir_all(&root).ok();
}
