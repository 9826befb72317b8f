//! What a plain `set` costs in this crate: decoding the request the 2.21 client sends, and
//! writing the reply. The server profile (docs/PERFORMANCE.md) shows both per request; this
//! measures them alone, so a change to either can be judged without the noise of a load run.
//!
//!     cargo bench -p happn-protocol --bench codec

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use happn_protocol::{decode_request, Decoded, RecordMeta, Reply};
use serde_json::Value;
use std::hint::black_box;

const SET: &str = r#"{"action":"set","eventId":1234,"path":"/bench/set/567","data":{"v":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"sessionId":"2f0e1c8e-4b8a-4d8e-9a57-0d5f0f6f1a11","options":{"timeout":20000},"protocol":"1.1.0"}"#;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("set frame", |b| {
        b.iter(|| match decode_request(black_box(SET)) {
            Decoded::Request(Ok(r)) => r,
            other => panic!("{other:?}"),
        })
    });
    g.finish();
}

fn reply(c: &mut Criterion) {
    let event_id = Value::from(1234);
    let session_id = Value::from("2f0e1c8e-4b8a-4d8e-9a57-0d5f0f6f1a11");
    let data = r#"{"v":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    let meta = RecordMeta {
        created: Some(1_795_687_569_323),
        modified: Some(1_795_687_569_324),
        path: Some("/bench/set/567"),
        ..RecordMeta::default()
    };
    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("set reply", |b| {
        b.iter(|| {
            let reply = Reply {
                event_id: Some(&event_id),
                session_id: Some(&session_id),
                action: "/SET@/bench/set/567",
                published: true,
            };
            black_box(reply.ok(black_box(data), &meta))
        })
    });
    g.finish();
}

criterion_group!(benches, decode, reply);
criterion_main!(benches);
