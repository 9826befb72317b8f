//! `happn-rs import --nedb FILE --cluster URL --schema S` and `happn-rs export --cluster …`: a
//! happn 2.x database file (`fixtures/happn2.nedb`: replayed and deleted lines, a tag, dates,
//! escaped dots in permission keys, users with password hashes, unicode paths, a 2^64-1) into a
//! fresh PostgreSQL schema and back, record for record; the export is byte for byte what a data
//! directory exports of the same file; and a secure node started on the schema logs the imported
//! user in with their old password.
//!
//! Needs PostgreSQL: run through `scripts/pg.sh run cargo test --release -p happn-rs --test
//! cluster_tools` (which sets HAPPN_PG_URL), or set HAPPN_PG_SKIP=1 to skip.

mod common;

use common::{connect, free_port, http_get, server_command, Proc};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn pg_url() -> Option<String> {
    happn_store_postgres::testing::url("scripts/pg.sh run cargo test --release -p happn-rs --test cluster_tools")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/happn2.nedb")
}

/// Run a tool to success (30 s at most).
fn tool(args: &[&str]) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_happn-rs"));
    c.args(args);
    let out = common::run_to_end(c, "", Duration::from_secs(30));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn records(file: &Path) -> Vec<happn_engine::Record> {
    let loaded = happn_engine::nedb::parse(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(loaded.skipped, 0);
    loaded.records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_happn2_database_round_trips_through_a_cluster_schema() {
    let Some(url) = pg_url() else { return };
    let schema = format!("t_tools_{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("happn-cluster-tools-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (file, from_cluster, from_dir) = (fixture(), dir.join("cluster.nedb"), dir.join("dir.nedb"));
    let (file, from_cluster_s, from_dir_s) = (file.to_str().unwrap(), from_cluster.to_str().unwrap(), from_dir.to_str().unwrap());
    let data_dir = dir.join("data");
    let data_dir = data_dir.to_str().unwrap();

    tool(&["import", "--nedb", file, "--cluster", &url, "--schema", &schema]);
    tool(&["export", "--cluster", &url, "--schema", &schema, "--out", from_cluster_s]);
    let original = records(Path::new(file));
    assert_eq!(original.len(), 9, "the fixture's records after replay");
    assert_eq!(records(&from_cluster), original, "the cluster holds exactly the file's records");

    // The same file through a data directory exports the same bytes.
    tool(&["import", "--nedb", file, "--data-dir", data_dir]);
    tool(&["export", "--data-dir", data_dir, "--out", from_dir_s]);
    let (a, b) = (
        std::fs::read_to_string(&from_cluster).unwrap(),
        std::fs::read_to_string(&from_dir).unwrap(),
    );
    assert_eq!(a, b);
    assert!(
        a.contains(r#""/sensors/v1\\u002e2/*""#),
        "dots in permission keys escaped again for happn 2.x"
    );
    assert!(a.contains("18446744073709551615"));

    // A secure node on that schema: alice's old password works.
    let port = free_port();
    let config = json!({"secure": true, "cluster": {"url": url, "schema": schema}});
    let _node = Proc(
        server_command(port)
            .env("HAPPN_SERVER_CONFIG", config.to_string())
            .env_remove("HAPPN_CLUSTER")
            .spawn()
            .unwrap(),
    );
    drop(connect(port).await);
    let addr = format!("127.0.0.1:{port}");
    let (status, body) = http_get(&addr, "/auth/login?username=alice&password=old-pw").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(&addr, "/auth/login?username=alice&password=wrong").await;
    assert_eq!(status, 403);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node of a cluster on `schema`, insecure (so `/metrics` is on its main port), named `name`.
async fn node(url: &str, schema: &str, name: &str) -> (Proc, String) {
    let port = free_port();
    let config = json!({"name": name, "cluster": {"url": url, "schema": schema}});
    let proc = Proc(
        server_command(port)
            .arg("--memory")
            .env("HAPPN_SERVER_CONFIG", config.to_string())
            .env_remove("HAPPN_CLUSTER")
            .spawn()
            .unwrap(),
    );
    drop(connect(port).await);
    (proc, format!("127.0.0.1:{port}"))
}

/// The value of one sample (`name` with its labels, as rendered); `None` when absent.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_report_members_lag_and_commits() {
    let Some(url) = pg_url() else { return };
    let schema = format!("t_ops_{}", std::process::id());
    let (_a, a) = node(&url, &schema, "node-a").await;
    let (_b, b) = node(&url, &schema, "node-b").await;

    // Writes through a, with b subscribed: b delivers them from the log.
    let client = |addr: &str| {
        let (host, port) = addr.split_once(':').unwrap();
        happn_client::ClientConfig::new(host, port.parse().unwrap())
    };
    let watcher = happn_client::Client::connect(client(&b)).await.unwrap();
    let mut events = watcher.on("/m/*", happn_client::OnOptions::default()).await.unwrap();
    let writer = happn_client::Client::connect(client(&a)).await.unwrap();
    for i in 0..20 {
        writer
            .set(&format!("/m/{i}"), &json!({"i": i}), happn_client::SetOptions::default())
            .await
            .unwrap();
    }
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(10), futures_util::StreamExt::next(&mut events))
            .await
            .expect("b delivers every write")
            .unwrap();
    }

    // /ready: this node and both members (read at most once a second).
    let (status, body) = http_get(&a, "/ready").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["cluster"]["node"], "node-a", "{ready}");
    let names: Vec<&str> = ready["cluster"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["alive"] == true)
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["node-a", "node-b"], "{ready}");

    // /metrics: members, the database, commits on a; and no lag once b has delivered (the
    // newest id seen also comes from the heartbeat's look at the log, so allow it a beat).
    let ma = http_get(&a, "/metrics").await.1;
    assert_eq!(sample(&ma, r#"happn_cluster_members{state="alive"}"#), Some(2.0), "{ma}");
    assert_eq!(sample(&ma, "happn_cluster_database_up"), Some(1.0));
    assert!(sample(&ma, "happn_store_commit_operations_total").unwrap_or(0.0) >= 20.0, "{ma}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mb = http_get(&b, "/metrics").await.1;
        let delivered = sample(&mb, "happn_cluster_events_delivered_id").unwrap();
        let newest = sample(&mb, "happn_cluster_events_newest_id").unwrap();
        let lag = sample(&mb, "happn_cluster_event_lag").unwrap();
        assert_eq!(lag, newest - delivered, "{mb}");
        if delivered >= 20.0 && lag == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "b still behind:\n{mb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `happn-rs status` shows the connections and the members.
    let mut c = Command::new(env!("CARGO_BIN_EXE_happn-rs"));
    c.args(["status", "--url", &format!("ws://{a}")]);
    let out = common::run_to_end(c, "", Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["connections"].as_u64().is_some_and(|n| n >= 2),
        "the writer and status itself: {status}"
    );
    assert_eq!(status["cluster"]["node"], "node-a", "{status}");
    assert_eq!(status["cluster"]["members"].as_array().map(Vec::len), Some(2), "{status}");
    let _ = writer.disconnect().await;
    let _ = watcher.disconnect().await;
}
