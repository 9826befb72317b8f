//! PostgreSQL stopped and started again under writes (through `scripts/pg.sh server-stop` /
//! `server-start`, same port): while it is down writes fail at once with `cluster store
//! unavailable`, reads too, `health()` says why; when it is back writes resume with no restart
//! of the store, and no acknowledged write is lost. Alone in its file: it takes the database
//! away from every test running beside it. Needs `scripts/pg.sh run …` (HAPPN_PG_URL and
//! HAPPN_PG_DIR).

mod common;
mod writers;

use happn_engine::storage::{Store, StoreHealth};
use happn_engine::Body;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use writers::{check_acknowledged, wait_until, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_loses_no_acknowledged_write() {
    let Some(url) = common::url() else { return };
    let Some(dir) = common::dir() else { return };
    let schema = common::fresh_schema("restart");
    let store = Arc::new(common::open(&url, &schema).await);
    let writers = Writers::start(store.clone(), 16, Duration::from_secs(90));
    assert!(wait_until(Duration::from_secs(10), || writers.acked() >= 300).await, "writes go on");

    let stopper = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || common::pg_sh(&["server-stop"], &dir))
    };
    stopper.await.expect("server-stop");
    // Down: health says so (the writer notices through a failed group or its idle check).
    assert!(
        wait_until(Duration::from_secs(5), || !store.health().is_healthy()).await,
        "health shows the outage"
    );
    let StoreHealth::Unwritable { reason } = store.health() else {
        unreachable!("checked above")
    };
    assert!(reason.starts_with("cluster store unavailable"), "{reason}");
    let started = Instant::now();
    let body = Body::new(json!({"x": 1}).as_object().cloned().unwrap_or_default());
    let err = store
        .replace("/down", body.clone(), 1)
        .await
        .expect_err("no writes while down")
        .to_string();
    assert!(err.starts_with("storage failure: cluster store unavailable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a write fails fast while down: {:?}",
        started.elapsed()
    );
    let err = store.get("/w/00/000000").await.expect_err("no reads while down").to_string();
    assert!(err.starts_with("storage failure: cluster store unavailable"), "{err}");
    let during = writers.acked();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let starter = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || common::pg_sh(&["server-start"], &dir))
    };
    starter.await.expect("server-start");
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || store.health().is_healthy()).await,
        "the store reconnects by itself: {:?}",
        store.health()
    );
    assert!(
        wait_until(Duration::from_secs(10), || writers.acked() >= during + 300).await,
        "writes resume after the restart"
    );
    eprintln!("writes resumed {:?} after the server was back", back.elapsed());
    store.replace("/up", body, 1).await.expect("a write after the restart");
    let log = writers.stop().await;
    let errors = log.errors.lock().unwrap().clone();
    assert!(!errors.is_empty(), "writes failed while the database was down");
    for e in &errors {
        assert!(e.starts_with("storage failure: cluster store unavailable"), "unclear error: {e}");
    }
    eprintln!(
        "{} acknowledged, {} failed while down",
        log.acked.lock().unwrap().len(),
        errors.len()
    );
    check_acknowledged(&store, &log).await;
    common::drop_schema(&url, &schema).await;
}
