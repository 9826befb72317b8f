//! The store's connections killed under writes (`pg_terminate_backend`, what a failover or an
//! operator does): no acknowledged write lost, the failures say `cluster store unavailable`, and
//! writes resume by themselves. Needs a database: run through
//! `scripts/pg.sh run cargo test --release -p happn-store-postgres`.

mod common;
mod writers;

use happn_engine::storage::Store;
use std::sync::Arc;
use std::time::Duration;
use writers::{check_acknowledged, wait_until, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_lose_no_acknowledged_write() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("kill");
    let store = Arc::new(common::open(&url, &schema).await);
    let app = common::options(&url, &schema).application_name;
    let admin = common::admin(&url).await;
    let writers = Writers::start(store.clone(), 16, Duration::from_secs(60));
    let mut killed = 0;
    for round in 0..3 {
        let before = writers.acked();
        assert!(
            wait_until(Duration::from_secs(10), || writers.acked() >= before + 200).await,
            "round {round}: writes go on ({} acknowledged)",
            writers.acked()
        );
        // Every connection of this store: the writer's and the readers'.
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .expect("terminate");
        killed += rows.len();
    }
    let before = writers.acked();
    assert!(
        wait_until(Duration::from_secs(10), || writers.acked() >= before + 200).await,
        "writes resume after the connections were killed"
    );
    let log = writers.stop().await;
    assert!(killed >= 3, "the writer's connection was killed each round ({killed} backends)");
    let errors = log.errors.lock().unwrap().clone();
    for e in &errors {
        assert!(e.starts_with("storage failure: cluster store unavailable"), "unclear error: {e}");
    }
    eprintln!(
        "{} acknowledged, {} failed during the kills",
        log.acked.lock().unwrap().len(),
        errors.len()
    );
    assert!(
        wait_until(Duration::from_secs(5), || store.health().is_healthy()).await,
        "healthy again: {:?}",
        store.health()
    );
    check_acknowledged(&store, &log).await;
    common::drop_schema(&url, &schema).await;
}
