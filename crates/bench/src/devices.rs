//! The device-fleet scenario: many connections, each lightly loaded, open loop.
//!
//! `count` logged-in connections each send one request (`set`, or `get`) every `interval`, at
//! phases spread evenly over the interval, whether or not the previous reply came back: the
//! offered rate is fixed by the fleet, not by the server, as with real devices. Latency runs from
//! the moment each request was written; how late that was after its scheduled time (tokio's
//! timers tick in milliseconds, and a load tool short of CPU falls behind) is reported beside it
//! as `send_lag_*`, so a tool that cannot keep the schedule shows it instead of quietly sending
//! less. Requests scheduled inside the measured window
//! count; their replies may arrive up to `GRACE` after it. Every frame goes in a write of its own
//! (a device has one request to send at a time).

use crate::conn::{self, is_error, BoxError, Ws};
use crate::measure::{rss_bytes, CpuMeter, Tally, Window};
use crate::report::{round, round3, Report};
use crate::scenarios::{get_frame, payload, set_frame, FrameFn};
use crate::Common;
use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// How long after the window replies to requests scheduled in it are still awaited.
const GRACE: Duration = Duration::from_secs(5);
/// Requests one device may have unanswered; past it a scheduled request is not sent and counts
/// as `skipped` (the server is that far behind; the tool's memory stays bounded).
const MAX_OUTSTANDING: usize = 64;

#[derive(Args, Debug, Clone)]
pub struct Fleet {
    /// Devices (connections)
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Milliseconds between two requests of one device (offered rate = count × 1000 / this)
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// The request every device sends
    #[arg(long, value_enum, default_value_t = Op::Set)]
    pub op: Op,
    /// Distinct paths (device i uses path i % keys)
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Payload bytes per document
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Connections opened (and logged in) at once while the fleet connects
    #[arg(long, default_value_t = 64)]
    pub open_batch: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Get,
}

/// One device's figures.
struct DeviceTally {
    /// Requests scheduled inside the window, their answered replies (latency from schedule),
    /// error replies, those not sent because `MAX_OUTSTANDING` were unanswered, and those still
    /// unanswered `GRACE` after the window.
    offered: u64,
    answered: Tally,
    /// How late each request was written after its scheduled time.
    lag: Tally,
    skipped: u64,
    lost: u64,
    /// Replies (to any request) that arrived inside the window: what the server did while its
    /// CPU was measured.
    replies_in_window: u64,
}

pub async fn run(common: &Common, f: &Fleet) -> Result<(), BoxError> {
    let interval = Duration::from_millis(f.interval_ms.max(1));
    let scenario = match f.op {
        Op::Set => "devices-set",
        Op::Get => "devices-get",
    };
    // One password login; every device then logs in with its token (a password hash per device
    // would take minutes for a fleet and measure the hash).
    let (mut first, session) = conn::connect_and_login(common).await?;
    if f.op == Op::Get {
        let body = payload(f.payload);
        for k in 0..f.keys {
            let id = 10 + k as u64;
            let frame = json!({"action":"set","eventId":id,"path":format!("/bench/get/{k}"),"data":{"v":body},"sessionId":session.id,"protocol":common.protocol});
            conn::request(&mut first, frame, id).await?;
        }
    }
    drop(first);
    let rss_before = common.pid.and_then(rss_bytes);
    let opened = Instant::now();
    let mut fleet = Vec::with_capacity(f.count);
    while fleet.len() < f.count {
        let n = f.open_batch.max(1).min(f.count - fleet.len());
        let batch: Vec<_> = (0..n)
            .map(|_| {
                let (c, token) = (common.clone(), session.token.clone());
                tokio::spawn(async move {
                    // A device reads one small reply at a time: a small read buffer, so a fleet
                    // of 19k fits the tool's memory.
                    let config = WebSocketConfig::default().read_buffer_size(4096);
                    let mut ws = conn::open_url(&c.url, Some(config)).await?;
                    let s = conn::login_as(&mut ws, &c, token.as_deref()).await?;
                    Ok::<_, BoxError>((ws, s.id))
                })
            })
            .collect();
        for t in batch {
            fleet.push(t.await.map_err(|e| e.to_string())??);
        }
    }
    let open_s = opened.elapsed().as_secs_f64();
    let rss_open = common.pid.and_then(rss_bytes);

    let frame = match f.op {
        Op::Set => set_frame(f.keys, f.payload, "/bench/dev/", &common.protocol),
        Op::Get => get_frame(f.keys, &common.protocol),
    };
    // The first rounds after the fleet connects are not the steady state (every connection's
    // first buffers and page faults, in the server and in this tool): at least three intervals
    // and two seconds of warm-up.
    let warmup = common.warmup().max(interval * 3).max(Duration::from_secs(2));
    let window = Window::after(warmup, common.duration());
    let begin = Instant::now();
    let count = f.count.max(1) as u32;
    let tasks: Vec<_> = fleet
        .into_iter()
        .enumerate()
        .map(|(i, (ws, sid))| {
            let first = begin + interval * (i as u32 % count) / count;
            tokio::spawn(device(ws, sid, i as u64, first, interval, window, frame.clone()))
        })
        .collect();
    sleep_until(window.start.into()).await;
    let cpu = CpuMeter::start(common.pid);
    sleep_until(window.end.into()).await;
    let cpu_s = cpu.seconds();
    let rss_end = common.pid.and_then(rss_bytes);
    let (mut offered, mut skipped, mut lost, mut in_window) = (0, 0, 0, 0);
    let mut answered = Tally::new();
    let mut lag = Tally::new();
    for t in tasks {
        let d = t.await??;
        offered += d.offered;
        skipped += d.skipped;
        lost += d.lost;
        in_window += d.replies_in_window;
        answered.merge(&d.answered);
        lag.merge(&d.lag);
    }

    let secs = common.duration().as_secs_f64();
    let mut r = Report::new(scenario, &common.label);
    r.set("write_mode", "frame")
        .set("devices", f.count)
        .set("interval_ms", f.interval_ms)
        .set("payload_bytes", f.payload)
        .set("open_s", round(open_s))
        .set("warmup_s", round(warmup.as_secs_f64()))
        .set("offered_per_s", round(f.count as f64 / interval.as_secs_f64()))
        .set("offered", offered)
        .set("skipped", skipped)
        .set("lost", lost);
    r.tally("", &answered, secs, None);
    r.set("replies_in_window", in_window);
    if !lag.latency.is_empty() {
        r.set("send_lag_p50_us", lag.latency.value_at_quantile(0.5));
        r.set("send_lag_p99_us", lag.latency.value_at_quantile(0.99));
    }
    if let Some(c) = cpu_s {
        r.set("server_cpu_s", round3(c));
        if in_window > 0 {
            r.set("server_cpu_us_per_op", round3(c * 1e6 / in_window as f64));
            r.set("ops_per_cpu_s", round(in_window as f64 / c.max(1e-9)));
        }
    }
    if let (Some(b), Some(o)) = (rss_before, rss_open) {
        r.set("server_rss_bytes_before", b).set("server_rss_bytes_open", o);
        r.set("server_bytes_per_device", o.saturating_sub(b) / f.count.max(1) as u64);
    }
    if let Some(e) = rss_end {
        r.set("server_rss_bytes", e);
    }
    r.set(
        "held_offered_rate",
        offered > 0 && skipped == 0 && lost == 0 && answered.ops + answered.errors >= offered,
    );
    r.print();
    Ok(())
}

/// One device: a request at `first`, `first + interval`, … until the window ends; replies are
/// read as they come.
async fn device(
    mut ws: Ws,
    session: String,
    index: u64,
    first: Instant,
    interval: Duration,
    window: Window,
    frame: FrameFn,
) -> Result<DeviceTally, BoxError> {
    let mut d = DeviceTally {
        offered: 0,
        answered: Tally::new(),
        lag: Tally::new(),
        skipped: 0,
        lost: 0,
        replies_in_window: 0,
    };
    // (event id, scheduled send time, actual send time); replies to one connection come in order, so the match is
    // nearly always at the front.
    let mut outstanding: VecDeque<(u64, Instant, Instant)> = VecDeque::with_capacity(4);
    let mut next = first;
    // Event ids stride over the fleet so that path `id % keys` spreads the devices over the keys.
    let mut id = 1000 + index;
    let stride = 1u64 << 20;
    // One timer per device, re-armed for each request (a fresh one per loop would register and
    // cancel a timer for every reply, too: the tool's own cost, which must stay below the
    // server's for the figures to mean anything).
    let timer = tokio::time::sleep_until(next.into());
    tokio::pin!(timer);
    let mut sending = true;
    loop {
        if !sending && outstanding.is_empty() {
            break;
        }
        tokio::select! {
            msg = ws.next() => {
                let msg = match msg {
                    Some(m) => m?,
                    None => return Err("server closed the connection".into()),
                };
                let Message::Text(t) = msg else { continue };
                if let Some(n) = t.strip_prefix("\"primus::ping::") {
                    ws.send(Message::Text(format!("\"primus::pong::{n}").into())).await?;
                    continue;
                }
                let Some(got) = conn::event_id(&t) else { continue };
                let Some(pos) = outstanding.iter().position(|(i, _, _)| *i == got) else { continue };
                let (_, scheduled, sent) = outstanding.remove(pos).expect("position is in range");
                let now = Instant::now();
                if window.contains(now) {
                    d.replies_in_window += 1;
                }
                if window.contains(scheduled) {
                    if is_error(&t) {
                        d.answered.errors += 1;
                    } else {
                        d.answered.record(now.saturating_duration_since(sent).as_micros() as u64);
                    }
                }
            }
            _ = &mut timer => {
                if !sending {
                    // `GRACE` after the window: what is still unanswered is lost.
                    d.lost += outstanding.iter().filter(|(_, s, _)| window.contains(*s)).count() as u64;
                    break;
                }
                let counted = window.contains(next);
                d.offered += counted as u64;
                if outstanding.len() >= MAX_OUTSTANDING {
                    d.skipped += counted as u64;
                } else {
                    let sent = Instant::now();
                    if counted {
                        d.lag.record(sent.saturating_duration_since(next).as_micros() as u64);
                    }
                    ws.send(Message::Text(frame(id, &session).into())).await?;
                    outstanding.push_back((id, next, sent));
                    id += stride;
                }
                next += interval;
                if next >= window.end {
                    sending = false;
                    timer.as_mut().reset((window.end + GRACE).into());
                } else {
                    timer.as_mut().reset(next.into());
                }
            }
        }
    }
    Ok(d)
}
