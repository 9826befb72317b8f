//! Attacks on the websocket transport, against the release binary on loopback: ping floods from
//! clients that never read, frames announced large and never sent, and requests a full JSON parse
//! refuses. Each checks that the attack fails (the server's RSS, read from /proc, stays bounded;
//! the attacker is disconnected; every request is answered) and that a well-behaved client
//! running alongside keeps getting correct replies quickly.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connect, free_port, rss_kib, server_command, Proc, Ws};

/// One test at a time: each measures a server's memory and a client's latency on a small
/// machine, which another test's server would disturb.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The release binary in memory mode, with `config` as its JSON configuration.
async fn start(config: Value) -> (Proc, u16) {
    let port = free_port();
    let child = server_command(port)
        .arg("--memory")
        .env("HAPPN_SERVER_CONFIG", config.to_string())
        // RSS should show what the server holds, not pages the allocator keeps a moment
        // before returning them.
        .env("MIMALLOC_PURGE_DELAY", "0")
        .spawn()
        .unwrap();
    let server = Proc(child);
    drop(connect(port).await); // up and serving
    (server, port)
}

/// The server's peak RSS, sampled every 50 ms until `stop`.
fn watch_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = rss_kib(pid);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            peak = peak.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak.max(rss_kib(pid))
    })
}

/// A client frame (masked, as clients must), final unless `first` says otherwise.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    client_header(first, payload.len() as u64, payload)
}

/// A client frame header announcing `len` payload bytes, followed by `payload` (which may be
/// shorter: the rest is never sent).
fn client_header(first: u8, len: u64, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5A, 0x13, 0xC7, 0x01];
    let mut out = vec![first];
    match len {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw TCP client through the websocket upgrade for `/primus?<query>`.
async fn raw_upgrade(port: u16, query: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET /primus?{query} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut byte))
            .await
            .expect("upgrade answered in time")
            .unwrap();
        head.push(byte[0]);
        assert!(head.len() < 4096, "an upgrade response head");
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// The next server frame: its first byte (FIN and opcode) and payload.
async fn read_frame(tcp: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).await?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).await?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await?;
    Ok((head[0], payload))
}

/// Whether the server has let go of `tcp`: end of stream or a reset, within `within`, reading
/// (and dropping) whatever frames come first.
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A request and its reply (events and pings skipped), within 10 s.
async fn request(ws: &mut Ws, v: Value) -> Value {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = m {
            let r: Value = serde_json::from_str(&t).unwrap();
            let meta = if r.is_array() {
                &r[r.as_array().unwrap().len() - 1]
            } else {
                &r["_meta"]
            };
            if meta["type"] == "response" || r.is_array() {
                return r;
            }
        }
    }
}

/// A well-behaved client: set then get round trips, each checked, until `stop` (at least 100
/// requests; at most 60 s and 50,000 requests). Returns every request's latency.
fn bystander(port: u16, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut ws = connect(port).await;
        let mut latencies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 0u64;
        while (i < 50 || !stop.load(Ordering::Relaxed)) && Instant::now() < deadline && i < 25_000 {
            i += 1;
            let path = format!("/bystander/{}", i % 50);
            let t = Instant::now();
            let r = request(&mut ws, json!({"action":"set","eventId":i * 2,"path":path,"data":{"i":i}})).await;
            latencies.push(t.elapsed());
            assert_eq!(r["_meta"]["status"], "ok", "{r}");
            assert_eq!(r["_meta"]["eventId"], i * 2);
            assert_eq!(r["data"]["i"], i);
            let t = Instant::now();
            let r = request(&mut ws, json!({"action":"get","eventId":i * 2 + 1,"path":path})).await;
            latencies.push(t.elapsed());
            assert_eq!(r["data"]["i"], i, "{r}");
            assert_eq!(r["_meta"]["eventId"], i * 2 + 1);
            // A steady client, not a second flood.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies
    })
}

/// The bystander's 99th percentile, after checking it ran.
fn p99(mut latencies: Vec<Duration>) -> Duration {
    assert!(latencies.len() >= 20, "the bystander made only {} requests", latencies.len());
    latencies.sort();
    latencies[latencies.len() * 99 / 100]
}

/// Write `chunk` again and again, never reading, until the server cuts the connection off (a
/// write fails: `Some(time taken)`) or `limit` passes (`None`).
async fn flood(tcp: &mut TcpStream, chunk: &[u8], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let attack = async {
        while started.elapsed() < limit {
            if tcp.write_all(chunk).await.is_err() {
                return Some(started.elapsed());
            }
        }
        None
    };
    // The server reads whatever it is sent, so a write never waits long; bounded all the same.
    tokio::time::timeout(limit + Duration::from_secs(10), attack)
        .await
        .expect("the server kept reading")
}

/// About 64 KiB of websocket pings, empty and full-size (125 bytes) alternately.
fn pings() -> Vec<u8> {
    let mut chunk = Vec::new();
    let mut n = 0u32;
    while chunk.len() < 64 * 1024 {
        let payload = if n.is_multiple_of(2) { vec![] } else { vec![b'p'; 125] };
        chunk.extend(client_frame(0x89, &payload));
        n += 1;
    }
    chunk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_client_that_never_reads_is_cut_off_and_costs_nothing() {
    let _serial = SERIAL.lock().await;
    let (server, port) = start(json!({})).await;
    let pid = server.0.id();
    let baseline = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(pid, stop.clone());
    let steady = bystander(port, stop.clone());

    // Websocket pings keep the spark alive (as in happn's Primus), but the pongs a client does
    // not read count against its outbound limit: once its socket is full, pinging on ends the
    // connection as a full queue does.
    let mut attacker = raw_upgrade(port, "ping=200&pong=100").await;
    let cut_off = flood(&mut attacker, &pings(), Duration::from_secs(30)).await;
    // Pings alone: nothing to hold (the rest of the test queues 1 MiB replies on purpose).
    let pings_only_mib = rss_kib(pid).saturating_sub(baseline) / 1024;

    // Heartbeats off, and the output blocked at once by replies it never reads.
    let mut setup = connect(port).await;
    let big = json!({"action":"set","eventId":1,"path":"/big","data":{"b":"x".repeat(1 << 20)}});
    assert_eq!(request(&mut setup, big).await["_meta"]["status"], "ok");
    let mut blocked = raw_upgrade(port, "ping=false").await;
    let get = br#"{"action":"get","eventId":2,"path":"/big"}"#;
    for _ in 0..12 {
        blocked.write_all(&client_frame(0x81, get)).await.unwrap();
    }
    let blocked_cut_off = flood(&mut blocked, &pings(), Duration::from_secs(30)).await;

    // Primus pings from a client that never reads: answered at most once a second
    // (pongSkipTime), and they keep the spark alive, as in Primus; so this one stays, but costs
    // nothing either.
    let mut primus = raw_upgrade(port, "ping=200&pong=100").await;
    let mut chunk = Vec::new();
    for n in 0..2_000 {
        chunk.extend(client_frame(0x81, format!("\"primus::ping::{n}\"").as_bytes()));
    }
    let primus_cut_off = flood(&mut primus, &chunk, Duration::from_secs(4)).await;

    // A client that pings at websocket level and reads its pongs stays past its heartbeat
    // (250 ms, two skips), every ping answered.
    let mut pinger = raw_upgrade(port, "ping=200&pong=100").await;
    for n in 0..20u8 {
        pinger.write_all(&client_frame(0x89, &[n])).await.unwrap();
        let (first, payload) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut pinger))
            .await
            .expect("pong in time")
            .unwrap();
        assert_eq!((first, payload), (0x8A, vec![n]), "the pong for ping {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let p99 = p99(steady.await.unwrap());
    let grown_mib = peak.await.unwrap().saturating_sub(baseline) / 1024;
    eprintln!(
        "ping flood cut-off {cut_off:?}, blocked cut-off {blocked_cut_off:?}, primus pinger {primus_cut_off:?}; \
         RSS grew {pings_only_mib} MiB after the first flood, {grown_mib} MiB at most; bystander p99 {p99:?}"
    );
    assert!(pings_only_mib < 16, "a ping flood grew the server by {pings_only_mib} MiB");
    assert!(cut_off.is_some(), "a websocket ping flood without reading kept its connection");
    assert!(blocked_cut_off.is_some(), "pinging without reading did not end the connection");
    assert_eq!(primus_cut_off, None, "Primus pings are heartbeats: that client stays");
    assert!(grown_mib < 64, "server memory grew by {grown_mib} MiB under ping floods");
    assert!(p99 < Duration::from_millis(200), "bystander p99 {p99:?}");
}

/// Control frames may not be fragmented; they may come between a message's fragments, and a
/// message dribbled byte by byte with pings inside it still arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_and_interleaved_pings() {
    let _serial = SERIAL.lock().await;
    let (_server, port) = start(json!({})).await;
    let stop = Arc::new(AtomicBool::new(false));
    let steady = bystander(port, stop.clone());

    // A ping without FIN: protocol error, that connection only.
    let mut tcp = raw_upgrade(port, "").await;
    tcp.write_all(&client_frame(0x09, b"half")).await.unwrap();
    let (first, payload) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tcp))
        .await
        .expect("close in time")
        .unwrap();
    assert_eq!((first, u16::from_be_bytes([payload[0], payload[1]])), (0x88, 1002));

    // A request in three fragments with pings before, between and inside their bytes, the
    // whole dribbled in small writes.
    let mut tcp = raw_upgrade(port, "").await;
    let text = json!({"action":"set","eventId":"frag","path":"/frag","data":{"v":"é✓"}}).to_string();
    let bytes = text.as_bytes();
    let (a, rest) = bytes.split_at(7);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut wire = client_frame(0x89, b"0");
    wire.extend(client_frame(0x01, a));
    wire.extend(client_frame(0x89, b"1"));
    wire.extend(client_frame(0x00, b));
    wire.extend(client_frame(0x89, b"2"));
    wire.extend(client_frame(0x80, c));
    wire.extend(client_frame(0x89, b"last"));
    for part in wire.chunks(3) {
        tcp.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut reply = None;
    let mut pongs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (reply.is_none() || pongs.len() < 4) && Instant::now() < deadline {
        let (first, payload) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tcp))
            .await
            .expect("frames in time")
            .unwrap();
        match first {
            0x8A => pongs.push(payload),
            0x81 => reply = Some(serde_json::from_slice::<Value>(&payload).unwrap()),
            other => panic!("unexpected frame {other:#x}"),
        }
    }
    let reply = reply.expect("the fragmented request was answered");
    assert_eq!(reply["_meta"]["eventId"], "frag");
    assert_eq!(reply["data"]["v"], "é✓");
    assert_eq!(pongs, [&b"0"[..], b"1", b"2", b"last"], "every ping answered, in order");

    stop.store(true, Ordering::Relaxed);
    let p99 = p99(steady.await.unwrap());
    assert!(p99 < Duration::from_millis(200), "bystander p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announced_large_and_never_sent_hold_little_memory() {
    let _serial = SERIAL.lock().await;
    const STALLED: usize = 320;
    let (server, port) = start(json!({})).await;
    let pid = server.0.id();
    let baseline = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(pid, stop.clone());
    let steady = bystander(port, stop.clone());

    // Each announces a 16 MiB text frame (the default limit), sends its first 100 bytes, and
    // then nothing. The default heartbeat (30 s) keeps them all open while memory is read.
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut tcp = raw_upgrade(port, "").await;
        tcp.write_all(&client_header(0x81, 16 << 20, &[b' '; 100])).await.unwrap();
        stalled.push(tcp);
    }
    // Some announce it in pieces: the header byte by byte, with a ping in front.
    for _ in 0..20 {
        let mut tcp = raw_upgrade(port, "").await;
        let mut wire = client_frame(0x89, b"p");
        wire.extend(client_header(0x81, 16 << 20, b"{"));
        for b in wire {
            tcp.write_all(&[b]).await.unwrap();
        }
        stalled.push(tcp);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // With the client's heartbeat settings, a stalled connection is closed: only Primus pings
    // reset that timer, partial frames do not.
    let mut short = Vec::new();
    for _ in 0..20 {
        let mut tcp = raw_upgrade(port, "ping=200&pong=100").await;
        tcp.write_all(&client_header(0x81, 16 << 20, b"{\"action\"")).await.unwrap();
        short.push(tcp);
    }
    let started = Instant::now();
    for tcp in &mut short {
        assert!(
            closed_by_server(tcp, Duration::from_secs(15)).await,
            "a stalled frame kept its connection past the heartbeat"
        );
    }
    let closed_in = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    let p99 = p99(steady.await.unwrap());
    let grown_mib = peak.await.unwrap().saturating_sub(baseline) / 1024;
    eprintln!(
        "{} stalled 16 MiB frames: RSS grew {grown_mib} MiB; heartbeat closed the short ones in {closed_in:?}; bystander p99 {p99:?}",
        stalled.len()
    );
    assert!(grown_mib < 100, "server memory grew by {grown_mib} MiB for stalled frame headers");
    assert!(p99 < Duration::from_millis(200), "bystander p99 {p99:?}");
    // The stalled ones are still served: the announced frame is simply incomplete.
    let mut last = stalled.pop().unwrap();
    let mut probe = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), last.read(&mut probe))
            .await
            .is_err()
            || probe[0] == 0x8A,
        "only a pong, if anything, comes back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_full_parse_refuses_are_still_answered() {
    let _serial = SERIAL.lock().await;
    let (_server, port) = start(json!({})).await;
    let stop = Arc::new(AtomicBool::new(false));
    let steady = bystander(port, stop.clone());
    let mut ws = connect(port).await;
    let huge = "7".repeat(5_000);
    let send_text = |text: String| Message::Text(text.into());

    // A 5,000-digit number in a set's data: an error reply naming the problem.
    let set = format!(
        r#"{{"action":"set","eventId":1,"path":"/huge","data":{{"n":{huge}}},"sessionId":"s","options":{{"timeout":20000}},"protocol":"1.1.0"}}"#
    );
    ws.send(send_text(set)).await.unwrap();
    let r = request_reply(&mut ws).await;
    assert_eq!(r["_meta"]["eventId"], 1, "{r}");
    assert_eq!(r["_meta"]["status"], "error", "{r}");
    assert!(
        r["_meta"]["error"]["name"]
            .as_str()
            .is_some_and(|m| m.contains("number out of range")),
        "{r}"
    );
    // Nothing was stored.
    let r = request(&mut ws, json!({"action":"get","eventId":2,"path":"/huge"})).await;
    assert_eq!(r["_meta"]["eventId"], 2);
    assert!(r["data"]["n"].is_null(), "{r}");

    // In options, negative, in an array, deeply nested, in an unknown key: each answered.
    let deep = format!("{}1{}", "[".repeat(2_000), "]".repeat(2_000));
    for (id, text) in [
        (
            3,
            format!(r#"{{"action":"get","eventId":3,"path":"/a","options":{{"criteria":{{"n":{{"$gt":{huge}}}}}}}}}"#),
        ),
        (
            4,
            format!(r#"{{"action":"set","eventId":4,"path":"/a","data":{{"n":[1,-{huge}.5]}}}}"#),
        ),
        (5, format!(r#"{{"action":"set","eventId":5,"path":"/a","data":{{"d":{deep}}}}}"#)),
        (6, format!(r#"{{"action":"on","eventId":6,"path":"/a","extra":{huge}}}"#)),
        (7, r#"{"action":"set","eventId":7,"path":"/a","data":{"s":"\ud800"}}"#.to_string()),
    ] {
        ws.send(send_text(text)).await.unwrap();
        let r = request_reply(&mut ws).await;
        assert_eq!(
            (r["_meta"]["eventId"].clone(), r["_meta"]["status"].clone()),
            (json!(id), json!("error")),
            "{r}"
        );
    }

    // Up to f64's range, a long number is a number.
    let long = "9".repeat(300);
    let set = format!(r#"{{"action":"set","eventId":8,"path":"/long","data":{{"n":{long}}}}}"#);
    ws.send(send_text(set)).await.unwrap();
    let r = request_reply(&mut ws).await;
    assert_eq!(r["_meta"]["status"], "ok", "{r}");
    assert_eq!(r["data"]["n"].as_f64(), Some(1e300));

    // The connection is still good.
    let r = request(&mut ws, json!({"action":"set","eventId":9,"path":"/after","data":{"ok":true}})).await;
    assert_eq!(r["_meta"]["status"], "ok");
    stop.store(true, Ordering::Relaxed);
    let p99 = p99(steady.await.unwrap());
    assert!(p99 < Duration::from_millis(200), "bystander p99 {p99:?}");
}

/// The next reply on `ws`, within 10 s.
async fn request_reply(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a reply in time")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}
