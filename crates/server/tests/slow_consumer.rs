//! A client that stops reading must not grow the server's memory without bound: its outbound
//! queue fills up, the server closes it, and every other subscriber still gets every event.
//! Runs the real binary so the server's own RSS can be read from /proc.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connect, free_port, rss_kib, server_command, Proc, Ws};

async fn request(ws: &mut Ws, v: Value) -> Value {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
    loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            let r: Value = serde_json::from_str(&t).unwrap();
            if r["_meta"]["type"] == "response" {
                return r;
            }
        }
    }
}

async fn subscriber(port: u16) -> Ws {
    let mut ws = connect(port).await;
    assert_eq!(
        request(&mut ws, json!({"action":"login","eventId":1,"data":{}})).await["_meta"]["status"],
        "ok"
    );
    let r = request(
        &mut ws,
        json!({"action":"on","eventId":2,"path":"/SET@/flood/*","options":{"refCount":0}}),
    )
    .await;
    assert_eq!(r["_meta"]["status"], "ok");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_memory_stays_bounded() {
    const EVENTS: usize = 100_000;
    const PAYLOAD: usize = 2_000; // 100k events of ~2 kB: ~200 MB if the server buffered them all
    let port = free_port();
    let child = server_command(port)
        .arg("--memory")
        .env("HAPPN_SERVER_CONFIG", json!({"maxQueueBytes": 8 * 1_048_576}).to_string())
        // RSS should show what the server holds, not the freed pages mimalloc keeps for a few
        // milliseconds before returning them: at ~100k events/s those alone vary by tens of MiB
        // from run to run (bounded, but noise for this test).
        .env("MIMALLOC_PURGE_DELAY", "0")
        .spawn()
        .unwrap();
    let server = Proc(child);
    let pid = server.0.id();

    let stalled = subscriber(port).await; // subscribes, then is never read again
    let mut reader = subscriber(port).await;
    let mut publisher = connect(port).await;
    let baseline = rss_kib(pid);

    // The reader's count, so the publisher never gets further ahead of it than half the queue
    // limit: on a loaded machine a reader that keeps reading can still fall behind a fast
    // server, and its queue must only overflow for the client that stopped.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader_progress = progress.clone();
    let received = tokio::spawn(async move {
        let mut n = 0usize;
        while n < EVENTS {
            match tokio::time::timeout(Duration::from_secs(60), reader.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"type\":\"data\"") => {
                    n += 1;
                    reader_progress.store(n, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("reader stopped after {n} events: {other:?}"),
            }
        }
        n
    });

    let body = "x".repeat(PAYLOAD);
    let mut peak = baseline;
    let started = Instant::now();
    let window = 200;
    let mut sent = 0usize;
    let mut acked = 0usize;
    // Events the reader may be behind by: ~4 MiB, half its queue limit.
    const AHEAD: usize = 2_000;
    while acked < EVENTS {
        while sent < EVENTS && sent - acked < window && sent - progress.load(std::sync::atomic::Ordering::Relaxed) < AHEAD {
            let frame = json!({"action":"set","eventId":sent,"path":format!("/flood/{}", sent % 1000),"data":{"b":body}});
            publisher.feed(Message::Text(frame.to_string().into())).await.unwrap();
            sent += 1;
        }
        publisher.flush().await.unwrap();
        if sent == acked {
            // Everything sent is answered and the reader is behind: let it catch up.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        match publisher.next().await.unwrap().unwrap() {
            Message::Text(t) if t.contains("\"type\":\"response\"") => acked += 1,
            _ => {}
        }
        if acked.is_multiple_of(10_000) {
            peak = peak.max(rss_kib(pid));
        }
    }
    assert_eq!(received.await.unwrap(), EVENTS, "the reading subscriber got every event");
    peak = peak.max(rss_kib(pid));
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "published {EVENTS} events in {:?}; server RSS {baseline} KiB -> peak {peak} KiB",
        started.elapsed()
    );
    assert!(
        grown_mib < 64,
        "server memory grew by {grown_mib} MiB with a stalled client (limit 8 MiB queue)"
    );

    // The stalled client was closed by the server: draining it ends with close/EOF, not 100k events.
    let mut stalled = stalled;
    let mut events = 0usize;
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = stalled.next().await {
            match m {
                Ok(Message::Text(_)) => events += 1,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection was closed by the server");
    assert!(events < EVENTS, "the stalled client cannot have been sent everything ({events})");
}
