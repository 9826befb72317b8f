//! The Store conformance suite (`happn_engine::storage::conformance`) on the durable redb store,
//! in both durability modes.

use happn_engine::storage::{conformance, Store};
use happn_store_redb::{DurabilityOptions, RedbStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

async fn conforms(options: DurabilityOptions) {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run(|| {
        let file = dir.path().join(format!("store-{}.redb", n.fetch_add(1, Ordering::Relaxed)));
        Arc::new(RedbStore::open(&file, options).unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_redb_store_conforms() {
    conforms(DurabilityOptions::DURABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_redb_store_conforms() {
    conforms(DurabilityOptions::RELAXED).await;
}
