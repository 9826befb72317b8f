//! The shared Store conformance suite on PostgreSQL. Needs a database: run it through
//! `scripts/pg.sh run cargo test --release -p happn-store-postgres` (HAPPN_PG_URL).

mod common;

use happn_engine::storage::Store;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let Some(url) = common::url() else { return };
    let schemas = Arc::new(Mutex::new(Vec::new()));
    let make = {
        let schemas = schemas.clone();
        let url = url.clone();
        move || -> Arc<dyn Store> {
            // Each check gets a fresh, empty store: a schema of its own. The suite's factory is
            // synchronous and opening is not, hence the blocking section.
            let schema = common::fresh_schema("conf");
            schemas.lock().unwrap().push(schema.clone());
            let store = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(common::open(&url, &schema)));
            Arc::new(store)
        }
    };
    happn_engine::storage::conformance::run(make).await;
    let schemas = schemas.lock().unwrap().clone();
    for schema in schemas {
        common::drop_schema(&url, &schema).await;
    }
}
