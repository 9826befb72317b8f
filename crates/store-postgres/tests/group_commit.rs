//! The writer: concurrent writers share transactions, a refused operation fails alone, a group
//! keeps its operations' order, and nodes that start at once migrate the schema once. Needs a
//! database: run through `scripts/pg.sh run cargo test --release -p happn-store-postgres`.

mod common;

use happn_engine::storage::{Store, WriteBatch};
use happn_engine::{Body, Pattern, Record};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn body(v: serde_json::Value) -> Body {
    Body::new(json!({ "v": v }).as_object().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("group");
    let store = Arc::new(common::open(&url, &schema).await);
    const WRITERS: usize = 32;
    const EACH: usize = 40;
    let before = store.stats();
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    store
                        .replace(&format!("/g/{w:02}/{i:03}"), body(json!(i)), 1_000 + i as i64)
                        .await
                        .expect("set");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let stats = store.stats();
    let ops = stats.operations - before.operations;
    let commits = stats.commits - before.commits;
    eprintln!(
        "{ops} sets in {commits} transactions ({:.1} per commit) in {:?}",
        ops as f64 / commits as f64,
        started.elapsed()
    );
    assert_eq!(ops, (WRITERS * EACH) as u64);
    assert!(
        commits * 4 <= ops,
        "32 concurrent writers must share transactions: {commits} commits for {ops} sets"
    );
    assert_eq!(store.len().await.expect("len"), WRITERS * EACH);
    let back = store.get("/g/31/039").await.expect("get").expect("stored");
    assert_eq!((back.created, back.data["v"].clone()), (1_039, json!(39)));
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_operation_fails_alone() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("refused");
    let store = Arc::new(common::open(&url, &schema).await);
    let before = store.stats();
    // Sent together so they share a group: PostgreSQL text cannot hold NUL, so one is refused.
    let nothing = Pattern::new("/nothing/*");
    let (a, bad, b, c) = tokio::join!(
        store.replace("/ok/a", body(json!(1)), 10),
        store.replace("/bad/\u{0}", body(json!(2)), 10),
        store.write(WriteBatch::put(Record::new("/ok/b", body(json!(3)), 10))),
        store.remove_matching(&nothing),
    );
    assert_eq!(a.expect("its neighbour is refused, not this"), (10, 10));
    b.expect("its neighbour is refused, not this");
    assert_eq!(c.expect("remove"), Vec::<String>::new());
    let err = bad.expect_err("a NUL in a path is refused").to_string();
    assert!(err.contains("cluster store:") && !err.contains("unavailable"), "{err}");
    assert!(store.health().is_healthy(), "a refused statement is not an outage");
    let stats = store.stats();
    assert!(stats.group_failures > before.group_failures, "{stats:?}");
    assert_eq!(store.len().await.expect("len"), 2);
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_keeps_the_order_of_its_operations() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("order");
    let store = common::open(&url, &schema).await;
    let rec = |p: &str, v: i64, created: i64| Record::new(p, body(json!(v)), created);
    // join! polls in order, so the operations are queued in this order and (mostly) share one
    // group: same paths again and again, which splits the group into ordered segments.
    let everything = Pattern::new("/o/*");
    let (w1, w2, rm, r1, w3, r2, r3) = tokio::join!(
        store.write(WriteBatch::put(rec("/o/a", 1, 5))),
        store.write(WriteBatch {
            puts: vec![rec("/o/b", 1, 5), rec("/o/b", 2, 6)],
            removes: vec!["/o/b".into(), "/o/x".into()],
        }),
        store.remove_matching(&everything),
        store.replace("/o/a", body(json!(3)), 100),
        store.write(WriteBatch {
            puts: vec![rec("/o/c", 4, 7)],
            removes: vec!["/o/a".into()],
        }),
        store.replace("/o/c", body(json!(5)), 200),
        store.replace("/o/c", body(json!(6)), 3),
    );
    w1.expect("w1");
    w2.expect("w2");
    assert_eq!(rm.expect("remove"), ["/o/a", "/o/b"], "the remove sees the puts queued before it");
    assert_eq!(r1.expect("r1"), (100, 100), "after the remove, a new record");
    w3.expect("w3");
    assert_eq!(r2.expect("r2"), (7, 200), "created of the put before it");
    assert_eq!(r3.expect("r3"), (7, 7), "modified never before created");
    let all = store.find(&Pattern::new("*")).await.expect("find");
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].path.as_str(), all[0].created, all[0].modified, all[0].data["v"].clone()),
        ("/o/c", 7, 7, json!(6))
    );
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_at_once_migrate_once() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("migrate");
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            async move { common::open(&url, &schema).await }
        })
        .collect();
    let stores = futures_join_all(opens).await;
    assert_eq!(stores.len(), 6);
    stores[0]
        .write(WriteBatch::put(Record::new("/m", body(json!(1)), 1)))
        .await
        .expect("write");
    for s in &stores {
        assert!(s.get("/m").await.expect("get").is_some(), "every node sees one table");
    }
    let admin = common::admin(&url).await;
    let rows = admin
        .query(&format!("SELECT version FROM \"{schema}\".happn_migrations ORDER BY version"), &[])
        .await
        .expect("migrations");
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let known: Vec<i32> = happn_store_postgres::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(versions, known, "each migration recorded once");
    common::drop_schema(&url, &schema).await;
}

/// Await every future concurrently (tokio only: no futures crate for one helper).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_groups_and_scans_stay_within_bounds() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("scan");
    let store = Arc::new(common::open(&url, &schema).await);
    // Prefix ranges across multi-byte characters: only the range, and the matcher decides.
    let paths = [
        "/p/\u{7F}",
        "/p/\u{80}",
        "/p/\u{FFFF}",
        "/p/\u{10FFFF}",
        "/p\u{10FFFF}",
        "/q",
        "/p/a*b",
        "/p/aXb",
    ];
    store
        .write(WriteBatch {
            puts: paths.iter().map(|p| Record::new(*p, body(json!(p)), 1)).collect(),
            removes: vec![],
        })
        .await
        .expect("write");
    let found: Vec<String> = store
        .find(&Pattern::new("/p/*"))
        .await
        .expect("find")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        found,
        ["/p/a*b", "/p/aXb", "/p/\u{7F}", "/p/\u{80}", "/p/\u{FFFF}", "/p/\u{10FFFF}"]
    );
    let found: Vec<String> = store
        .find(&Pattern::new("/p/a*b"))
        .await
        .expect("find")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(found, ["/p/a*b", "/p/aXb"], "* in a stored path is just a character");
    assert_eq!(
        store.remove_matching(&Pattern::new("/p/\u{80}*")).await.expect("remove"),
        ["/p/\u{80}"]
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // Many small writers at once: more than one group's worth is queued and split.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(WriteBatch::put(Record::new(format!("/many/{i:04}"), body(json!(i)), 1)))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("write");
    }
    assert!(Instant::now() < deadline);
    assert_eq!(store.find(&Pattern::new("/many/*")).await.expect("find").len(), 200);
    common::drop_schema(&url, &schema).await;
}
