//! One websocket connection: a reader loop that decodes frames, runs requests in order and keeps
//! the Primus heartbeat, and a writer task that drains the connection's outbound queue.
//!
//! Writes are pipelined on durable stores: a `set` that passes its checks is started and the
//! loop reads the next frame while the store commits it, so a client with several writes in
//! flight has them share one group commit (fsync) instead of paying one each. Replies and
//! events still leave in request order: pipelined writes finish in the order they started, and
//! any other request (or a write to a path already in flight) first waits for them all.

use crate::encryption::{self, FrameCipher};
use crate::handler::{self, Conn, Parsed};
use crate::outbox::outbox;
use crate::state::{AppState, Outbound};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use happn_engine::data::Written;
use happn_engine::DataError;
use happn_protocol::Request;
use happn_protocol::{anonymous_error, encode_control, escape_line_separators, Control, Frame, WireError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

/// The client's heartbeat settings, from the upgrade query (`?ping=25000&pong=10000`).
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// `None` when the client sent `ping=false`: no server timer at all.
    pub interval: Option<Duration>,
}

impl Heartbeat {
    pub fn from_query(query: Option<&str>) -> Heartbeat {
        let mut ping: Option<Option<u64>> = None;
        let mut pong: Option<u64> = None;
        for pair in query.unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "ping" => ping = Some(if v == "false" { None } else { v.parse().ok().or(Some(25_000)) }),
                "pong" => pong = v.parse().ok(),
                _ => {}
            }
        }
        let ping = ping.unwrap_or(Some(25_000));
        let pong = pong.unwrap_or(10_000);
        // Primus runs the spark timer at ping + pong/2, reset only by pings.
        Heartbeat {
            interval: ping.map(|p| Duration::from_millis(p + pong / 2)),
        }
    }
}

/// How long a server-initiated close waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Most writes one connection may have in flight at once.
const MAX_PIPELINED: usize = 64;

type WriteDone = (Box<Request>, String, Result<Written, DataError>);

/// A connection's pipelined writes, oldest first.
#[derive(Default)]
struct Pipeline {
    writes: FuturesOrdered<BoxFuture<'static, WriteDone>>,
    paths: VecDeque<String>,
}

impl Pipeline {
    fn start(&mut self, w: handler::PendingWrite) {
        let (req, path, write) = w.into_parts();
        self.paths.push_back(path.clone());
        self.writes.push_back(Box::pin(async move { (req, path, write.await) }));
    }

    fn writes_to(&self, req: &Request) -> bool {
        req.path
            .as_ref()
            .and_then(|p| p.as_str())
            .is_some_and(|p| self.paths.iter().any(|q| q == p))
    }

    fn finish(&mut self, state: &AppState, tx: &crate::state::Outbox, (req, path, result): WriteDone) {
        self.paths.pop_front();
        handler::finish_write(state, tx, &req, &path, result);
    }
}

/// Finish every pipelined write in flight, in order.
async fn drain(pipeline: &mut Option<Pipeline>, state: &AppState, tx: &crate::state::Outbox) {
    let Some(p) = pipeline.as_mut() else { return };
    if p.writes.is_empty() {
        return;
    }
    Box::pin(async {
        while let Some(done) = p.writes.next().await {
            p.finish(state, tx, done);
        }
    })
    .await
}

/// The oldest pipelined write, once done; pending forever while there is none.
async fn next_write(pipeline: &mut Option<Pipeline>) -> Option<WriteDone> {
    match pipeline.as_mut() {
        Some(p) if !p.writes.is_empty() => p.writes.next().await,
        _ => std::future::pending().await,
    }
}

pub async fn run(socket: WebSocket, state: Arc<AppState>, heartbeat: Heartbeat) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = outbox(state.config.max_queue_bytes);
    let key = state.register(tx.clone());
    let mut conn = Conn::new(key);

    let mut writer = tokio::spawn(async move {
        // Payload encryption of this connection's frames, switched on by an encrypted login.
        let mut cipher: Option<Arc<FrameCipher>> = None;
        // Batch: feed everything queued, flush once.
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(out) = next.take() {
                match out {
                    Outbound::Text(t) => {
                        let t = encryption::outgoing(cipher.as_deref(), t);
                        if sink.feed(Message::Text(Utf8Bytes::from(escape_line_separators(t)))).await.is_err() {
                            return;
                        }
                    }
                    Outbound::Clear(t) => {
                        if sink.feed(Message::Text(Utf8Bytes::from(escape_line_separators(t)))).await.is_err() {
                            return;
                        }
                    }
                    Outbound::Encrypt(c) => cipher = c,
                    Outbound::Close { preface, code, reason } => {
                        for p in preface {
                            let p = encryption::outgoing(cipher.as_deref(), p);
                            let _ = sink.feed(Message::Text(Utf8Bytes::from(p))).await;
                        }
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: Utf8Bytes::from(reason),
                            })))
                            .await;
                        return;
                    }
                }
                next = rx.try_recv();
            }
            if sink.flush().await.is_err() {
                return;
            }
            rx.release_idle();
        }
        // Every sender is gone: flush whatever is pending (e.g. the reply to a client's close).
        let _ = sink.close().await;
    });

    let allowed_skips = state.config.allow_skipped_heartbeats;
    let pong_skip = Duration::from_millis(state.config.pong_skip_time_ms);
    let mut deadline = heartbeat.interval.map(|i| Instant::now() + i);
    let mut skipped = 0u32;
    let mut last_pong: Option<Instant> = None;
    let mut writer_done = false;
    let mut close_by: Option<Instant> = None;
    // Only a durable store makes a write wait long enough for pipelining to pay.
    let pipelining = !state.config.data.memory;
    // Created on the first pipelined write: an idle connection does not carry its allocation.
    let mut pipeline: Option<Pipeline> = None;

    loop {
        let timer = async {
            match (close_by, deadline) {
                (Some(t), _) => sleep_until(t).await,
                (None, Some(t)) => sleep_until(t).await,
                (None, None) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            msg = stream.next() => {
                let text = match msg {
                    None => break,
                    Some(Err(e)) => {
                        if is_too_large(&e) {
                            let limit = state.config.max_frame_bytes;
                            tracing::warn!(conn = key, "closing connection: message over the {limit}-byte limit");
                            let err = WireError::error(format!("message exceeds the maximum size of {limit} bytes"));
                            tx.close(vec![anonymous_error(&err)], 1009, format!("message too big (limit {limit} bytes)"));
                            close_by.get_or_insert(Instant::now() + CLOSE_GRACE);
                            continue;
                        }
                        tracing::debug!(conn = key, error = %e, "websocket error");
                        break;
                    }
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                        Ok(t) => t,
                        Err(_) => { tracing::debug!(conn = key, "binary frame that is not UTF-8 dropped"); continue; }
                    },
                    Some(Ok(Message::Ping(_))) => {
                        // websocket-level pings keep the spark alive too (the library answers them).
                        skipped = 0;
                        deadline = heartbeat.interval.map(|i| Instant::now() + i);
                        continue;
                    }
                    Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) => break,
                };
                match happn_protocol::decode_frame(&text) {
                    Frame::Control(Control::Ping(n)) => {
                        skipped = 0;
                        deadline = heartbeat.interval.map(|i| Instant::now() + i);
                        let now = Instant::now();
                        if last_pong.is_none_or(|t| now.duration_since(t) >= pong_skip) {
                            last_pong = Some(now);
                            tx.text(encode_control(&format!("primus::pong::{n}")));
                        }
                    }
                    Frame::Control(Control::Id) => {
                        tx.text(encode_control(&format!("primus::id::{key}")));
                    }
                    Frame::Message(v) => match handler::parse(&state, &mut conn, v) {
                        Parsed::Answer(answer) => {
                            drain(&mut pipeline, &state, &tx).await;
                            answer.send(&tx);
                        }
                        Parsed::Request(req) => {
                            // Every await here is boxed: their futures are large and only live while
                            // a request runs, so an idle connection does not carry their space.
                            let req = if pipelining && !pipeline.as_ref().is_some_and(|p| p.writes_to(&req)) {
                                match Box::pin(handler::start_write(&state, &mut conn, req)).await {
                                    Ok(write) => {
                                        let p = pipeline.get_or_insert_with(Pipeline::default);
                                        if p.writes.len() >= MAX_PIPELINED {
                                            if let Some(done) = Box::pin(p.writes.next()).await {
                                                p.finish(&state, &tx, done);
                                            }
                                        }
                                        p.start(write);
                                        continue;
                                    }
                                    Err(req) => req,
                                }
                            } else {
                                req
                            };
                            drain(&mut pipeline, &state, &tx).await;
                            Box::pin(handler::handle_request(&state, &mut conn, &tx, req)).await
                        }
                    },
                    Frame::Invalid(e) => {
                        if e.contains("recursion limit") {
                            let err = WireError::error("message is nested too deeply (the limit is 128 levels)");
                            tx.text(anonymous_error(&err));
                        } else {
                            // As the original: invalid JSON is logged and dropped, no reply.
                            tracing::debug!(conn = key, error = %e, "invalid JSON frame dropped");
                        }
                    }
                }
            }
            Some(done) = next_write(&mut pipeline) => {
                if let Some(p) = pipeline.as_mut() {
                    p.finish(&state, &tx, done);
                }
            }
            _ = timer => {
                if close_by.is_some() {
                    break;
                }
                skipped += 1;
                if skipped <= allowed_skips {
                    let now_ms = happn_engine::now_millis();
                    tx.text(encode_control(&format!("primus::pong::{now_ms}")));
                    deadline = heartbeat.interval.map(|i| Instant::now() + i);
                } else {
                    tracing::debug!(conn = key, "heartbeat flatlined; closing");
                    tx.close(vec![], 1000, String::new());
                    deadline = None;
                    close_by = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            _ = tx.overflowed() => {
                // The client stopped reading: drop it rather than buffer without bound.
                let who = conn.session.as_ref().map(|s| s.id.to_string()).unwrap_or_else(|| "(not logged in)".into());
                tracing::warn!(conn = key, session = %who, limit = tx.limit(), "closing connection: outbound queue full (client not reading)");
                writer.abort();
                writer_done = true;
                break;
            }
            _ = &mut writer, if !writer_done => {
                // The writer ends after sending a close: wait briefly for the client's reply.
                writer_done = true;
                close_by.get_or_insert(Instant::now() + CLOSE_GRACE);
            }
        }
    }

    // Writes already started are committed: publish their events (and queue their replies).
    drain(&mut pipeline, &state, &tx).await;
    conn.end_session(&state);
    state.unregister(key);
    drop(tx);
    if !writer_done {
        let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    }
}

fn is_too_large(e: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<tungstenite::Error>() {
            return matches!(t, tungstenite::Error::Capacity(_));
        }
        source = s.source();
    }
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_from_query() {
        assert_eq!(
            Heartbeat::from_query(Some("_primuscb=x&ping=2000&pong=1000")).interval,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(Heartbeat::from_query(None).interval, Some(Duration::from_millis(30_000)));
        assert_eq!(Heartbeat::from_query(Some("ping=false")).interval, None);
    }
}
