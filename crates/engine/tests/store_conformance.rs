//! The Store conformance suite (`happn_engine::storage::conformance`) on the memory store and on
//! the routed store (several memory stores behind patterns, as the `datastores` config makes).

use happn_engine::storage::{conformance, MemoryStore, Route, RoutedStore, Store};
use happn_engine::Pattern;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::run(|| Arc::new(MemoryStore::new()) as Arc<dyn Store>).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_store_conforms() {
    conformance::run(|| {
        Arc::new(RoutedStore::new(
            vec![
                Route {
                    name: "g".into(),
                    patterns: vec![Pattern::new("/g/*"), Pattern::new("/pair/*")],
                    store: Arc::new(MemoryStore::new()),
                },
                Route {
                    name: "unicode".into(),
                    patterns: vec![Pattern::new("/u/*")],
                    store: Arc::new(MemoryStore::new()),
                },
            ],
            Arc::new(MemoryStore::new()),
        )) as Arc<dyn Store>
    })
    .await;
}
