//! The scenarios. Request/response load keeps `inflight` requests outstanding per connection
//! and sends the next one as each reply arrives; only replies inside the measured window count.

use crate::conn::{self, is_error, BoxError, Session, Ws};
use crate::measure::{now_micros, rss_bytes, CpuMeter, Tally, Window};
use crate::report::{round, round3, Report};
use crate::{Common, Load, WriteMode};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;

pub type FrameFn = Arc<dyn Fn(u64, &str) -> String + Send + Sync>;

/// Queue one request frame: in its own write syscall (`WriteMode::Frame`, as the npm client
/// writes), or fed to the socket's buffer to leave with the next flush (`WriteMode::Batched`).
async fn put(ws: &mut Ws, text: String, mode: WriteMode) -> Result<(), BoxError> {
    match mode {
        WriteMode::Frame => ws.send(Message::Text(text.into())).await?,
        WriteMode::Batched => ws.feed(Message::Text(text.into())).await?,
    }
    Ok(())
}

/// Keep `inflight` requests outstanding on `ws` until the window closes; returns the tally.
async fn request_loop(
    mut ws: Ws,
    session: String,
    inflight: usize,
    window: Window,
    frame: FrameFn,
    mode: WriteMode,
) -> Result<Tally, BoxError> {
    let mut tally = Tally::new();
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(inflight * 2);
    let mut next_id = 100u64;
    for _ in 0..inflight {
        put(&mut ws, frame(next_id, &session), mode).await?;
        sent.insert(next_id, Instant::now());
        next_id += 1;
    }
    ws.flush().await?;
    while !sent.is_empty() {
        let msg = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(m)) => m?,
            Ok(None) => return Err("server closed the connection".into()),
            Err(_) => return Err(format!("no reply for 30 s ({} requests outstanding)", sent.len()).into()),
        };
        let mut pending = Some(msg);
        // Handle whatever is already here; batched, the writes wait for the flush below.
        while let Some(msg) = pending.take() {
            if let Message::Text(t) = msg {
                if let Some(n) = t.strip_prefix("\"primus::ping::") {
                    put(&mut ws, format!("\"primus::pong::{n}"), mode).await?;
                } else if let Some(id) = conn::event_id(&t) {
                    if let Some(at) = sent.remove(&id) {
                        let now = Instant::now();
                        if window.contains(now) {
                            if is_error(&t) {
                                tally.errors += 1;
                            } else {
                                tally.record(now.duration_since(at).as_micros() as u64);
                            }
                        }
                        if now < window.end {
                            put(&mut ws, frame(next_id, &session), mode).await?;
                            sent.insert(next_id, Instant::now());
                            next_id += 1;
                        }
                    }
                }
            }
            pending = ws.next().now_or_never().flatten().transpose()?;
        }
        ws.flush().await?;
    }
    Ok(tally)
}

pub fn payload(n: usize) -> String {
    "x".repeat(n)
}

pub fn set_frame(keys: usize, payload_len: usize, prefix: &'static str, protocol: &str) -> FrameFn {
    let body = payload(payload_len);
    let protocol = protocol.to_string();
    Arc::new(move |id, session| {
        format!(
            r#"{{"action":"set","eventId":{id},"path":"{prefix}{}","data":{{"v":"{body}"}},"sessionId":"{session}","options":{{"timeout":20000}},"protocol":"{protocol}"}}"#,
            id as usize % keys.max(1)
        )
    })
}

pub fn get_frame(keys: usize, protocol: &str) -> FrameFn {
    let protocol = protocol.to_string();
    Arc::new(move |id, session| {
        format!(
            r#"{{"action":"get","eventId":{id},"path":"/bench/get/{}","sessionId":"{session}","protocol":"{protocol}"}}"#,
            id as usize % keys.max(1)
        )
    })
}

/// `request_loop` as a task of its own, writing as `common` says.
fn spawn_loop(
    ws: Ws,
    session: String,
    inflight: usize,
    window: Window,
    frame: &FrameFn,
    common: &Common,
) -> tokio::task::JoinHandle<Result<Tally, BoxError>> {
    tokio::spawn(request_loop(ws, session, inflight, window, frame.clone(), common.write_mode))
}

/// Run `clients` request loops in parallel and measure the window (plus server CPU).
async fn run_load(common: &Common, clients: usize, inflight: usize, frame: FrameFn) -> Result<(Tally, f64, Option<f64>), BoxError> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(conn::connect_and_login(common).await?);
    }
    let window = Window::after(common.warmup(), common.duration());
    let mut tasks = Vec::new();
    for (ws, s) in conns {
        tasks.push(spawn_loop(ws, s.id, inflight, window, &frame, common));
    }
    sleep_until(window.start.into()).await;
    let cpu = CpuMeter::start(common.pid);
    sleep_until(window.end.into()).await;
    let cpu_s = cpu.seconds();
    let mut total = Tally::new();
    for t in tasks {
        total.merge(&t.await??);
    }
    Ok((total, common.duration().as_secs_f64(), cpu_s))
}

/// A report on a load that writes requests: it names its write mode.
fn report(scenario: &'static str, label: &str, common: &Common) -> Report {
    let mut r = Report::new(scenario, label);
    r.set("write_mode", common.write_mode.name());
    r
}

fn load_fields(r: &mut Report, l: &Load) {
    r.set("clients", l.clients)
        .set("inflight", l.inflight)
        .set("keys", l.keys)
        .set("payload_bytes", l.payload);
}

pub async fn set(common: &Common, l: &Load) -> Result<(), BoxError> {
    let (tally, secs, cpu) = run_load(
        common,
        l.clients,
        l.inflight,
        set_frame(l.keys, l.payload, "/bench/set/", &common.protocol),
    )
    .await?;
    let mut r = report("set", &common.label, common);
    load_fields(&mut r, l);
    r.tally("", &tally, secs, cpu).print();
    Ok(())
}

pub async fn get(common: &Common, l: &Load) -> Result<(), BoxError> {
    // Populate every key first.
    let (mut ws, s) = conn::connect_and_login(common).await?;
    let body = payload(l.payload);
    for k in 0..l.keys {
        let id = 10 + k as u64;
        let frame = json!({"action":"set","eventId":id,"path":format!("/bench/get/{k}"),"data":{"v":body},"sessionId":s.id,"protocol":common.protocol});
        conn::request(&mut ws, frame, id).await?;
    }
    drop(ws);
    let (tally, secs, cpu) = run_load(common, l.clients, l.inflight, get_frame(l.keys, &common.protocol)).await?;
    let mut r = report("get", &common.label, common);
    load_fields(&mut r, l);
    r.tally("", &tally, secs, cpu).print();
    Ok(())
}

pub async fn fanout(common: &Common, publishers: usize, subscribers: usize, inflight: usize, payload_len: usize) -> Result<(), BoxError> {
    let window = Window::after(common.warmup() + Duration::from_millis(200), common.duration());
    let received = Arc::new(AtomicU64::new(0));
    let mut sub_tasks = Vec::new();
    for _ in 0..subscribers {
        let (mut ws, s) = conn::connect_and_login(common).await?;
        let on = json!({"action":"on","eventId":3,"path":"/SET@/bench/fan/*","sessionId":s.id,"options":{"event_type":"set","count":0,"refCount":0,"timeout":20000},"protocol":common.protocol});
        conn::request(&mut ws, on, 3).await?;
        let received = received.clone();
        sub_tasks.push(tokio::spawn(async move {
            let mut lat = Tally::new();
            // Read until the window has closed and the stream has gone quiet.
            while let Some(t) = next_text(&mut ws, window, Duration::from_millis(500)).await {
                let now = Instant::now();
                if !window.contains(now) || !t.contains("\"type\":\"data\"") {
                    continue;
                }
                received.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = field_u64(&t, "\"t\":") {
                    lat.record(now_micros().saturating_sub(sent));
                }
            }
            lat
        }));
    }
    let body = payload(payload_len);
    let protocol = common.protocol.clone();
    let frame: FrameFn = Arc::new(move |id, session| {
        format!(
            r#"{{"action":"set","eventId":{id},"path":"/bench/fan/{}","data":{{"t":{},"v":"{body}"}},"sessionId":"{session}","options":{{"timeout":20000}},"protocol":"{protocol}"}}"#,
            id % 100,
            now_micros()
        )
    });
    let mut pubs = Vec::new();
    for _ in 0..publishers {
        let (ws, s): (Ws, Session) = conn::connect_and_login(common).await?;
        pubs.push(spawn_loop(ws, s.id, inflight, window, &frame, common));
    }
    sleep_until(window.start.into()).await;
    let cpu = CpuMeter::start(common.pid);
    sleep_until(window.end.into()).await;
    let cpu_s = cpu.seconds();
    let mut sets = Tally::new();
    for p in pubs {
        sets.merge(&p.await??);
    }
    let mut lat = Tally::new();
    for s in sub_tasks {
        lat.merge(&s.await?);
    }
    let secs = common.duration().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed);
    let mut r = report("fanout", &common.label, common);
    r.set("publishers", publishers)
        .set("subscribers", subscribers)
        .set("inflight", inflight)
        .set("payload_bytes", payload_len);
    r.tally("publish_", &sets, secs, None);
    r.set("deliveries", delivered)
        .set("deliveries_per_s", round(delivered as f64 / secs));
    r.set("expected_deliveries", sets.ops * subscribers as u64);
    if !lat.latency.is_empty() {
        r.set("delivery_p50_us", lat.latency.value_at_quantile(0.5));
        r.set("delivery_p99_us", lat.latency.value_at_quantile(0.99));
        r.set("delivery_max_us", lat.latency.max());
    }
    if let Some(c) = cpu_s {
        r.set("server_cpu_s", round3(c));
        if c > 0.0 {
            r.set("deliveries_per_cpu_s", round(delivered as f64 / c));
        }
    }
    r.print();
    Ok(())
}

/// The next text frame of a subscriber's socket (answering pings on the way), waiting up to 30 s
/// while `window` is open and `quiet` after it; `None` when the stream has ended or gone quiet.
pub async fn next_text(ws: &mut Ws, window: Window, quiet: Duration) -> Option<String> {
    loop {
        let wait = if Instant::now() < window.end {
            Duration::from_secs(30)
        } else {
            quiet
        };
        let msg = match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => return None,
        };
        let Message::Text(t) = msg else { continue };
        if let Some(n) = t.strip_prefix("\"primus::ping::") {
            let _ = ws.send(Message::Text(format!("\"primus::pong::{n}").into())).await;
            continue;
        }
        return Some(t.to_string());
    }
}

pub fn field_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

pub async fn subs_scale(common: &Common, counts: &[usize], l: &Load) -> Result<(), BoxError> {
    let mut base_rate = None;
    let mut rows = Vec::new();
    for &m in counts {
        // One connection holds M wildcard subscriptions that never match the published paths.
        let (mut holder, s) = conn::connect_and_login(common).await?;
        let started = Instant::now();
        let mut next = 0usize;
        let mut acked = 0usize;
        let window = 256;
        while acked < m {
            while next < m && next - acked < window {
                let id = 1000 + next as u64;
                let frame = format!(
                    r#"{{"action":"on","eventId":{id},"path":"/SET@/bench/none/{next}/*","sessionId":"{}","options":{{"event_type":"set","count":0,"refCount":0,"timeout":20000}},"protocol":"{}"}}"#,
                    s.id, common.protocol
                );
                holder.feed(Message::Text(frame.into())).await?;
                next += 1;
            }
            holder.flush().await?;
            let msg = tokio::time::timeout(Duration::from_secs(60), holder.next())
                .await?
                .ok_or("closed while subscribing")??;
            if let Message::Text(t) = msg {
                if conn::event_id(&t).is_some() {
                    if is_error(&t) {
                        return Err(format!("subscribe failed: {t}").into());
                    }
                    acked += 1;
                }
            }
        }
        let subscribe_s = started.elapsed().as_secs_f64();
        let (tally, secs, cpu) = run_load(
            common,
            l.clients,
            l.inflight,
            set_frame(l.keys, l.payload, "/bench/scale/", &common.protocol),
        )
        .await?;
        let rate = tally.ops as f64 / secs;
        let base = *base_rate.get_or_insert(rate);
        let mut r = report("subs-scale", &common.label, common);
        load_fields(&mut r, l);
        r.set("wildcard_subscriptions", m).set("subscribe_s", round(subscribe_s));
        r.tally("", &tally, secs, cpu);
        r.set(
            "ratio_to_first",
            if base > 0.0 { (rate / base * 1000.0).round() / 1000.0 } else { 0.0 },
        );
        r.print();
        rows.push((m, rate));
        drop(holder);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("── subs-scale summary ({})", common.label);
    for (m, rate) in rows {
        let base = base_rate.unwrap_or(1.0);
        println!("  {m:>8} wildcard subs  {:>12.1} sets/s  {:>6.1}%", rate, rate / base * 100.0);
    }
    Ok(())
}

pub async fn conns(common: &Common, count: usize) -> Result<(), BoxError> {
    let before = common.pid.and_then(rss_bytes);
    let started = Instant::now();
    let mut open = Vec::with_capacity(count);
    let mut errors = 0u64;
    // The first tenth warms the server up (allocator arenas, thread stacks, buffers grown by the
    // first logins); the per-connection figure is the growth while the other nine tenths open.
    let warm = (count / 10).max(1).min(count);
    let mut at_warm = None;
    let batch = 64;
    let mut i = 0;
    while i < count {
        let n = batch.min(count - i).min(if i < warm { warm - i } else { usize::MAX });
        let mut tasks = Vec::new();
        for _ in 0..n {
            let c = common.clone();
            tasks.push(tokio::spawn(async move {
                conn::connect_and_login(&c).await.map(|(ws, _)| ws).map_err(|e| e.to_string())
            }));
        }
        for t in tasks {
            match t.await? {
                Ok(ws) => open.push(ws),
                Err(_) => errors += 1,
            }
        }
        i += n;
        if i == warm && at_warm.is_none() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            at_warm = Some((open.len(), common.pid.and_then(rss_bytes)));
        }
    }
    let open_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = common.pid.and_then(rss_bytes);
    let mut r = Report::new("conns", &common.label);
    r.set("connections", open.len()).set("errors", errors).set("open_s", round(open_s));
    if let (Some(b), Some(a)) = (before, after) {
        r.set("server_rss_before_bytes", b).set("server_rss_after_bytes", a);
        if !open.is_empty() {
            r.set("server_bytes_per_connection_overall", a.saturating_sub(b) / open.len() as u64);
        }
    }
    if let (Some((n_warm, Some(w))), Some(a)) = (at_warm, after) {
        let added = open.len().saturating_sub(n_warm);
        if added > 0 {
            r.set("server_bytes_per_connection", a.saturating_sub(w) / added as u64);
        }
    }
    r.print();
    drop(open);
    Ok(())
}

pub async fn login(common: &Common, clients: usize) -> Result<(), BoxError> {
    let (mut first, s) = conn::connect_and_login(common).await?;
    let token = s
        .token
        .clone()
        .ok_or("the server returned no token (insecure server?): login needs a secure server")?;
    drop(first.close(None).await);
    let mut r = report("login", &common.label, common);
    r.set("clients", clients);
    for (kind, creds) in [
        (
            "password_",
            json!({"username":common.username,"password":common.password,"info":{"_browser":false}}),
        ),
        ("token_", json!({"token":token,"info":{"_browser":false}})),
    ] {
        let creds = creds.to_string();
        let protocol = common.protocol.clone();
        let frame: FrameFn =
            Arc::new(move |id, _| format!(r#"{{"action":"login","eventId":{id},"data":{creds},"protocol":"{protocol}"}}"#));
        let (tally, secs, cpu) = run_load(common, clients, 1, frame).await?;
        r.tally(kind, &tally, secs, cpu);
    }
    r.print();
    Ok(())
}

/// Exact gets from `clients` connections (one in flight each, so latency is what a client sees)
/// measured alone, then again while `logins` other connections log in with a password over and
/// over: password hashing must not stall anyone else's requests.
pub async fn login_isolation(common: &Common, clients: usize, logins: usize) -> Result<(), BoxError> {
    let (mut ws, s) = conn::connect_and_login(common).await?;
    let set = json!({"action":"set","eventId":10,"path":"/bench/get/0","data":{"v":1},"sessionId":s.id,"protocol":common.protocol});
    conn::request(&mut ws, set, 10).await?;
    drop(ws);
    let gets = get_frame(1, &common.protocol);
    let (alone, secs, _) = run_load(common, clients, 1, gets.clone()).await?;

    let creds = json!({"username":common.username,"password":common.password,"info":{"_browser":false}}).to_string();
    let protocol = common.protocol.clone();
    let login_frame: FrameFn =
        Arc::new(move |id, _| format!(r#"{{"action":"login","eventId":{id},"data":{creds},"protocol":"{protocol}"}}"#));
    let mut get_conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        get_conns.push(conn::connect_and_login(common).await?);
    }
    let mut login_conns = Vec::with_capacity(logins);
    for _ in 0..logins {
        login_conns.push(conn::connect_and_login(common).await?);
    }
    let window = Window::after(common.warmup(), common.duration());
    let get_tasks: Vec<_> = get_conns
        .into_iter()
        .map(|(ws, s)| spawn_loop(ws, s.id, 1, window, &gets, common))
        .collect();
    let login_tasks: Vec<_> = login_conns
        .into_iter()
        .map(|(ws, s)| spawn_loop(ws, s.id, 1, window, &login_frame, common))
        .collect();
    let mut busy = Tally::new();
    for t in get_tasks {
        busy.merge(&t.await??);
    }
    let mut logged_in = Tally::new();
    for t in login_tasks {
        logged_in.merge(&t.await??);
    }
    let mut r = report("login-isolation", &common.label, common);
    r.set("clients", clients).set("concurrent_password_logins", logins);
    r.tally("get_alone_", &alone, secs, None)
        .tally("get_during_logins_", &busy, common.duration().as_secs_f64(), None)
        .tally("password_login_", &logged_in, common.duration().as_secs_f64(), None)
        .print();
    Ok(())
}

/// A websocket echo server on `listen`: every text frame is sent straight back.
async fn echo_server(listen: &str) -> Result<std::net::SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(t) = msg else { continue };
                    // Batch like a server would: feed what is ready, then flush once.
                    if ws.feed(Message::Text(t)).await.is_err() {
                        return;
                    }
                    while let Some(Some(Ok(Message::Text(t)))) = ws.next().now_or_never() {
                        if ws.feed(Message::Text(t)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// `echo-server`: the echo server in a process of its own, until killed.
pub async fn echo_serve(listen: &str) -> Result<(), BoxError> {
    let addr = echo_server(listen).await?;
    println!("echo server listening on {addr}");
    std::future::pending::<()>().await;
    Ok(())
}

pub async fn echo(common: &Common, l: &Load, external: bool) -> Result<(), BoxError> {
    let url = if external {
        common.url.clone()
    } else {
        format!("ws://{}", echo_server("127.0.0.1:0").await?)
    };
    let frame = set_frame(l.keys, l.payload, "/bench/echo/", &common.protocol);
    let mut conns = Vec::new();
    for _ in 0..l.clients {
        conns.push(conn::open_url(&url, None).await?);
    }
    let window = Window::after(common.warmup(), common.duration());
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|ws| spawn_loop(ws, "echo".into(), l.inflight, window, &frame, common))
        .collect();
    // The echo server's CPU, when it is a process of its own and --pid names it.
    sleep_until(window.start.into()).await;
    let cpu = CpuMeter::start(if external { common.pid } else { None });
    sleep_until(window.end.into()).await;
    let cpu_s = cpu.seconds();
    let mut total = Tally::new();
    for t in tasks {
        total.merge(&t.await??);
    }
    let mut r = report(
        "echo",
        if external { "echo (separate process)" } else { "echo (in-process)" },
        common,
    );
    load_fields(&mut r, l);
    r.tally("", &total, common.duration().as_secs_f64(), cpu_s).print();
    Ok(())
}
