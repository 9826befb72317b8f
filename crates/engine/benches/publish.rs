//! Publish cost against the number of wildcard subscriptions that do NOT match.
//!
//! The original scanned a regex per wildcard subscription on every publish (10k wildcard
//! subscriptions took it from ~19k to ~128 sets/s). happn-rs indexes wildcard channels by their
//! literal prefix, so a publish should cost about the same with 0 or 100k non-matching ones.
//!
//!     cargo bench -p happn-engine --bench publish
//!
//! Each iteration is what a `set` does in the engine: store the document, then find who gets
//! the event. Paths cycle over 10k keys, so the bounded match cache cannot hide the index cost.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use happn_engine::data::{DataService, SetOptions};
use happn_engine::pubsub::{EventKind, Subscriber, Subscriptions};
use happn_engine::storage::MemoryStore;
use serde_json::json;
use std::sync::Arc;

fn populated(non_matching: usize) -> Subscriptions {
    let subs = Subscriptions::new();
    // One real subscriber on the published paths.
    subs.subscribe(Subscriber { index: 0, key: 0 }, "/SET@/bench/*", 1).unwrap();
    for i in 0..non_matching {
        // Varied shapes: deep prefixes, short prefixes that share the publish path's first
        // characters, and mid-path wildcards.
        let channel = match i % 4 {
            0 => format!("/SET@/devices/{i}/status/*"),
            1 => format!("/ALL@/b{i}/*"),
            2 => format!("/SET@/bench/x{i}/*/end"),
            _ => format!("/REMOVE@/bench/{i}/*"),
        };
        subs.subscribe(
            Subscriber {
                index: 1 + i % 1000,
                key: 1 + i as u64,
            },
            &channel,
            1,
        )
        .unwrap();
    }
    subs
}

fn publish(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let data = DataService::new(Arc::new(MemoryStore::new()));
    let opts = SetOptions::default();
    let paths: Vec<String> = (0..10_000).map(|i| format!("/bench/{i}")).collect();
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(1));
    for n in [0usize, 10_000, 100_000] {
        let subs = populated(n);
        let mut k = 0usize;
        group.bench_with_input(BenchmarkId::new("set+match, non-matching wildcard subs", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % paths.len();
                let path = &paths[k];
                rt.block_on(data.set(path, Some(json!({"v": k}).into()), &opts)).unwrap();
                let d = subs.deliveries(EventKind::Set, path);
                assert_eq!(d.len(), 1);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
