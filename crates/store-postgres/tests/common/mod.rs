//! What the PostgreSQL tests share: the database's URL (from `scripts/pg.sh`), a fresh schema
//! per store, and an admin connection.
#![allow(dead_code)]

use happn_store_postgres::{PgOptions, PgStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The URL of the test database, or `None` when `HAPPN_PG_SKIP=1` says to skip. Without either,
/// the test fails: a missing database must not pass for a green run.
pub fn url() -> Option<String> {
    happn_store_postgres::testing::url("scripts/pg.sh run cargo test --release -p happn-store-postgres")
}

/// The instance directory `scripts/pg.sh` made (tests that stop and start the server need it).
pub fn dir() -> Option<String> {
    match std::env::var("HAPPN_PG_DIR") {
        Ok(dir) if !dir.is_empty() => Some(dir),
        _ if std::env::var("HAPPN_PG_SKIP").as_deref() == Ok("1") => None,
        _ => panic!(
            "HAPPN_PG_DIR is not set: this test stops and restarts PostgreSQL, so run it through \
             `scripts/pg.sh run cargo test --release -p happn-store-postgres` (or set HAPPN_PG_SKIP=1 to skip it)"
        ),
    }
}

/// A schema name no other store in this run uses.
pub fn fresh_schema(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t_{tag}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn options(url: &str, schema: &str) -> PgOptions {
    let mut o = PgOptions::new(url);
    o.schema = schema.to_string();
    o.application_name = format!("happn-test-{schema}");
    o.connect_timeout = Duration::from_secs(2);
    o
}

pub async fn open(url: &str, schema: &str) -> PgStore {
    PgStore::open(options(url, schema)).await.expect("open the PostgreSQL store")
}

/// A plain connection for the test's own queries.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("admin connection");
    tokio::spawn(connection);
    client
}

/// Drop a test schema (best effort: a leftover only costs space in the throwaway instance).
pub async fn drop_schema(url: &str, schema: &str) {
    let client = admin(url).await;
    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
}

/// Run `scripts/pg.sh ARGS` for the instance in `dir`.
pub fn pg_sh(args: &[&str], dir: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .arg(dir)
        .status()
        .expect("run scripts/pg.sh");
    assert!(status.success(), "scripts/pg.sh {args:?} failed");
}
