//! The cluster scenario (issue 15, docs/CLUSTER.md): writers spread over the nodes of a
//! happn-rs cluster, and subscribers on every node. Reports acknowledged sets/s through the
//! cluster, the events each node delivered (every acknowledged write must reach every node), and
//! the cross-node delivery latency: from the writer sending a set to a subscriber on *another*
//! node receiving its event (client side, so both hops between client and node are in it).
//!
//! Writes are counted by their send time: a set sent inside the measured window and answered
//! `ok` counts, and so does its event on each node (the set carries its send time and writer's
//! node), so "delivered on every node" is an exact comparison, not a rate estimate.

use crate::conn::{self, is_error, BoxError, Ws};
use crate::measure::{now_micros, Tally, Window};
use crate::report::{round, round3, Report};
use crate::scenarios::{field_u64, next_text};
use crate::{Common, WriteMode};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterLoad {
    /// The nodes' websocket URLs, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Writing connections in all, spread over the nodes in turn
    #[arg(long, default_value_t = 24)]
    pub clients: usize,
    /// Sets in flight per writing connection
    #[arg(long, default_value_t = 32)]
    pub inflight: usize,
    /// Subscribing connections per node (each on every written path)
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Total sets per second to offer (0: as fast as the replies come back)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Distinct paths
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Payload bytes per document
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Process ids of every server process involved (the nodes and PostgreSQL's postmaster):
    /// their CPU seconds (with all their threads and children that ran in the window) are summed
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
}

/// A node's common settings: the same login, another URL.
fn at(common: &Common, url: &str) -> Common {
    Common {
        url: url.to_string(),
        ..common.clone()
    }
}

/// The window in microseconds since the epoch (what the sets carry).
fn window_micros(window: &Window) -> (u64, u64) {
    let now = Instant::now();
    let epoch_now = now_micros();
    let to_epoch = |t: Instant| {
        if t >= now {
            epoch_now + t.duration_since(now).as_micros() as u64
        } else {
            epoch_now.saturating_sub(now.duration_since(t).as_micros() as u64)
        }
    };
    (to_epoch(window.start), to_epoch(window.end))
}

/// What one subscriber saw: events of sets sent in the window, and the cross-node latencies.
struct Seen {
    events: u64,
    cross: Tally,
}

async fn subscribe(
    common: Common,
    node: usize,
    window: Window,
    (from, to): (u64, u64),
) -> Result<tokio::task::JoinHandle<Seen>, BoxError> {
    let (mut ws, s) = conn::connect_and_login(&common).await?;
    let on = json!({"action":"on","eventId":3,"path":"/SET@/bench/cluster/*","sessionId":s.id,
        "options":{"event_type":"set","count":0,"refCount":0,"timeout":20000},"protocol":common.protocol});
    conn::request(&mut ws, on, 3).await?;
    Ok(tokio::spawn(async move {
        let mut seen = Seen {
            events: 0,
            cross: Tally::new(),
        };
        // Until the window has closed and the stream has gone quiet.
        while let Some(t) = next_text(&mut ws, window, Duration::from_secs(2)).await {
            if !t.contains("\"type\":\"data\"") {
                continue;
            }
            let (Some(sent), Some(writer)) = (field_u64(&t, "\"t\":"), field_u64(&t, "\"n\":")) else {
                continue;
            };
            if sent < from || sent >= to {
                continue;
            }
            seen.events += 1;
            if writer as usize != node {
                seen.cross.record(now_micros().saturating_sub(sent));
            }
        }
        seen
    }))
}

/// Keep `inflight` sets outstanding (paced to `interval` between sends when set); counts the
/// sets sent inside the window that were answered `ok`.
async fn write(
    mut ws: Ws,
    session: String,
    node: usize,
    l: ClusterLoad,
    window: Window,
    span: (u64, u64),
    mode: WriteMode,
    interval: Option<Duration>,
) -> Result<Tally, BoxError> {
    let body = "x".repeat(l.payload);
    let mut tally = Tally::new();
    // Each set's send time as the subscribers see it (`t`), beside the instant for its latency.
    let mut sent: HashMap<u64, (Instant, u64)> = HashMap::new();
    let mut next_id = 100u64;
    let mut next_send = Instant::now();
    let frame = |id: u64, t: u64| {
        format!(
            r#"{{"action":"set","eventId":{id},"path":"/bench/cluster/{}","data":{{"t":{t},"n":{node},"v":"{body}"}},"sessionId":"{session}","options":{{"timeout":20000}},"protocol":"1.1.0"}}"#,
            (id as usize * 7 + node) % l.keys.max(1),
        )
    };
    loop {
        let now = Instant::now();
        let may_send = now < window.end && sent.len() < l.inflight && interval.is_none_or(|_| now >= next_send);
        if may_send {
            let t = now_micros();
            let text = frame(next_id, t);
            match mode {
                WriteMode::Frame => ws.send(Message::Text(text.into())).await?,
                WriteMode::Batched => ws.feed(Message::Text(text.into())).await?,
            }
            sent.insert(next_id, (now, t));
            next_id += 1;
            if let Some(i) = interval {
                next_send = next_send.max(now - i) + i;
            }
            continue;
        }
        ws.flush().await?;
        if sent.is_empty() && now >= window.end {
            return Ok(tally);
        }
        let wait = match interval {
            Some(_) if sent.len() < l.inflight && now < window.end => next_send.saturating_duration_since(now),
            _ => Duration::from_secs(30),
        };
        let msg = match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(m)) => m?,
            Ok(None) => return Err("a node closed the connection".into()),
            Err(_) if interval.is_some() && wait < Duration::from_secs(30) => continue,
            Err(_) => return Err(format!("no reply for 30 s ({} sets outstanding)", sent.len()).into()),
        };
        let mut pending = Some(msg);
        while let Some(msg) = pending.take() {
            if let Message::Text(t) = msg {
                if let Some(n) = t.strip_prefix("\"primus::ping::") {
                    ws.send(Message::Text(format!("\"primus::pong::{n}").into())).await?;
                } else if let Some(id) = conn::event_id(&t) {
                    if let Some((at, sent_at)) = sent.remove(&id) {
                        // The subscribers' test exactly, so "every event on every node" is exact.
                        if (span.0..span.1).contains(&sent_at) {
                            if is_error(&t) {
                                tally.errors += 1;
                            } else {
                                tally.record(Instant::now().duration_since(at).as_micros() as u64);
                            }
                        }
                    }
                }
            }
            pending = ws.next().now_or_never().flatten().transpose()?;
        }
    }
}

/// CPU seconds of a process and its children that have been waited for, plus its threads.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime: fields 14–17.
    let ticks: f64 = (11..15).filter_map(|i| f.get(i)?.parse::<f64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / if hz > 0.0 { hz } else { 100.0 })
}

/// CPU seconds of `pids` and every process whose parent is one of them (PostgreSQL's backends
/// are children of the postmaster and live as long as their connections).
fn tree_cpu(pids: &[u32]) -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if pids.contains(&pid) || ppid.is_some_and(|p| pids.contains(&p)) {
            total += process_cpu(pid).unwrap_or(0.0);
        }
    }
    total
}

pub async fn run(common: &Common, l: &ClusterLoad) -> Result<(), BoxError> {
    let nodes = l.nodes.len().max(1);
    let window = Window::after(common.warmup() + Duration::from_millis(300), common.duration());
    // The window in the clock the sets carry, read once: every subscriber and every writer
    // count by the same bounds.
    let span = window_micros(&window);
    let mut subs = Vec::new();
    for (i, url) in l.nodes.iter().enumerate() {
        for _ in 0..l.subscribers {
            subs.push((i, subscribe(at(common, url), i, window, span).await?));
        }
    }
    let interval = (l.rate > 0.0).then(|| Duration::from_secs_f64(l.clients as f64 / l.rate));
    let mut writers = Vec::new();
    for c in 0..l.clients {
        let node = c % nodes;
        let (ws, s) = conn::connect_and_login(&at(common, &l.nodes[node])).await?;
        writers.push(tokio::spawn(write(ws, s.id, node, l.clone(), window, span, common.write_mode, interval)));
    }
    tokio::time::sleep_until(window.start.into()).await;
    let cpu_before = tree_cpu(&l.pids);
    tokio::time::sleep_until(window.end.into()).await;
    let cpu = tree_cpu(&l.pids) - cpu_before;
    let mut sets = Tally::new();
    for w in writers {
        sets.merge(&w.await??);
    }
    let mut per_node = vec![0u64; nodes];
    let mut cross = Tally::new();
    for (node, s) in subs {
        let seen = s.await?;
        per_node[node] += seen.events;
        cross.merge(&seen.cross);
    }
    let secs = common.duration().as_secs_f64();
    let mut r = Report::new("cluster", &common.label);
    r.set("nodes", nodes)
        .set("clients", l.clients)
        .set("inflight", l.inflight)
        .set("subscribers_per_node", l.subscribers)
        .set("offered_rate", l.rate)
        .set("write_mode", common.write_mode.name());
    r.tally("set_", &sets, secs, None);
    let expected = sets.ops * l.subscribers as u64;
    r.set("events_expected_per_node", expected);
    r.set("events_per_node", per_node.clone());
    r.set("every_event_on_every_node", per_node.iter().all(|n| *n == expected));
    let delivered: u64 = per_node.iter().sum();
    r.set("deliveries_per_s", round(delivered as f64 / secs));
    if !cross.latency.is_empty() {
        r.set("cross_node_p50_us", cross.latency.value_at_quantile(0.5));
        r.set("cross_node_p99_us", cross.latency.value_at_quantile(0.99));
        r.set("cross_node_max_us", cross.latency.max());
    }
    if !l.pids.is_empty() {
        r.set("cluster_cpu_s", round3(cpu));
        if sets.ops > 0 {
            r.set("cluster_cpu_us_per_set", round3(cpu * 1e6 / sets.ops as f64));
        }
    }
    r.print();
    Ok(())
}
