//! Durable sets per second through the PostgreSQL store, for docs/CLUSTER.md: not a timed unit
//! test (ignored by default). Run through scripts/pg.sh:
//!
//! ```text
//! scripts/pg.sh run cargo test --release -p happn-store-postgres --test throughput -- --ignored --nocapture
//! ```
//!
//! `HAPPN_PG_SECONDS` (default 5) sets each run's length; `HAPPN_PG_WRITERS` (default 1,32,128)
//! the concurrent writers of each run.

mod common;

use happn_engine::storage::Store;
use happn_engine::Body;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture through scripts/pg.sh"]
async fn durable_sets_per_second() {
    let Some(url) = common::url() else { return };
    let seconds: u64 = std::env::var("HAPPN_PG_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let writers: Vec<usize> = std::env::var("HAPPN_PG_WRITERS")
        .unwrap_or_else(|_| "1,32,128".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in writers {
        let schema = common::fresh_schema("tput");
        let store = Arc::new(common::open(&url, &schema).await);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let before = store.stats();
        let started = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|w| {
                let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // 1,000 paths per writer, set over and over: updates after the first lap.
                        let path = format!("/bench/{w:03}/{:04}", i % 1000);
                        let body = Body::new(
                            json!({"value": i, "writer": w, "text": "a small happn document"})
                                .as_object()
                                .cloned()
                                .unwrap_or_default(),
                        );
                        store.replace(&path, body, happn_engine::now_millis()).await.expect("set");
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("writer");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let sets = done.load(Ordering::Relaxed);
        let stats = store.stats();
        let commits = stats.commits - before.commits;
        println!(
            "{n:>4} writers: {:>8.0} durable sets/s ({sets} in {elapsed:.1} s), {commits} transactions, {:.1} sets per transaction",
            sets as f64 / elapsed,
            sets as f64 / commits.max(1) as f64
        );
        assert!(sets > 0);
        drop(store);
        common::drop_schema(&url, &schema).await;
    }
}
