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
