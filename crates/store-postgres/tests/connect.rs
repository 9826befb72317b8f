//! Opening fails with a clear error when the database cannot be reached, or cannot be reached
//! the way the URL asks (TLS from a server without it). Needs a database for the TLS case: run
//! through `scripts/pg.sh run cargo test --release -p happn-store-postgres`.

mod common;

use happn_store_postgres::{PgOptions, PgStore};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_databases_are_named_in_the_error() {
    let Some(url) = common::url() else { return };
    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut options = PgOptions::new(format!("postgres://happn:secret@127.0.0.1:{port}/happn"));
    options.connect_timeout = Duration::from_secs(2);
    let err = PgStore::open(options).await.err().expect("nothing listens there").to_string();
    assert!(
        err.starts_with(&format!(
            "storage failure: cluster store unavailable: cannot connect to happn@127.0.0.1:{port}/happn"
        )),
        "{err}"
    );
    assert!(!err.contains("secret"), "no password in errors: {err}");

    // TLS asked for; the test server has none: the rustls path runs and the refusal is clear.
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut options = common::options(&format!("{url}{sep}sslmode=require"), &common::fresh_schema("tls"));
    options.connect_timeout = Duration::from_secs(2);
    let err = PgStore::open(options)
        .await
        .err()
        .expect("the server does not offer TLS")
        .to_string();
    assert!(
        err.starts_with("storage failure: cluster store unavailable: cannot connect to") && err.contains("(TLS)"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("tls"), "{err}");
}
