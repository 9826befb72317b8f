//! Operating the server, against the release binary: `/health` and `/ready`, `/metrics` moving
//! with the traffic (on the main port when insecure, on `metricsAddr` when secure), JSON logs
//! that name the user and path of a refusal and never a password, and the per-session and
//! per-address limits refusing an abusive client while a well-behaved one is unaffected.

mod common;

use common::{connect, free_port, http_get, recv_json, send_json, server_command, Proc};
use futures_util::future::join_all;
use happn_client::{Client, ClientConfig, Error, GetOptions, OnOptions, RemoveOptions, SetOptions};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A server in memory with `config` (and `args`), its log in a file; `addr` is its main address.
struct Server {
    _proc: Proc,
    port: u16,
    addr: String,
    log: PathBuf,
}

impl Server {
    async fn start(config: Value, args: &[&str]) -> Server {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("happn-ops-{}-{port}.log", std::process::id()));
        let child = server_command(port)
            .args(args)
            .env("HAPPN_SERVER_CONFIG", config.to_string())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn happn-rs");
        let server = Server {
            _proc: Proc(child),
            port,
            addr: format!("127.0.0.1:{port}"),
            log,
        };
        wait_up(&server.addr).await;
        server
    }

    fn client(&self) -> ClientConfig {
        ClientConfig::new("127.0.0.1", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Until `addr` answers `/health` (20 s at most).
async fn wait_up(addr: &str) {
    for _ in 0..800 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {addr}");
}

/// The value of one sample (`name` with its labels, exactly as rendered); 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(addr: &str) -> String {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_follow_the_traffic() {
    let s = Server::start(json!({}), &["--memory"]).await;
    let (status, body) = http_get(&s.addr, "/health").await;
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{body}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let (status, body) = http_get(&s.addr, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "ready");

    let watcher = Client::connect(s.client()).await.unwrap();
    let _sub = watcher.on("/ops/*", OnOptions::default()).await.unwrap();
    let writer = Client::connect(s.client()).await.unwrap();
    for i in 1..=3 {
        writer
            .set(&format!("/ops/{i}"), &json!({"i": i}), SetOptions::default())
            .await
            .unwrap();
    }
    writer.get("/ops/1", GetOptions::default()).await.unwrap();
    writer.remove("/ops/3", RemoveOptions::default()).await.unwrap();
    // A subscription without a login is refused (denied).
    let mut raw = connect(s.port).await;
    send_json(&mut raw, json!({"action": "on", "eventId": 1, "path": "/x", "options": {}})).await;
    assert_eq!(recv_json(&mut raw).await["_meta"]["status"], "error");

    let m = scrape(&s.addr).await;
    let at = |name: &str| sample(&m, name);
    assert_eq!(at(r#"happn_requests_total{action="set",outcome="ok"}"#), 3.0, "{m}");
    assert_eq!(at(r#"happn_requests_total{action="get",outcome="ok"}"#), 1.0);
    assert_eq!(at(r#"happn_requests_total{action="remove",outcome="ok"}"#), 1.0);
    assert_eq!(at(r#"happn_requests_total{action="on",outcome="ok"}"#), 1.0);
    assert_eq!(at(r#"happn_requests_total{action="on",outcome="denied"}"#), 1.0);
    assert_eq!(at(r#"happn_request_duration_seconds_count{action="set"}"#), 3.0);
    assert_eq!(at(r#"happn_request_duration_seconds_bucket{action="set",le="+Inf"}"#), 3.0);
    assert_eq!(at("happn_publishes_total"), 4.0, "three sets and a remove");
    assert_eq!(at("happn_deliveries_total"), 4.0, "each to the one watcher");
    assert_eq!(at("happn_subscriptions"), 1.0);
    assert_eq!(at("happn_connections"), 3.0);
    assert_eq!(at(r#"happn_sessions{type="anonymous"}"#), 2.0);
    assert_eq!(at(r#"happn_logins_total{kind="anonymous",outcome="ok"}"#), 2.0);
    assert!(at("happn_sockets") >= 3.0, "three websockets and the scrape");
    assert_eq!(at("happn_store_healthy"), 1.0);
    assert!(m.contains("# HELP happn_requests_total"), "{m}");
    assert!(!m.contains("happn_store_commits_total"), "a memory store commits nothing:\n{m}");
    assert!(!m.contains("happn_cluster_"), "no cluster:\n{m}");

    // Levels go back down as clients leave.
    watcher.disconnect().await.unwrap();
    drop(raw);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(&s.addr).await;
        if sample(&m, "happn_subscriptions") == 0.0 && sample(&m, "happn_connections") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "levels did not fall:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_store_reports_its_commits() {
    let dir = std::env::temp_dir().join(format!("happn-ops-commits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = Server::start(json!({}), &["--data-dir", dir.to_str().unwrap()]).await;
    let before = scrape(&s.addr).await;
    const WRITERS: usize = 8;
    const SETS: usize = 25;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = Client::connect(s.client()).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..SETS {
                client
                    .set(&format!("/c/{w}/{i}"), &json!({"i": i}), SetOptions::default())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = scrape(&s.addr).await;
    let grew = |name: &str| sample(&m, name) - sample(&before, name);
    let (commits, operations) = (
        sample(&m, "happn_store_commits_total"),
        sample(&m, "happn_store_commit_operations_total"),
    );
    assert!(grew("happn_store_commit_operations_total") >= (WRITERS * SETS) as f64, "{m}");
    assert!(commits >= 1.0 && commits <= operations, "{m}");
    assert_eq!(
        sample(&m, "happn_store_commit_duration_seconds_count"),
        commits,
        "one duration per commit"
    );
    assert_eq!(sample(&m, r#"happn_store_commit_duration_seconds_bucket{le="+Inf"}"#), commits);
    assert!(sample(&m, "happn_store_commit_duration_seconds_sum") > 0.0);
    assert_eq!(
        sample(&m, "happn_store_commit_group_size_sum"),
        operations,
        "the groups carried every operation"
    );
    eprintln!(
        "{operations} operations in {commits} commits ({:.1} per commit), {:.3} ms per commit",
        operations / commits,
        sample(&m, "happn_store_commit_duration_seconds_sum") / commits * 1000.0
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_server_logs_json_counts_logins_and_serves_metrics_apart() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let config = json!({
        "secure": true,
        "adminUser": {"password": "admin-pw"},
        "metricsAddr": metrics_addr,
        "groups": [{"name": "readers", "permissions": {"/public/*": {"actions": ["get"]}}}],
        "users": [
            {"username": "bob", "password": "bob-pw", "groups": ["readers"]},
            {"username": "dave", "password": "dave-pw", "groups": ["readers"]}
        ],
        "services": {"security": {"config": {"accountLockout": {"enabled": true, "attempts": 2, "retryInterval": 60000}}}}
    });
    let s = Server::start(config, &["--memory", "--log-format", "json"]).await;
    wait_up(&metrics_addr).await;
    // Public probes; /metrics only on its own address.
    assert_eq!(http_get(&s.addr, "/health").await.0, 200);
    assert_eq!(http_get(&s.addr, "/ready").await.0, 200);
    assert_ne!(
        http_get(&s.addr, "/metrics").await.0,
        200,
        "not on the main port of a secure server"
    );
    assert_eq!(http_get(&metrics_addr, "/ready").await.0, 200);

    for _ in 0..2 {
        let e = Client::connect(s.client().with_password("bob", "hunter2-wrong"))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::AccessDenied { .. }), "{e}");
    }
    let e = Client::connect(s.client().with_password("bob", "bob-pw")).await.err().unwrap();
    assert!(e.to_string().contains("locked"), "{e}");
    let dave = Client::connect(s.client().with_password("dave", "dave-pw")).await.unwrap();
    assert!(dave.get("/public/a", GetOptions::default()).await.is_ok());
    let e = dave.get("/secret/x", GetOptions::default()).await.err().unwrap();
    assert!(matches!(e, Error::AccessDenied { .. }), "{e}");

    let m = scrape(&metrics_addr).await;
    let at = |name: &str| sample(&m, name);
    assert_eq!(at(r#"happn_logins_total{kind="password",outcome="denied"}"#), 2.0, "{m}");
    assert_eq!(at(r#"happn_logins_total{kind="password",outcome="locked_out"}"#), 1.0);
    assert_eq!(at(r#"happn_logins_total{kind="password",outcome="ok"}"#), 1.0);
    assert_eq!(at(r#"happn_requests_total{action="get",outcome="denied"}"#), 1.0);
    assert_eq!(at(r#"happn_sessions{type="user"}"#), 1.0);

    // Every line is JSON; failures name the user (and path), never the password.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!log.contains("hunter2-wrong") && !log.contains("bob-pw"), "{log}");
    let failed: Vec<&Value> = lines.iter().filter(|l| l["message"] == "login failed").collect();
    assert_eq!(failed.len(), 3, "{log}");
    assert!(failed.iter().all(|l| l["user"] == "bob" && l["level"] == "WARN"), "{log}");
    let denied = lines.iter().find(|l| l["message"] == "request denied").expect("a denial line");
    assert_eq!(
        (&denied["user"], &denied["path"]),
        (&json!("dave"), &json!("/secret/x")),
        "{denied}"
    );
    // The connection's span names the session and user.
    assert_eq!(denied["span"]["user"], "dave", "{denied}");
    assert_eq!(denied["span"]["session"], denied["session"], "{denied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_refuse_the_abusive_client_only() {
    let dir = std::env::temp_dir().join(format!("happn-ops-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = json!({"limits": {"maxSubscriptions": 3, "requestsPerSecond": 50, "requestBurst": 50}});
    // A durable store: its sets are pipelined, the path the rate limit must cover as well.
    let s = Server::start(config, &["--data-dir", dir.to_str().unwrap()]).await;
    let abuser = Client::connect(s.client()).await.unwrap();
    let good = Client::connect(s.client()).await.unwrap();

    let mut subs = Vec::new();
    for i in 1..=3 {
        subs.push(abuser.on(&format!("/a/{i}"), OnOptions::default()).await.unwrap());
    }
    let e = abuser.on("/a/4", OnOptions::default()).await.err().unwrap();
    assert!(e.to_string().contains("subscription limit"), "{e}");
    // Another reference to a channel it holds is no new subscription.
    subs.push(abuser.on("/a/1", OnOptions::default()).await.unwrap());
    for i in 1..=3 {
        subs.push(good.on(&format!("/g/{i}"), OnOptions::default()).await.unwrap());
    }

    // The abuser floods sets while the good client works at its own pace.
    let started = Instant::now();
    let abuser = &abuser;
    let flood = join_all((0..300).map(|i| async move { abuser.set(&format!("/a/x/{i}"), &json!({"i": i}), SetOptions::default()).await }));
    let steady = async {
        for i in 0..20 {
            good.set("/g/1", &json!({"i": i}), SetOptions::default())
                .await
                .expect("the good client is not limited");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (results, ()) = tokio::join!(flood, steady);
    let elapsed = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.to_string().contains("request rate limit exceeded")))
        .count();
    assert_eq!(ok + refused, 300, "{:?}", results.iter().find(|r| r.is_err()));
    // What was left of the burst after the subscriptions, plus the refill while the flood ran.
    assert!(ok as f64 <= 50.0 + 50.0 * elapsed + 1.0, "{ok} sets in {elapsed:.2} s");
    assert!(refused >= 100, "only {refused} refused");

    let m = scrape(&s.addr).await;
    assert_eq!(sample(&m, r#"happn_limit_refusals_total{limit="subscriptions"}"#), 1.0, "{m}");
    assert_eq!(sample(&m, r#"happn_limit_refusals_total{limit="request_rate"}"#), refused as f64);
    assert_eq!(
        sample(&m, r#"happn_requests_total{action="set",outcome="limited"}"#),
        refused as f64
    );
    assert_eq!(sample(&m, r#"happn_requests_total{action="on",outcome="limited"}"#), 1.0);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn tcp_from(from: [u8; 4], addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(from), 0).into()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_limit_names_itself_and_is_counted() {
    use tokio::io::AsyncReadExt;
    let s = Server::start(json!({"connections": {"maxPerIp": 3}}), &["--memory"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from([127, 0, 0, 2], &s.addr).await);
    }
    // Accepted in order: by the time a request on the fourth is answered, the three hold slots.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The refusal is written at once, before any request: a request sent first would be unread
    // when the server closes, and the reset that makes could discard the reply.
    let mut fourth = tcp_from([127, 0, 0, 2], &s.addr).await;
    let mut reply = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), fourth.read_to_string(&mut reply)).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("connections.maxPerIp"), "{reply}");

    // Another address is unaffected.
    let client = Client::connect(s.client()).await.unwrap();
    client.set("/fine", &json!({"ok": true}), SetOptions::default()).await.unwrap();
    let m = scrape(&s.addr).await;
    assert_eq!(sample(&m, r#"happn_limit_refusals_total{limit="connections_per_ip"}"#), 1.0, "{m}");
    assert_eq!(sample(&m, r#"happn_limit_refusals_total{limit="connections"}"#), 0.0, "{m}");
    drop(held);
}
