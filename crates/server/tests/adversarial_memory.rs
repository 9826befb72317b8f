//! Memory an attacker could make the server hold, against the release binary on loopback:
//!
//! - the publish match cache: many connections with many wildcard subscriptions, and a
//!   publisher writing ever new paths, must not make every thread keep a long delivery list per
//!   path (it grew 270 MiB in a second before the cache was bounded in bytes);
//! - outbound queues across connections: many subscribers that stop reading may each stay under
//!   their own limit (`maxQueueBytes`) and still add up to more than the machine has; past the
//!   server-wide budget (`maxTotalQueueBytes`) the ones holding the most are closed first.
//!
//! Each test also checks that a well-behaved client is unaffected while the attack runs.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connect, free_port, rss_kib, server_command, Proc, Ws};

/// Samples the server's RSS every 10 ms until dropped, keeping the peak: a burst between two
/// reads from the test's own loop would otherwise go unseen.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start(pid: u32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most ten minutes of samples, whatever the test does.
            for _ in 0..60_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        PeakRss {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The server, with its log (warn and above) echoed to the test's stderr and kept for checks.
fn start_server(port: u16, config: Value) -> (Proc, Arc<Mutex<Vec<String>>>) {
    let mut child = server_command(port)
        .arg("--memory")
        .env("HAPPN_SERVER_CONFIG", config.to_string())
        // RSS should show what the server holds, not freed pages mimalloc keeps for a moment.
        .env("MIMALLOC_PURGE_DELAY", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            kept.lock().unwrap().push(without_colours(&line));
        }
    });
    (Proc(child), log)
}

/// A log line without its terminal colour codes (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// The next reply (events and pings skipped), within 10 s.
async fn response(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let r: Value = serde_json::from_str(&t).unwrap();
                if r["_meta"]["type"] == "response" {
                    return r;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no reply: {other:?}"),
        }
    }
}

async fn request(ws: &mut Ws, v: Value) -> Value {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
    response(ws).await
}

/// A client whose socket takes in at most ~16 KiB before it is read: a client that stops
/// reading then leaves its events in the server's queue, not in the kernel's buffers (which
/// otherwise grow to several MiB per connection on loopback and blur what the server holds).
async fn connect_small_window(port: u16) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let url = format!("ws://127.0.0.1:{port}/primus");
    let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    ws
}

/// A logged-in client subscribed to `channels` (all requests sent, then all replies read).
async fn subscriber(port: u16, channels: &[String]) -> Ws {
    login_and_subscribe(connect(port).await, channels).await
}

async fn login_and_subscribe(mut ws: Ws, channels: &[String]) -> Ws {
    assert_eq!(
        request(&mut ws, json!({"action":"login","eventId":1,"data":{}})).await["_meta"]["status"],
        "ok"
    );
    for (i, c) in channels.iter().enumerate() {
        let on = json!({"action":"on","eventId":i + 2,"path":c,"options":{"refCount":0}});
        ws.feed(Message::Text(on.to_string().into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for _ in channels {
        assert_eq!(response(&mut ws).await["_meta"]["status"], "ok");
    }
    ws
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    assert!(!samples.is_empty());
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Sets `count` paths from `path(n)` with up to 200 requests in flight; `options` go on each.
async fn publish(ws: &mut Ws, count: usize, path: impl Fn(usize) -> String, data: impl Fn(usize) -> Value, options: Value) {
    let (mut sent, mut acked) = (0, 0);
    while acked < count {
        while sent < count && sent - acked < 200 {
            let set = json!({"action":"set","eventId":sent + 1000,"path":path(sent),"data":data(sent),"options":options});
            ws.feed(Message::Text(set.to_string().into())).await.unwrap();
            sent += 1;
        }
        ws.flush().await.unwrap();
        assert_eq!(response(ws).await["_meta"]["status"], "ok");
        acked += 1;
    }
}

/// A client doing ordinary sets and gets while the attack runs: every reply correct, p99 of
/// the round trips returned. Stops when `done` is set (or after 3,000 requests).
async fn well_behaved(port: u16, done: Arc<AtomicBool>) -> Duration {
    let mut ws = connect(port).await;
    assert_eq!(
        request(&mut ws, json!({"action":"login","eventId":1,"data":{}})).await["_meta"]["status"],
        "ok"
    );
    let mut samples = Vec::new();
    for i in 0..3_000usize {
        if done.load(Ordering::Relaxed) && samples.len() >= 100 {
            break;
        }
        let path = format!("/probe/{}", i % 50);
        let started = Instant::now();
        let r = request(&mut ws, json!({"action":"set","eventId":i * 2 + 2,"path":path,"data":{"i":i}})).await;
        assert_eq!(r["_meta"]["status"], "ok");
        let r = request(&mut ws, json!({"action":"get","eventId":i * 2 + 3,"path":path})).await;
        assert_eq!(r["data"]["i"], i, "the probe reads back what it wrote");
        samples.push(started.elapsed() / 2);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p99(samples)
}

/// 100 connections with 20 wildcard subscriptions each, and a publisher writing 8,192 new paths
/// twice: once where every connection matches 18 of its channels (lists of 1,800 deliveries, too
/// long to cache at all) and once where 2 match (lists of 200, cached within the thread's byte
/// budget). The writes carry `targetClients` naming nobody, so matching and caching run in full
/// while no event is delivered: what grows is the cache, not outbound queues.
///
/// Unbounded, the cache held ~57 KiB per path in the first phase (8,192 paths: the 4,096-entry
/// cap, ~230 MiB per worker thread) and ~6.5 KiB per path in the second (~26 MiB per thread).
/// Bounded, it holds at most 1 MiB per worker thread; the data itself (16,384 small records in
/// the memory store) takes a few MiB. The bound of 32 MiB leaves room for those and allocator
/// noise while failing either unbounded phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_wildcard_subscribers_and_new_paths_do_not_grow_the_match_cache() {
    const CONNECTIONS: usize = 100;
    const PATHS: usize = 8_192;
    let port = free_port();
    let (server, _log) = start_server(port, json!({}));
    let pid = server.0.id();

    let mut channels = Vec::new();
    for kind in ["SET", "ALL"] {
        for p in [
            "/attack/*",
            "/attack/x*",
            "/attack/x/*",
            "/attack*",
            "/attac*",
            "/atta*",
            "/att*",
            "/at*",
            "/a*",
        ] {
            channels.push(format!("/{kind}@{p}"));
        }
        channels.push(format!("/{kind}@/b/*"));
    }
    assert_eq!(channels.len(), 20);
    let mut subscribers = Vec::new();
    for _ in 0..CONNECTIONS {
        subscribers.push(subscriber(port, &channels).await);
    }
    let mut publisher = connect(port).await;
    assert_eq!(
        request(&mut publisher, json!({"action":"login","eventId":1,"data":{}})).await["_meta"]["status"],
        "ok"
    );
    // The channels do match: an ordinary set reaches a subscriber once per matching channel.
    let r = request(
        &mut publisher,
        json!({"action":"set","eventId":2,"path":"/attack/x/check","data":{}}),
    )
    .await;
    assert_eq!(r["_meta"]["status"], "ok");
    let mut events = 0;
    while events < 18 {
        match tokio::time::timeout(Duration::from_secs(10), subscribers[0].next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"type\":\"data\"") => events += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("subscriber got {events} events, then {other:?}"),
        }
    }

    let baseline = rss_kib(pid);
    let peak = PeakRss::start(pid);
    let done = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(well_behaved(port, done.clone()));
    let started = Instant::now();
    let nobody = json!({"targetClients": ["no-such-session"]});
    publish(
        &mut publisher,
        PATHS,
        |n| format!("/attack/x/{n}"),
        |n| json!({"n": n}),
        nobody.clone(),
    )
    .await;
    let long_lists = peak.peak_kib().saturating_sub(baseline) / 1024;
    publish(&mut publisher, PATHS, |n| format!("/b/{n}"), |n| json!({"n": n}), nobody).await;
    done.store(true, Ordering::Relaxed);
    let probe_p99 = probe.await.unwrap();
    let grown = peak.peak_kib().saturating_sub(baseline) / 1024;
    eprintln!(
        "{} sets in {:?}; server RSS {baseline} KiB, grown {long_lists} MiB after the long lists, {grown} MiB at the end; probe p99 {probe_p99:?}",
        2 * PATHS,
        started.elapsed()
    );
    assert!(long_lists < 32, "lists too long to cache grew the server by {long_lists} MiB");
    assert!(grown < 32, "the match cache grew the server by {grown} MiB");
    assert!(probe_p99 < Duration::from_millis(200), "well-behaved client's p99 {probe_p99:?}");
    // Nobody was targeted: the subscribers got nothing from the attack, and are still served.
    let r = request(&mut subscribers[1], json!({"action":"get","eventId":99,"path":"/b/7"})).await;
    assert_eq!(r["data"]["n"], 7);
}

/// 15 subscribers stop reading while a publisher writes ~10 MiB of events: ten subscribed three
/// times over (~30 MiB of events each) and five once (~10 MiB each), ~350 MiB in all, each under
/// its own limit (64 MiB here). With a 64 MiB server-wide budget the heavy ones must be closed,
/// the largest first, so the light ones (at most ~50 MiB together) never are; a subscriber that
/// reads gets every event promptly and stays connected, and the server's memory stays near the
/// budget.
///
/// The kernel takes part of what a stalled client is sent (the server's send buffer grows to a
/// few MiB on loopback whether the client reads or not), so how many heavy clients must go
/// depends on it: none of its share is in the queues. With none, all ten; with 4 MiB each (the
/// default `tcp_wmem` maximum), the light ones hold ~30 MiB and at most one heavy one (~26 MiB)
/// fits beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_server_wide_budget_the_largest_queues_are_closed_first() {
    const BUDGET: usize = 64 << 20;
    // ~3.9 KiB events: inside the allocator's 4 KiB size class, so RSS follows the bytes queued.
    const EVENTS: usize = 2_650;
    const PAYLOAD: usize = 3_600;
    let port = free_port();
    let (server, log) = start_server(port, json!({"maxTotalQueueBytes": BUDGET, "maxQueueBytes": 64 << 20}));
    let pid = server.0.id();

    let once = vec!["/SET@/flood/*".to_string()];
    let thrice = vec!["/SET@/flood/*".to_string(), "/ALL@/flood/*".to_string(), "/SET@/flood*".to_string()];
    let mut reader = subscriber(port, &once).await; // (waits for the server to listen)
    let mut heavy = Vec::new();
    let mut light = Vec::new();
    for i in 0..10 {
        heavy.push(login_and_subscribe(connect_small_window(port).await, &thrice).await);
        if i % 2 == 0 {
            light.push(login_and_subscribe(connect_small_window(port).await, &once).await);
        }
    }
    let mut publisher = connect(port).await;
    assert_eq!(
        request(&mut publisher, json!({"action":"login","eventId":1,"data":{}})).await["_meta"]["status"],
        "ok"
    );
    let baseline = rss_kib(pid);
    let peak = PeakRss::start(pid);

    // The reader: every event, each one's latency from its send (stamped in the data).
    let epoch = Instant::now();
    let progress = Arc::new(AtomicUsize::new(0));
    let reader_progress = progress.clone();
    let received = tokio::spawn(async move {
        let mut latencies = Vec::new();
        while latencies.len() < EVENTS {
            match tokio::time::timeout(Duration::from_secs(30), reader.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"type\":\"data\"") => {
                    let event: Value = serde_json::from_str(&t).unwrap();
                    let sent = Duration::from_micros(event["data"]["t"].as_u64().unwrap());
                    assert_eq!(event["data"]["n"], latencies.len(), "events in order, none missing");
                    latencies.push(epoch.elapsed().saturating_sub(sent));
                    reader_progress.store(latencies.len(), Ordering::Relaxed);
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("reader stopped after {} events: {other:?}", latencies.len()),
            }
        }
        (reader, latencies)
    });

    // The publisher stays at most ~100 events (~400 KiB) ahead of the reader, so only the
    // stalled clients pile up output.
    let body = "x".repeat(PAYLOAD);
    let (mut sent, mut acked) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < EVENTS {
        assert!(Instant::now() < deadline, "publishing took too long ({acked} acknowledged)");
        while sent < EVENTS && sent - acked < 50 && sent - progress.load(Ordering::Relaxed) < 100 {
            let t = epoch.elapsed().as_micros() as u64;
            let set = json!({"action":"set","eventId":sent + 10,"path":format!("/flood/{}", sent % 100),"data":{"n":sent,"t":t,"b":body}});
            publisher.feed(Message::Text(set.to_string().into())).await.unwrap();
            sent += 1;
        }
        publisher.flush().await.unwrap();
        if sent == acked {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        assert_eq!(response(&mut publisher).await["_meta"]["status"], "ok");
        acked += 1;
    }
    let (mut reader, latencies) = received.await.unwrap();
    let latency_p99 = p99(latencies);
    // Give the last closes a moment to land before reading the peak.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grown = peak.peak_kib().saturating_sub(baseline) / 1024;
    drop(peak);
    eprintln!("{EVENTS} events; server RSS {baseline} KiB, peak grown {grown} MiB; reader's event p99 {latency_p99:?}");

    // Drain the stalled clients now: a closed one ends (close frame or EOF) before it has every
    // event; an open one gets every event it was sent.
    async fn drain(ws: &mut Ws, expected: usize) -> (usize, bool) {
        let mut events = 0;
        while events < expected {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"type\":\"data\"") => events += 1,
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return (events, true),
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("stalled client neither closed nor sent everything ({events} of {expected})"),
            }
        }
        (events, false)
    }
    let mut heavy_closed = 0;
    for ws in &mut heavy {
        let (_, closed) = drain(ws, 3 * EVENTS).await;
        heavy_closed += closed as usize;
    }
    for (i, ws) in light.iter_mut().enumerate() {
        let (events, closed) = drain(ws, EVENTS).await;
        assert!(
            !closed,
            "light stalled client {i} was closed after {events} events: the heavy ones hold more"
        );
    }
    // At least nine by the reckoning above; eight leaves room for a larger kernel buffer.
    assert!(heavy_closed >= 8, "only {heavy_closed} heavy stalled clients were closed");
    // The reader is still connected and served.
    let r = request(&mut reader, json!({"action":"get","eventId":5,"path":"/flood/7"})).await;
    assert_eq!(r["data"]["n"], (EVENTS - 8) / 100 * 100 + 7, "the last write to /flood/7");
    assert!(latency_p99 < Duration::from_millis(200), "reader's event p99 {latency_p99:?}");

    // Each close was logged, naming the session and what it held.
    let log = log.lock().unwrap();
    let closes: Vec<&String> = log.iter().filter(|l| l.contains("server-wide budget")).collect();
    assert_eq!(
        closes.len(),
        heavy_closed,
        "one warning per connection closed for the budget: {closes:#?}"
    );
    assert!(closes.iter().all(|l| l.contains("session=") && l.contains("queued=")));

    // The budget, and as much again for: what is queued between a push crossing it and the
    // task closing the largest (a few ms of events on an idle machine, more on a loaded one),
    // the sub-step remainders of each queue, the stored events and buffers, and the allocator's
    // share (a closed client's events are freed as holes in pages shared with the others', and
    // refilled from there). 94-112 MiB in runs on a loaded 2-core machine; ~300 MiB without
    // the budget.
    assert!(
        grown < 2 * (BUDGET >> 20) as u64,
        "server grew {grown} MiB with a {} MiB budget",
        BUDGET >> 20
    );
}
