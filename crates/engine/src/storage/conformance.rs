//! The behaviour every [`Store`] backend must have, as one suite each backend runs on itself:
//! the memory store and the routed store (in `crates/engine/tests/store_conformance.rs`), the
//! durable redb store (`crates/store-redb/tests/conformance.rs`), and any later backend.
//!
//! A new backend passes when `conformance::run(|| make_a_fresh_store()).await` does. Each check
//! gets a fresh, empty store from the factory. The checks panic with a message naming the broken
//! rule, so a failing backend's test output says what it got wrong.
//!
//! Enabled with the `conformance` feature (a dev-dependency of each backend's tests).

use super::{Store, WriteBatch};
use crate::data::{DataService, SetData, SetOptions};
use crate::path::Pattern;
use crate::record::Record;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A named check of the suite.
pub type Check = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every check, by name, in the order [`run`] runs them.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("ordered_scans", |s| Box::pin(ordered_scans(s))),
        ("anchored_patterns_with_literal_prefixes", |s| {
            Box::pin(anchored_patterns_with_literal_prefixes(s))
        }),
        ("unicode_paths_in_byte_order", |s| Box::pin(unicode_paths_in_byte_order(s))),
        ("records_round_trip_exactly", |s| Box::pin(records_round_trip_exactly(s))),
        ("batches_remove_then_put_atomically", |s| {
            Box::pin(batches_remove_then_put_atomically(s))
        }),
        ("readers_see_whole_batches_only", |s| Box::pin(readers_see_whole_batches_only(s))),
        ("multi_removes_are_atomic_and_ordered", |s| {
            Box::pin(multi_removes_are_atomic_and_ordered(s))
        }),
        ("created_survives_replace", |s| Box::pin(created_survives_replace(s))),
        ("tags_and_siblings", |s| Box::pin(tags_and_siblings(s))),
        ("concurrent_merges_lose_nothing", |s| Box::pin(concurrent_merges_lose_nothing(s))),
        ("large_values", |s| Box::pin(large_values(s))),
        ("snapshots_are_consistent", |s| Box::pin(snapshots_are_consistent(s))),
    ]
}

/// Run every check, each on a fresh store from `make`.
pub async fn run(make: impl Fn() -> Arc<dyn Store>) {
    for (name, check) in checks() {
        eprintln!("store conformance: {name}");
        check(make()).await;
    }
}

fn rec(path: &str, value: Value) -> Record {
    let Value::Object(data) = json!({ "value": value }) else {
        unreachable!("an object literal")
    };
    Record::new(path, data, 7)
}

async fn put_all(s: &dyn Store, paths: &[&str]) {
    let batch = WriteBatch {
        puts: paths.iter().map(|p| rec(p, json!(p))).collect(),
        removes: vec![],
    };
    s.write(batch).await.expect("write");
}

async fn paths(s: &dyn Store, pattern: &str) -> Vec<String> {
    s.find(&Pattern::new(pattern))
        .await
        .expect("find")
        .into_iter()
        .map(|r| r.path)
        .collect()
}

/// Scans come back in ascending byte order of the path, whatever the write order.
pub async fn ordered_scans(s: Arc<dyn Store>) {
    put_all(&*s, &["/b/2", "/a/1", "/b/10", "/x/b/1", "b/3", "/B/1", "/b/1/", "/b/1"]).await;
    assert_eq!(
        paths(&*s, "*").await,
        ["/B/1", "/a/1", "/b/1", "/b/1/", "/b/10", "/b/2", "/x/b/1", "b/3"],
        "a full scan is in byte order"
    );
    assert_eq!(paths(&*s, "/b/*").await, ["/b/1", "/b/1/", "/b/10", "/b/2"], "a prefix scan too");
    assert_eq!(s.len().await.expect("len"), 8);
}

/// `*` matches any run of characters (including `/`), the pattern must match the whole path,
/// and every other character is literal — including regex and LIKE metacharacters.
pub async fn anchored_patterns_with_literal_prefixes(s: Arc<dyn Store>) {
    put_all(
        &*s,
        &[
            "/r/3", "/x/r/3", "/a/x/c", "/a/x/cde", "a/b", "/a/b", "/a.b", "/aXb", "/m+/1", "/m/1", "/p%/1", "/p_/1", "/pq/1", "/s\\/1",
            "/s/1", "",
        ],
    )
    .await;
    assert_eq!(paths(&*s, "/r/*").await, ["/r/3"], "start-anchored");
    assert_eq!(paths(&*s, "*/r/*").await, ["/r/3", "/x/r/3"], "a leading * reaches every prefix");
    assert_eq!(paths(&*s, "/a/*/c").await, ["/a/x/c"], "end-anchored");
    assert_eq!(paths(&*s, "/a/*c*").await, ["/a/x/c", "/a/x/cde"]);
    assert_eq!(paths(&*s, "a/b").await, ["a/b"], "no normalisation");
    assert_eq!(paths(&*s, "/a.b").await, ["/a.b"], "a dot is literal");
    assert_eq!(paths(&*s, "/m+/*").await, ["/m+/1"], "a plus is literal");
    assert_eq!(paths(&*s, "/p%/*").await, ["/p%/1"], "a percent is literal");
    assert_eq!(paths(&*s, "/p_/*").await, ["/p_/1"], "an underscore is literal");
    assert_eq!(paths(&*s, "/s\\/*").await, ["/s\\/1"], "a backslash is literal");
    assert_eq!(paths(&*s, "").await, [""], "the empty path is a path");
    assert_eq!(paths(&*s, "/nothing/*").await, Vec::<String>::new());
    assert_eq!(paths(&*s, "/a**").await, ["/a.b", "/a/b", "/a/x/c", "/a/x/cde", "/aXb"], "** is *");
    assert!(s.get("/a/b/").await.expect("get").is_none(), "exact gets are exact");
    assert_eq!(
        s.find(&Pattern::new("/a/b")).await.expect("find").len(),
        1,
        "an exact pattern finds one"
    );
}

/// Paths are compared as bytes (UTF-8), so non-ASCII paths sort after ASCII ones and by code
/// point, and round-trip unchanged.
pub async fn unicode_paths_in_byte_order(s: Arc<dyn Store>) {
    put_all(
        &*s,
        &["/u/\u{e9}", "/u/\u{10FFFF}", "/u/\u{10FFFF}x", "/u/z", "/u/\u{4e2d}\u{6587}", "/u0"],
    )
    .await;
    assert_eq!(
        paths(&*s, "/u/*").await,
        ["/u/z", "/u/\u{e9}", "/u/\u{4e2d}\u{6587}", "/u/\u{10FFFF}", "/u/\u{10FFFF}x"]
    );
    assert_eq!(paths(&*s, "/u/\u{10FFFF}*").await, ["/u/\u{10FFFF}", "/u/\u{10FFFF}x"]);
    let back = s.get("/u/\u{4e2d}\u{6587}").await.expect("get").expect("stored");
    assert_eq!(back.data["value"], json!("/u/\u{4e2d}\u{6587}"));
}

/// A record comes back as written: body (key order too), created, modified, tag.
pub async fn records_round_trip_exactly(s: Arc<dyn Store>) {
    let Value::Object(data) =
        json!({"z": {"deep": [1, 2.5, "three", null, true]}, "a": 18446744073709551615u64, "f": 0.1, "s": "\u{1F600}\"\\"})
    else {
        unreachable!("an object literal")
    };
    let mut r = Record::new("/_TAGS/x/y", data, 1_700_000_000_000);
    r.modified = 1_700_000_000_999;
    r.tag = Some("snapshot-1".into());
    s.write(WriteBatch::put(r.clone())).await.expect("write");
    let back = s.get("/_TAGS/x/y").await.expect("get").expect("stored");
    assert_eq!(back, r);
    assert_eq!(
        (back.created, back.modified, back.tag.as_deref()),
        (r.created, r.modified, Some("snapshot-1"))
    );
    assert_eq!(back.data.keys().collect::<Vec<_>>(), ["z", "a", "f", "s"], "key order kept");
    assert_eq!(s.find(&Pattern::new("/_TAGS/*")).await.expect("find"), [r]);
}

/// A batch's removes apply before its puts, all in one step; a missing path is no error; an
/// empty batch is fine.
pub async fn batches_remove_then_put_atomically(s: Arc<dyn Store>) {
    put_all(&*s, &["/k/1", "/k/2"]).await;
    s.write(WriteBatch {
        puts: vec![rec("/k/2", json!("new")), rec("/k/3", json!(3))],
        removes: vec!["/k/1".into(), "/k/2".into(), "/k/missing".into()],
    })
    .await
    .expect("write");
    assert_eq!(paths(&*s, "/k/*").await, ["/k/2", "/k/3"]);
    assert_eq!(s.get("/k/2").await.expect("get").expect("stored").data["value"], "new");
    s.write(WriteBatch::default()).await.expect("an empty batch");
    assert_eq!(s.len().await.expect("len"), 2);
}

/// Readers never see half a batch or half a remove, even while a writer is busy.
pub async fn readers_see_whole_batches_only(s: Arc<dyn Store>) {
    const PAIRS: usize = 150;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..PAIRS {
                s.write(WriteBatch {
                    puts: vec![rec(&format!("/pair/{i:03}/a"), json!(i)), rec(&format!("/pair/{i:03}/b"), json!(i))],
                    removes: vec![],
                })
                .await
                .expect("write");
                if i % 3 == 0 {
                    s.remove_matching(&Pattern::new(&format!("/pair/{i:03}/*"))).await.expect("remove");
                }
            }
        })
    };
    let mut checks = 0;
    loop {
        let done = writer.is_finished();
        let found = s.find(&Pattern::new("/pair/*")).await.expect("find");
        assert_eq!(found.len() % 2, 0, "pairs come and go together");
        for pair in found.chunks(2) {
            assert_eq!(pair[0].path.trim_end_matches('a'), pair[1].path.trim_end_matches('b'));
            assert_eq!(pair[0].data, pair[1].data);
        }
        checks += 1;
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert!(checks > 0);
    assert_eq!(s.len().await.expect("len"), 2 * (PAIRS - PAIRS.div_ceil(3)));
}

/// `remove_matching` removes every match at once, returns them in path order, and leaves the
/// rest alone.
pub async fn multi_removes_are_atomic_and_ordered(s: Arc<dyn Store>) {
    put_all(&*s, &["/g/3", "/g/1", "/g/2/x", "/h/1", "/gg/1"]).await;
    assert_eq!(
        s.remove_matching(&Pattern::new("/g/*")).await.expect("remove"),
        ["/g/1", "/g/2/x", "/g/3"]
    );
    assert_eq!(paths(&*s, "*").await, ["/gg/1", "/h/1"]);
    assert_eq!(
        s.remove_matching(&Pattern::new("/nope")).await.expect("remove"),
        Vec::<String>::new()
    );
    assert_eq!(s.remove_matching(&Pattern::new("/h/1")).await.expect("remove"), ["/h/1"]);
    assert_eq!(s.remove_matching(&Pattern::new("*")).await.expect("remove"), ["/gg/1"]);
    assert_eq!(s.len().await.expect("len"), 0);
}

/// A replace keeps the first `created` and never sets `modified` before it.
pub async fn created_survives_replace(s: Arc<dyn Store>) {
    let body = |v: i64| crate::body::Body::new(json!({ "v": v }).as_object().cloned().unwrap_or_default());
    assert_eq!(s.replace("/c", body(1), 100).await.expect("replace"), (100, 100), "a new record");
    assert_eq!(s.created_at("/c").await.expect("created_at"), Some(100));
    assert_eq!(s.replace("/c", body(2), 250).await.expect("replace"), (100, 250), "created kept");
    assert_eq!(
        s.replace("/c", body(3), 50).await.expect("replace"),
        (100, 100),
        "modified not before created"
    );
    let back = s.get("/c").await.expect("get").expect("stored");
    assert_eq!((back.created, back.modified, back.data["v"].clone()), (100, 100, json!(3)));
    assert_eq!(s.created_at("/none").await.expect("created_at"), None);
}

/// Through the data service: a tag writes its snapshot under `/_TAGS` and bumps the source in
/// one batch; a sibling lands at a new path below the named one.
pub async fn tags_and_siblings(s: Arc<dyn Store>) {
    let data = DataService::new(s.clone());
    let body = |v: Value| Some(SetData::Value(v));
    data.set("/t/1", body(json!({"a": 1})), &SetOptions::default()).await.expect("set");
    let tagged = data
        .set(
            "/t/1",
            None,
            &SetOptions {
                tag: Some("v1".into()),
                ..Default::default()
            },
        )
        .await
        .expect("tag");
    let snapshot_path = tagged.path("/t/1").to_string();
    assert!(snapshot_path.starts_with("/_TAGS/t/1/"), "{snapshot_path}");
    let snapshot = s.get(&snapshot_path).await.expect("get").expect("the snapshot is stored");
    assert_eq!(snapshot.tag.as_deref(), Some("v1"));
    assert_eq!(snapshot.data["data"], json!({"a": 1}));
    assert_eq!(paths(&*s, "/_TAGS/t/1/*").await, [snapshot_path]);
    let sibling = data
        .set(
            "/t/list",
            body(json!({"n": 1})),
            &SetOptions {
                sibling: true,
                ..Default::default()
            },
        )
        .await
        .expect("sibling");
    let sibling_path = sibling.path("/t/list").to_string();
    assert!(sibling_path.starts_with("/t/list/") && sibling_path.len() == "/t/list/".len() + 32);
    assert_eq!(s.get(&sibling_path).await.expect("get").expect("stored").data["n"], 1);
}

/// Many merges into one path at once, through the data service: no key is lost.
pub async fn concurrent_merges_lose_nothing(s: Arc<dyn Store>) {
    let data = Arc::new(DataService::new(s.clone()));
    let merge = SetOptions {
        merge: true,
        ..Default::default()
    };
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let data = data.clone();
            let merge = merge.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let mut m = Map::new();
                    m.insert(format!("k{t}_{i}"), json!(i));
                    data.set("/merged", Some(SetData::Value(Value::Object(m))), &merge)
                        .await
                        .expect("merge");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("merger");
    }
    let back = s.get("/merged").await.expect("get").expect("stored");
    assert_eq!(back.data.len(), 8 * 25, "every merged key survives");
}

/// Bodies of a few MiB and many records in one batch.
pub async fn large_values(s: Arc<dyn Store>) {
    let big = "x".repeat(3 << 20);
    s.write(WriteBatch::put(rec("/big", json!(big)))).await.expect("a 3 MiB record");
    let back = s.get("/big").await.expect("get").expect("stored");
    assert_eq!(back.data["value"].as_str().map(str::len), Some(3 << 20));
    let many: Vec<Record> = (0..5_000).map(|i| rec(&format!("/many/{i:05}"), json!(i))).collect();
    s.write(WriteBatch {
        puts: many,
        removes: vec![],
    })
    .await
    .expect("5,000 records in one batch");
    assert_eq!(paths(&*s, "/many/*").await.len(), 5_000);
    assert_eq!(s.remove_matching(&Pattern::new("/many/*")).await.expect("remove").len(), 5_000);
    assert_eq!(s.len().await.expect("len"), 1);
}

/// `snapshot` is every record as of one moment, taken while a writer is busy: every batch whole
/// (two accounts whose sum each batch keeps), every write answered before it began there, and
/// the writer's sequence a prefix (nothing later without everything earlier).
pub async fn snapshots_are_consistent(s: Arc<dyn Store>) {
    const STEPS: usize = 120;
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    s.write(WriteBatch {
        puts: vec![rec("/acct/a", json!(STEPS)), rec("/acct/b", json!(0))],
        removes: vec![],
    })
    .await
    .expect("write");
    let writer = {
        let (s, answered) = (s.clone(), answered.clone());
        tokio::spawn(async move {
            for i in 0..STEPS {
                s.write(WriteBatch {
                    puts: vec![
                        rec("/acct/a", json!(STEPS - i - 1)),
                        rec("/acct/b", json!(i + 1)),
                        rec(&format!("/seq/{i:04}"), json!(i)),
                    ],
                    removes: vec![],
                })
                .await
                .expect("write");
                answered.store(i + 1, std::sync::atomic::Ordering::Release);
            }
        })
    };
    let mut snapshots = 0;
    loop {
        let done = writer.is_finished();
        let before = answered.load(std::sync::atomic::Ordering::Acquire);
        let all = s.snapshot().await.expect("snapshot");
        let paths: Vec<&str> = all.iter().map(|r| r.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted, "a snapshot is in path order");
        let value = |p: &str| {
            all.iter()
                .find(|r| r.path == p)
                .map(|r| r.data["value"].as_u64().expect("a number"))
        };
        let (a, b) = (value("/acct/a").expect("a"), value("/acct/b").expect("b"));
        assert_eq!(a + b, STEPS as u64, "a snapshot sees whole batches only");
        let seq: Vec<&str> = paths.iter().copied().filter(|p| p.starts_with("/seq/")).collect();
        assert_eq!(seq.len() as u64, b, "the sequence and the accounts are of one moment");
        for (i, p) in seq.iter().enumerate() {
            assert_eq!(*p, format!("/seq/{i:04}"), "the sequence is a prefix");
        }
        assert!(seq.len() >= before, "every write answered before the snapshot is in it");
        snapshots += 1;
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert!(snapshots > 0);
    assert_eq!(s.snapshot().await.expect("snapshot").len(), STEPS + 2);
}
