//! Behaviour of the redb store: the memory store's contract (ordered, anchored, exact scans;
//! atomic batches and removes), persistence, group commit, relaxed mode, space reuse, errors
//! (disk faults: `faults.rs`).

use happn_engine::storage::{MemoryStore, Store, WriteBatch};
use happn_engine::{Pattern, Record, StoreError};
use happn_store_redb::{DurabilityOptions, RedbStore, FLUSH_INTERVAL};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rec(p: &str) -> Record {
    Record::new(p, Map::new(), 1)
}

fn rec_with(p: &str, v: Value) -> Record {
    let Value::Object(data) = json!({ "value": v }) else {
        unreachable!()
    };
    Record::new(p, data, 7)
}

fn open(dir: &Path) -> RedbStore {
    RedbStore::open(&dir.join("happn.redb"), DurabilityOptions::default()).unwrap()
}

async fn paths(s: &dyn Store, pattern: &str) -> Vec<String> {
    s.find(&Pattern::new(pattern)).await.unwrap().into_iter().map(|r| r.path).collect()
}

#[tokio::test]
async fn ordered_pattern_scans_and_atomic_removes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let batch = WriteBatch {
        puts: ["/b/2", "/a/1", "/b/10", "/x/b/1", "b/3"].into_iter().map(rec).collect(),
        removes: vec![],
    };
    s.write(batch).await.unwrap();
    assert_eq!(paths(&s, "/b/*").await, ["/b/10", "/b/2"], "byte order, anchored");
    assert_eq!(paths(&s, "*").await, ["/a/1", "/b/10", "/b/2", "/x/b/1", "b/3"]);
    assert_eq!(s.find(&Pattern::new("/a/1")).await.unwrap().len(), 1);
    let removed = s.remove_matching(&Pattern::new("/x/*")).await.unwrap();
    assert_eq!(removed, ["/x/b/1"]);
    assert_eq!(s.remove_matching(&Pattern::new("/b/*")).await.unwrap().len(), 2);
    assert_eq!(s.len().await.unwrap(), 2);
}

/// The same operations on the memory store and the redb store give the same answers.
#[tokio::test]
async fn agrees_with_the_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    let redb = open(dir.path());
    let mem = MemoryStore::new();
    let all = [
        "/a",
        "/a/",
        "/a/b",
        "/a/b/c",
        "/a/x/c",
        "/a/x/cde",
        "/a0",
        "/a.b",
        "/r/3",
        "/x/r/3",
        "a/b",
        "",
        "/u/\u{e9}",
        "/u/\u{10FFFF}",
        "/u/\u{10FFFF}x",
        "/u0",
        "/dot.x",
        "/dotX",
        "/m+/1",
        "/m/1",
    ];
    let patterns = [
        "*",
        "/a/*",
        "/a*",
        "/a/*/c",
        "/a/*c*",
        "/r/*",
        "*/r/*",
        "/u/*",
        "/u/\u{10FFFF}*",
        "/dot.*",
        "/m+/*",
        "/a/b",
        "",
        "/nothing/*",
        "*x",
        "/a**",
    ];
    for store in [&redb as &dyn Store, &mem] {
        store
            .write(WriteBatch {
                puts: all.iter().map(|p| rec(p)).collect(),
                removes: vec![],
            })
            .await
            .unwrap();
    }
    for p in patterns {
        assert_eq!(paths(&redb, p).await, paths(&mem, p).await, "find {p:?}");
    }
    for p in ["/a/*/c", "/u/*", "/m+/1", "/missing", "*x"] {
        let a = redb.remove_matching(&Pattern::new(p)).await.unwrap();
        let b = mem.remove_matching(&Pattern::new(p)).await.unwrap();
        assert_eq!(a, b, "remove_matching {p:?}");
        assert_eq!(paths(&redb, "*").await, paths(&mem, "*").await, "after removing {p:?}");
    }
    assert_eq!(redb.len().await.unwrap(), mem.len().await.unwrap());
}

#[tokio::test]
async fn wildcards_are_anchored_and_exact_paths_literal() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for p in ["/r/3", "/x/r/3", "/a/x/c", "/a/x/cde", "a/b", "/a/b"] {
        s.write(WriteBatch::put(rec(p))).await.unwrap();
    }
    assert_eq!(paths(&s, "/r/*").await, ["/r/3"], "start-anchored");
    assert_eq!(paths(&s, "/a/*/c").await, ["/a/x/c"], "end-anchored");
    assert_eq!(paths(&s, "a/b").await, ["a/b"], "no normalisation");
    assert!(s.get("/a/b/").await.unwrap().is_none());
    assert_eq!(s.remove_matching(&Pattern::new("/r/*")).await.unwrap(), ["/r/3"]);
    assert!(s.get("/x/r/3").await.unwrap().is_some(), "an anchored remove leaves /x/r/3");
    assert_eq!(s.remove_matching(&Pattern::new("/nope")).await.unwrap(), Vec::<String>::new());
    assert_eq!(s.remove_matching(&Pattern::new("a/b")).await.unwrap(), ["a/b"]);
    assert!(s.get("a/b").await.unwrap().is_none());
}

#[tokio::test]
async fn records_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let Value::Object(data) = json!({"z": {"deep": [1, 2.5, "three", null, true]}, "a": 18446744073709551615u64, "f": 0.1}) else {
        unreachable!()
    };
    let mut r = Record::new("/_TAGS/x/y", data, 1_700_000_000_000);
    r.modified = 1_700_000_000_999;
    r.tag = Some("snapshot-1".into());
    s.write(WriteBatch::put(r.clone())).await.unwrap();
    let back = s.get("/_TAGS/x/y").await.unwrap().unwrap();
    assert_eq!(back, r);
    assert_eq!(back.data.keys().collect::<Vec<_>>(), ["z", "a", "f"], "key order kept");
    assert_eq!(s.find(&Pattern::new("/_TAGS/*")).await.unwrap(), [r]);
}

#[tokio::test]
async fn a_batch_applies_removes_then_puts_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.write(WriteBatch {
        puts: vec![rec("/k/1"), rec("/k/2")],
        removes: vec![],
    })
    .await
    .unwrap();
    s.write(WriteBatch {
        puts: vec![rec_with("/k/2", json!("new")), rec("/k/3")],
        removes: vec!["/k/1".into(), "/k/2".into(), "/k/missing".into()],
    })
    .await
    .unwrap();
    assert_eq!(paths(&s, "/k/*").await, ["/k/2", "/k/3"]);
    assert_eq!(s.get("/k/2").await.unwrap().unwrap().data["value"], "new");
    s.write(WriteBatch::default()).await.unwrap();
    assert_eq!(s.commit_stats().operations, 2, "an empty batch commits nothing");
}

/// Readers never see half a batch or half a remove, even while the writer is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_batches_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let v = json!(i);
                s.write(WriteBatch {
                    puts: vec![
                        rec_with(&format!("/pair/{i:03}/a"), v.clone()),
                        rec_with(&format!("/pair/{i:03}/b"), v),
                    ],
                    removes: vec![],
                })
                .await
                .unwrap();
                if i % 3 == 0 {
                    s.remove_matching(&Pattern::new(&format!("/pair/{i:03}/*"))).await.unwrap();
                }
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() {
        let found = s.find(&Pattern::new("/pair/*")).await.unwrap();
        assert_eq!(found.len() % 2, 0, "pairs come and go together");
        for pair in found.chunks(2) {
            assert_eq!(pair[0].path.trim_end_matches('a'), pair[1].path.trim_end_matches('b'));
            assert_eq!(pair[0].data, pair[1].data);
        }
        checks += 1;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(checks > 0);
    assert_eq!(s.len().await.unwrap(), 2 * (200 - 67));
}

#[tokio::test]
async fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    for options in [DurabilityOptions::DURABLE, DurabilityOptions::RELAXED] {
        let file = dir.path().join(format!("reopen-{}.redb", options.relaxed));
        {
            let s = RedbStore::open(&file, options).unwrap();
            for i in 0..100 {
                s.write(WriteBatch::put(rec_with(&format!("/p/{i:03}"), json!(i)))).await.unwrap();
            }
            assert_eq!(s.remove_matching(&Pattern::new("/p/09*")).await.unwrap().len(), 10);
        }
        let s = RedbStore::open(&file, options).unwrap();
        assert_eq!(s.len().await.unwrap(), 90, "relaxed={}", options.relaxed);
        assert_eq!(s.get("/p/042").await.unwrap().unwrap().data["value"], 42);
        assert!(s.get("/p/095").await.unwrap().is_none());
        assert_eq!(s.options(), options);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let before = s.commit_stats();
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    s.write(WriteBatch::put(rec_with(&format!("/w/{w:02}/{i:03}"), json!([w, i]))))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = s.commit_stats();
    let commits = stats.commits - before.commits;
    assert_eq!(stats.operations - before.operations, 3200);
    assert_eq!(
        stats.durable_commits - before.durable_commits,
        commits,
        "durable mode: every commit is durable"
    );
    eprintln!(
        "32 writers x 100 writes: {commits} commits ({:.1} writes per commit)",
        3200.0 / commits as f64
    );
    // With 32 writers each waiting for its ack, a group holds up to 32 writes; even a very fast
    // disk leaves most of them queued behind the previous fsync.
    assert!(commits <= 800, "{commits} commits for 3200 writes: group commit is not grouping");
    assert_eq!(s.len().await.unwrap(), 3200);
    assert_eq!(s.get("/w/31/099").await.unwrap().unwrap().data["value"], json!([31, 99]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_mode_commits_non_durably_then_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relaxed.redb");
    let s = Arc::new(RedbStore::open(&file, DurabilityOptions::RELAXED).unwrap());
    let base = s.commit_stats();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let path = format!("/rx/{w}/{i:02}");
                    s.write(WriteBatch::put(rec_with(&path, json!(i)))).await.unwrap();
                    // Read-your-writes: answered means visible.
                    assert!(s.get(&path).await.unwrap().is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let during = s.commit_stats();
    assert!(
        during.commits > during.durable_commits,
        "relaxed groups commit with Durability::None: {during:?}"
    );
    // The writer makes them durable by itself within the flush interval, even when idle.
    tokio::time::sleep(FLUSH_INTERVAL * 3).await;
    let after = s.commit_stats();
    assert!(after.durable_commits > base.durable_commits, "{after:?}");
    let idle = s.commit_stats();
    tokio::time::sleep(FLUSH_INTERVAL * 2).await;
    assert_eq!(s.commit_stats(), idle, "no flushes when nothing is pending");
    // sync() forces a durable commit when something is pending.
    s.write(WriteBatch::put(rec("/rx/last"))).await.unwrap();
    let pending = s.commit_stats();
    s.sync().await.unwrap();
    assert!(s.commit_stats().durable_commits > pending.durable_commits);
    drop(Arc::try_unwrap(s).ok().expect("sole owner"));
    let s = RedbStore::open(&file, DurabilityOptions::RELAXED).unwrap();
    assert_eq!(s.len().await.unwrap(), 401);
}

/// Deletes reclaim space: set and remove the same 10k paths, round after round, and the file
/// stays under 3x its size after the first round (redb reuses the freed pages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_is_reused() {
    const PATHS: usize = 10_000;
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("space.redb");
    let s = Arc::new(RedbStore::open(&file, DurabilityOptions::default()).unwrap());
    let body = "x".repeat(100);
    let mut first = 0;
    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
        // Sets arrive from 8 concurrent writers in batches of 50, as a busy server would issue them.
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let (s, body) = (s.clone(), body.clone());
                tokio::spawn(async move {
                    let mine: Vec<usize> = (0..PATHS).filter(|i| i % 8 == w).collect();
                    for chunk in mine.chunks(50) {
                        let puts = chunk
                            .iter()
                            .map(|i| rec_with(&format!("/space/{i:05}"), json!({"round": round, "body": body})))
                            .collect();
                        s.write(WriteBatch { puts, removes: vec![] }).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.len().await.unwrap(), PATHS);
        // Remove half by path (concurrent batches of 25), the rest with one wildcard remove.
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mine: Vec<usize> = (0..PATHS).step_by(2).filter(|i| i / 2 % 8 == w).collect();
                    for chunk in mine.chunks(25) {
                        let removes = chunk.iter().map(|i| format!("/space/{i:05}")).collect();
                        s.write(WriteBatch { puts: vec![], removes }).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.remove_matching(&Pattern::new("/space/*")).await.unwrap().len(), PATHS / 2);
        assert_eq!(s.len().await.unwrap(), 0);
        let size = std::fs::metadata(&file).unwrap().len();
        if round == 0 {
            first = size;
        }
        sizes.push(size);
    }
    eprintln!("file size per round (bytes): {sizes:?}");
    let max = *sizes.iter().max().unwrap();
    assert!(max < 3 * first, "file grew to {max} bytes, first round {first}: {sizes:?}");
    // Reopening compacts: the empty store gives its space back.
    drop(Arc::try_unwrap(s).ok().expect("sole owner"));
    let s = RedbStore::open(&file, DurabilityOptions::default()).unwrap();
    let compacted = std::fs::metadata(&file).unwrap().len();
    eprintln!("after reopen + compact: {compacted} bytes");
    assert!(compacted <= first, "compaction on open: {compacted} > {first}");
    assert_eq!(s.len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_locked_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locked.redb");
    let _first = RedbStore::open(&file, DurabilityOptions::default()).unwrap();
    let Err(err) = RedbStore::open(&file, DurabilityOptions::default()) else {
        panic!("opened twice")
    };
    assert!(
        matches!(&err, StoreError::Io(m) if m.contains("locked") && m.contains("locked.redb")),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("garbage.redb");
    std::fs::write(&file, vec![0x5a; 64 * 1024]).unwrap();
    let Err(err) = RedbStore::open(&file, DurabilityOptions::default()) else {
        panic!("opened garbage")
    };
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("garbage.redb")), "{err}");
}

#[tokio::test]
async fn a_damaged_database_is_corrupt_or_recovered_never_wrong() {
    // Overwrite bytes in the middle of a real database: opening must fail as Corrupt or succeed
    // with intact records (the damage hit free space); it must not hand back garbage.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("damaged.redb");
    {
        let s = RedbStore::open(&file, DurabilityOptions::default()).unwrap();
        let puts = (0..2000).map(|i| rec_with(&format!("/d/{i:04}"), json!(i))).collect();
        s.write(WriteBatch { puts, removes: vec![] }).await.unwrap();
    }
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 3..len / 3 + 8192] {
        *b ^= 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();
    match RedbStore::open(&file, DurabilityOptions::default()) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("damaged.redb"), "{m}"),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(s) => match s.find(&Pattern::new("/d/*")).await {
            Err(StoreError::Corrupt(_)) => {}
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(found) => {
                for r in &found {
                    assert_eq!(r.path, format!("/d/{:04}", r.data["value"].as_i64().unwrap()));
                }
            }
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_gets_do_not_wait_for_the_writer() {
    // Reads use their own read transactions: a get completes while a long write queue drains.
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    s.write(WriteBatch::put(rec("/hot"))).await.unwrap();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    s.write(WriteBatch::put(rec(&format!("/bg/{w}/{i}")))).await.unwrap();
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut gets = 0;
    while start.elapsed() < Duration::from_millis(50) {
        assert!(s.get("/hot").await.unwrap().is_some());
        gets += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(gets > 100, "only {gets} gets in 50 ms");
}
