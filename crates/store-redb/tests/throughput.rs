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
                    // MemoryStore::write never suspends: without this the 32 tasks would starve
                    // the runtime's timer on 2 workers.
                    tokio::task::yield_now().await;
                    // The memory store never suspends: yield so the timer task can stop the run.
                    tokio::task::yield_now().await;
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
    let puts = (0..WRITERS)
        .flat_map(|w| (0..1000).map(move |i| record(format!("/bench/{w}/{i}"), i)))
        .collect();
    store.write(WriteBatch { puts, removes: vec![] }).await.unwrap();
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

/// The floor under group commit: one writer thread, redb alone, 16 puts per durable commit.
#[test]
#[ignore]
fn raw_redb_commit_latency() {
    use redb::{Database, Durability, TableDefinition};
    const T: TableDefinition<&str, &[u8]> = TableDefinition::new("t");
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("raw.redb")).unwrap();
    let value = vec![7u8; 80];
    for durability in [Durability::Immediate, Durability::None] {
        let n = 2000;
        let start = Instant::now();
        for c in 0..n {
            let mut txn = db.begin_write().unwrap();
            txn.set_durability(durability).unwrap();
            {
                let mut t = txn.open_table(T).unwrap();
                for i in 0..16 {
                    t.insert(format!("/bench/{i}/{}", c % 1000).as_str(), value.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let per = start.elapsed() / n;
        eprintln!(
            "raw redb {durability:?}: {per:?} per commit of 16 puts -> {:.0} puts/s",
            16.0 / per.as_secs_f64()
        );
    }
}
