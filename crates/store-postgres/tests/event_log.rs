//! The cluster event log at the store level: several nodes (stores in cluster mode on one
//! schema) writing at once read back one and the same sequence, each event once; the readers'
//! connections killed under writes lose and repeat nothing; a reader held behind the trim
//! horizon reports the gap. Needs a database: run through
//! `scripts/pg.sh run cargo test --release -p happn-store-postgres`.

mod common;

use happn_engine::pubsub::EventKind;
use happn_engine::storage::events::{Event, LoggedEvent, TailItem};
use happn_engine::storage::{Store, WriteBatch};
use happn_engine::{Body, Pattern, Record};
use happn_store_postgres::{ClusterOptions, PgStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

async fn node(url: &str, schema: &str, name: &str, tweak: impl FnOnce(&mut ClusterOptions)) -> PgStore {
    let mut options = common::options(url, schema);
    options.application_name = format!("happn-test-{schema}-{name}");
    let mut cluster = ClusterOptions::new(name, format!("ws://{name}"));
    cluster.poll_interval = Duration::from_millis(200);
    tweak(&mut cluster);
    options.cluster = Some(cluster);
    PgStore::open(options).await.expect("open a cluster node")
}

fn set_event(path: &str, n: u64) -> Event {
    Event {
        kind: EventKind::Set,
        path: path.to_string(),
        moved_to: None,
        data: Some(format!("{{\"n\":{n}}}")),
        created: None,
        modified: None,
        tag: None,
        publish: format!("{{\"w\":{n}}}"),
    }
}

/// Everything a tail hands on until `want` client events arrived (or `limit` passed).
async fn collect(rx: &mut Receiver<TailItem>, want: usize, limit: Duration) -> (Vec<LoggedEvent>, Vec<TailItem>) {
    let deadline = Instant::now() + limit;
    let (mut events, mut gaps) = (Vec::new(), Vec::new());
    while events.iter().filter(|e: &&LoggedEvent| !e.event.is_change_note()).count() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(TailItem::Events(batch))) => events.extend(batch),
            Ok(Some(gap)) => gaps.push(gap),
            Ok(None) | Err(_) => break,
        }
    }
    (events, gaps)
}

fn check_order(events: &[LoggedEvent]) {
    for w in events.windows(2) {
        assert!(w[0].id < w[1].id, "ids ascend, none repeated: {} then {}", w[0].id, w[1].id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reads_one_order() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("log");
    let nodes = [
        Arc::new(node(&url, &schema, "a", |_| {}).await),
        Arc::new(node(&url, &schema, "b", |_| {}).await),
        Arc::new(node(&url, &schema, "c", |_| {}).await),
    ];
    let mut tails: Vec<_> = nodes.iter().map(|n| n.event_log().unwrap().tail().expect("a tail")).collect();
    assert!(nodes[0].event_log().unwrap().tail().is_none(), "one reader per node");
    // 3 nodes × 8 writers × 50 writes, on a few shared paths (so the same path is written
    // through different nodes at once), of every logged kind.
    let mut tasks = Vec::new();
    for (ni, n) in nodes.iter().enumerate() {
        for w in 0..8u64 {
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                let log = n.event_log().unwrap();
                let mut acked = Vec::new();
                for i in 0..50u64 {
                    let k = (ni as u64) * 1000 + w * 50 + i;
                    let path = format!("/shared/{}", k % 7);
                    let id = match i % 5 {
                        0 => log
                            .write_logged(
                                WriteBatch::put(Record::new(&path, Body::from_json("{\"x\":1}").unwrap(), 1)),
                                set_event(&path, k),
                            )
                            .await
                            .unwrap(),
                        1 => {
                            let mut e = set_event(&path, k);
                            e.kind = EventKind::Remove;
                            e.data = None;
                            e.modified = Some(5);
                            let (_, id) = log.remove_matching_logged(&Pattern::new(&path), e).await.unwrap();
                            id
                        }
                        2 => log.append(set_event(&path, k)).await.unwrap(),
                        _ => {
                            log.replace_logged(&path, Body::from_json(&format!("{{\"n\":{k}}}")).unwrap(), 10, set_event(&path, k))
                                .await
                                .unwrap()
                                .1
                        }
                    };
                    acked.push((id, k));
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), 1200);
    let mut seen = Vec::new();
    for rx in tails.iter_mut() {
        let (events, gaps) = collect(rx, 1200, Duration::from_secs(30)).await;
        assert!(gaps.is_empty(), "no gap: {gaps:?}");
        check_order(&events);
        seen.push(events);
    }
    assert_eq!(seen[0].len(), 1200, "every event once, nothing else (no system record was written)");
    assert_eq!(seen[0], seen[1], "node b read what node a read, in the same order");
    assert_eq!(seen[0], seen[2], "node c read what node a read, in the same order");
    // Every acknowledged write's event is there, under the id its writer was given.
    let by_id: std::collections::HashMap<i64, &LoggedEvent> = seen[0].iter().map(|e| (e.id, e)).collect();
    for (id, k) in &acked {
        let e = by_id.get(id).unwrap_or_else(|| panic!("event {id} of write {k} was read"));
        assert_eq!(e.event.publish, format!("{{\"w\":{k}}}"));
    }
    // Filled in by the store: a plain set's stamps, a remove's count.
    for e in &seen[0] {
        match e.event.kind {
            EventKind::Set if e.event.data.as_deref().is_some_and(|d| d.starts_with("{\"n\"")) && e.event.created.is_some() => {
                assert!(e.event.modified.unwrap() >= e.event.created.unwrap());
            }
            EventKind::Remove => {
                let d = e.event.data.as_deref().unwrap();
                assert!(d == "{\"removed\":1}" || d == "{\"removed\":0}", "{d}");
            }
            _ => {}
        }
    }
    let origins: std::collections::HashSet<&str> = seen[0].iter().map(|e| e.origin.as_str()).collect();
    assert_eq!(origins.len(), 3, "events from all three nodes");
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_records_are_noted_for_the_other_nodes() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("note");
    let a = node(&url, &schema, "a", |_| {}).await;
    let b = node(&url, &schema, "b", |_| {}).await;
    let mut tail = b.event_log().unwrap().tail().unwrap();
    let user = Record::new("/_SYSTEM/_SECURITY/_USER/u1", Body::from_json("{\"username\":\"u1\"}").unwrap(), 1);
    a.write(WriteBatch::put(user)).await.unwrap();
    a.write(WriteBatch::put(Record::new("/plain", Body::empty(), 1))).await.unwrap();
    a.remove_matching(&Pattern::new("/_SYSTEM/_SECURITY/_USER/*")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut notes = Vec::new();
    while notes.len() < 2 && Instant::now() < deadline {
        if let Ok(Some(TailItem::Events(batch))) = tokio::time::timeout(Duration::from_secs(1), tail.recv()).await {
            notes.extend(batch);
        }
    }
    let paths: Vec<(&str, bool)> = notes.iter().map(|e| (e.event.path.as_str(), e.event.is_change_note())).collect();
    assert_eq!(
        paths,
        [("/_SYSTEM/_SECURITY/_USER/u1", true), ("/_SYSTEM/_SECURITY/_USER/u1", true)],
        "a note for the put and the remove of the system record, none for /plain"
    );
    assert!(notes.iter().all(|e| e.origin == "a"));
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_reader_connections_lose_and_repeat_nothing() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("rkill");
    let writer = Arc::new(node(&url, &schema, "w", |_| {}).await);
    let reader = node(&url, &schema, "r", |_| {}).await;
    let mut tail = reader.event_log().unwrap().tail().unwrap();
    let admin = common::admin(&url).await;
    let app = format!("happn-test-{schema}-r");
    let total = 3000;
    let w = writer.clone();
    let writes = tokio::spawn(async move {
        let mut handles = Vec::new();
        for t in 0..8u64 {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                let log = w.event_log().unwrap();
                for i in 0..(total / 8) as u64 {
                    let path = format!("/k/{t}/{i}");
                    log.replace_logged(&path, Body::empty(), 1, set_event(&path, t * 10_000 + i))
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    let mut events = Vec::new();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.len() < total && Instant::now() < deadline {
        if let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), tail.recv()).await {
            match item {
                TailItem::Events(batch) => events.extend(batch),
                gap => panic!("no gap: {gap:?}"),
            }
        }
        if kills < 4 && events.len() > kills * 600 + 100 {
            // Every connection of the reading node: its reader's included.
            let killed = admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                    &[&app],
                )
                .await
                .unwrap();
            if !killed.is_empty() {
                kills += 1;
            }
        }
    }
    writes.await.unwrap();
    assert!(kills >= 3, "the reader's connection was killed mid-stream ({kills} times)");
    check_order(&events);
    assert_eq!(events.len(), total, "every event once after {kills} kills");
    let distinct: std::collections::HashSet<&str> = events.iter().map(|e| e.event.publish.as_str()).collect();
    assert_eq!(distinct.len(), total);
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_the_trim_horizon_reports_the_gap() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("trim");
    // The trimmer keeps 100 events; heartbeats (and trims) every 100 ms.
    let a = node(&url, &schema, "a", |c| {
        c.max_events = 100;
        c.heartbeat = Duration::from_millis(100);
    })
    .await;
    let b = node(&url, &schema, "b", |_| {}).await;
    let log = a.event_log().unwrap();
    // b's reader starts after the first 10 events are written and read...
    let mut tail = b.event_log().unwrap().tail().unwrap();
    for i in 0..10 {
        log.append(set_event("/t", i)).await.unwrap();
    }
    let (first, gaps) = collect(&mut tail, 10, Duration::from_secs(10)).await;
    assert!(gaps.is_empty() && first.len() == 10);
    // ...then it is held behind: the server stops taking batches (the tail's channel fills and
    // the reader waits) while 2,000 more are written and trimmed down to the last 100.
    let held = Instant::now();
    for i in 10..2010 {
        log.append(set_event("/t", i)).await.unwrap();
    }
    let admin = common::admin(&url).await;
    let kept = loop {
        let n: i64 = admin
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".happn_events"), &[])
            .await
            .unwrap()
            .get(0);
        if n <= 200 || held.elapsed() > Duration::from_secs(20) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(kept <= 200, "the log was trimmed ({kept} events left)");
    // Taking batches again: what was read before the trim comes first, then the gap, then the
    // events after the horizon; none repeated.
    let (rest, gaps) = collect(&mut tail, 2000, Duration::from_secs(5)).await;
    check_order(&rest);
    assert!(rest.first().is_none_or(|e| e.id > first.last().unwrap().id));
    assert_eq!(gaps.len(), 1, "one gap reported: {gaps:?}");
    let TailItem::Gap { after, resumed_at } = gaps[0] else {
        unreachable!()
    };
    assert!(after >= first.last().unwrap().id && resumed_at > after);
    let after_gap: Vec<_> = rest.iter().filter(|e| e.id > resumed_at).collect();
    assert!(!after_gap.is_empty(), "events after the horizon are delivered");
    assert!(rest.len() < 2000, "trimmed events are not delivered ({} were)", rest.len());
    // Ids the reader got are contiguous after the horizon (no other hole was made).
    assert_eq!(
        after_gap.last().unwrap().id,
        after_gap.first().unwrap().id + after_gap.len() as i64 - 1
    );
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_shows_live_nodes_and_refuses_a_taken_name() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("mem");
    let a = node(&url, &schema, "a", |c| c.heartbeat = Duration::from_millis(100)).await;
    let _b = node(&url, &schema, "b", |_| {}).await;
    let members = a.members().await.unwrap();
    let names: Vec<(&str, bool)> = members.iter().map(|m| (m.name.as_str(), m.alive)).collect();
    assert_eq!(names, [("a", true), ("b", true)]);
    let mut options = common::options(&url, &schema);
    options.cluster = Some(ClusterOptions::new("a", "ws://other"));
    let clash = PgStore::open(options).await.err().expect("a second live node named a is refused");
    assert!(clash.to_string().contains("already named \"a\""), "{clash}");
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_through_different_nodes_keep_every_key() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("merge");
    let nodes = [
        Arc::new(node(&url, &schema, "a", |_| {}).await),
        Arc::new(node(&url, &schema, "b", |_| {}).await),
    ];
    let mut tail = nodes[1].event_log().unwrap().tail().unwrap();
    let mut tasks = Vec::new();
    for (ni, n) in nodes.iter().enumerate() {
        for w in 0..8 {
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let key = format!("k{ni}_{w}_{i}");
                    // What a merge does: the old body plus this key.
                    let update: happn_engine::storage::events::Update = Box::new(move |old| {
                        let mut map = old.map(|r| r.data.map().clone()).unwrap_or_default();
                        map.insert(key.clone(), serde_json::Value::from(1));
                        vec![Record::new("/merged", Body::new(map), 7)]
                    });
                    let mut event = set_event("/merged", 0);
                    event.data = None;
                    n.event_log().unwrap().update_logged("/merged", update, event).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let record = nodes[0].get("/merged").await.unwrap().expect("the merged record");
    assert_eq!(record.data.map().len(), 160, "every key of 160 merges through two nodes is kept");
    let (events, _) = collect(&mut tail, 160, Duration::from_secs(20)).await;
    assert_eq!(events.len(), 160);
    // Each event carries the body its merge wrote: one more key each time, in log order.
    let sizes: Vec<usize> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(e.event.data.as_deref().unwrap())
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, (1..=160).collect::<Vec<_>>());
    common::drop_schema(&url, &schema).await;
}

/// Plain sets through two nodes at once, many writers on a few shared paths (groups of plain
/// sets, each with the same path several times, in one call of `happn_set`): no group fails
/// (before the log's ordering lock was taken first, two nodes' groups deadlocked on shared rows,
/// and PostgreSQL broke each deadlock only after `deadlock_timeout`), every write's stamps are
/// those of a plain set applied in log order, and each record holds its last event's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sets_through_two_nodes_never_deadlock() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema("sets");
    let nodes = [
        Arc::new(node(&url, &schema, "a", |_| {}).await),
        Arc::new(node(&url, &schema, "b", |_| {}).await),
    ];
    let mut tail = nodes[0].event_log().unwrap().tail().expect("a tail");
    let (writers, writes, paths) = (24u64, 40u64, 6u64);
    let mut tasks = Vec::new();
    for (ni, n) in nodes.iter().enumerate() {
        for w in 0..writers {
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                let log = n.event_log().unwrap();
                let mut acked = Vec::new();
                for i in 0..writes {
                    let k = (ni as u64) * 100_000 + w * 1000 + i;
                    // Writers walk the paths in different orders.
                    let path = format!("/shared/{}", (i * (w + 1) + ni as u64) % paths);
                    let now = 1_000 + i as i64;
                    let ((created, modified), id) = log
                        .replace_logged(&path, Body::from_json(&format!("{{\"n\":{k}}}")).unwrap(), now, set_event(&path, k))
                        .await
                        .expect("a plain set commits");
                    acked.push((id, path, now, created, modified));
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let total = (2 * writers * writes) as usize;
    assert_eq!(acked.len(), total);
    for n in &nodes {
        let m = n.commit_metrics().unwrap();
        assert_eq!(m.group_failures, 0, "no group failed (a deadlock fails one)");
        assert!(m.commits < total as u64, "writes shared commits ({} commits)", m.commits);
    }
    // A path's record was created once: every write to it reports that `created`, and its
    // `modified` is its own time or, if later, `created` (a plain set's stamps).
    let mut created_of = std::collections::HashMap::new();
    for (_, path, now, created, modified) in &acked {
        assert_eq!(
            *created_of.entry(path.clone()).or_insert(*created),
            *created,
            "{path}: one creation"
        );
        assert_eq!(*modified, (*now).max(*created), "{path}: modified");
    }
    let (events, gaps) = collect(&mut tail, total, Duration::from_secs(30)).await;
    assert!(gaps.is_empty());
    check_order(&events);
    assert_eq!(events.len(), total, "every write's event, once");
    let by_id: std::collections::HashMap<i64, &LoggedEvent> = events.iter().map(|e| (e.id, e)).collect();
    for (id, path, _, created, modified) in &acked {
        let e = by_id[id];
        assert_eq!(
            (&e.event.path, e.event.created, e.event.modified),
            (path, Some(*created), Some(*modified))
        );
    }
    // Each record holds the data of the last event of its path in the log.
    let mut last = std::collections::HashMap::new();
    for e in &events {
        last.insert(e.event.path.clone(), e.event.data.clone().unwrap());
    }
    for (path, data) in last {
        let record = nodes[1].get(&path).await.unwrap().expect("the record");
        assert_eq!(record.data.json(), data, "{path} holds its last event's data");
    }
}
