//! Quick throughput measurements (not run by default):
//! `cargo test --release -p happn-store-redb --test throughput -- --ignored --nocapture --test-threads=1`

use happn_engine::storage::{MemoryStore, Store, WriteBatch};
use happn_engine::{Pattern, Record};
use happn_store_redb::{DurabilityOptions, RedbStore};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: usize = 32;
const RUN: Duration = Duration::from_secs(3);

fn record(path: String, n: u64) -> Record {
    let Value::Object(data) = json!({"value": n, "name": "sensor reading", "tags": ["a", "b"]}) else {
        unreachable!()
    };
    Record::new(path, data, 1_700_000_000_000)
}

/// `WRITERS` tasks each writing one-record batches through `Store::write` for `RUN`.
async fn concurrent_sets(store: Arc<dyn Store>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store
                        .write(WriteBatch::put(record(format!("/bench/{w}/{}", i % 1000), i)))
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn gets(store: &dyn Store) -> f64 {
    let n = 200_000;
    let start = Instant::now();
    for i in 0..n {
        let r = store.get(&format!("/bench/{}/{}", i % WRITERS, i % 1000)).await.unwrap();
        assert!(r.is_some());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure() {
    let dir = tempfile::tempdir().unwrap();
    for options in [DurabilityOptions::DURABLE, DurabilityOptions::RELAXED] {
        let file = dir.path().join(format!("bench-{}.redb", options.relaxed));
        let store = Arc::new(RedbStore::open(&file, options).unwrap());
        let rate = concurrent_sets(store.clone()).await;
        let stats = store.commit_stats();
        eprintln!(
            "redb {}: {WRITERS} writers, {rate:.0} sets/s ({} commits, {} durable, {:.1} writes per commit)",
            if options.relaxed { "relaxed" } else { "durable" },
            stats.commits,
            stats.durable_commits,
            stats.operations as f64 / stats.commits as f64,
        );
        let get_rate = gets(store.as_ref()).await;
        eprintln!(
            "redb {}: exact get {get_rate:.0}/s (one task)",
            if options.relaxed { "relaxed" } else { "durable" }
        );
        let start = Instant::now();
        let found = store.find(&Pattern::new("/bench/1*")).await.unwrap();
        eprintln!("redb: find /bench/1* -> {} records in {:?}", found.len(), start.elapsed());
    }
    let mem: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let rate = concurrent_sets(mem.clone()).await;
    eprintln!("memory: {WRITERS} writers, {rate:.0} sets/s");
    eprintln!("memory: exact get {:.0}/s (one task)", gets(mem.as_ref()).await);
}
