//! One websocket connection, served by one task: it reads and decodes frames, runs requests in
//! order, writes replies and events as the socket takes them, and keeps the Primus heartbeat.
//! One task (rather than a reader and a writer) keeps an idle connection small and saves a
//! cross-task wake-up per batch; output keeps flowing while a request waits (a password hash, a
//! durable commit) because every such wait also drives the writer.
//!
//! Writes are pipelined on durable stores ([`pipeline`]): replies and events still leave in
//! request order, since pipelined writes finish in the order they started and any other request
//! (or a write to a path already in flight) first waits for them all.

mod pipeline;
mod sender;

use crate::handler::{self, Answer, Parsed};
use crate::outbox::outbox;
use crate::session::Session;
use crate::state::{AppState, Outbox};
use crate::websocket::{Incoming, Stream, WsSocket};
use bytes::Bytes;
use happn_protocol::{anonymous_error, encode_control, Control, Decoded, Frame, Request, WireError};
use pipeline::{Pipeline, WriteDone, MAX_PIPELINED};
use sender::{Flow, Sender};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

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

/// Output that piles up while a burst of input is handled is written before the burst ends once
/// it reaches this much (large replies, many events), so it never waits in the queue long.
/// Below it, replies to one burst leave together: fewer system calls for the common case.
const EAGER_WRITE_BYTES: usize = 64 * 1024;

/// Serve an upgraded connection until it closes: the future is the connection's task.
/// The task runs in a span of its own (`conn`, with the session id and user once logged in), so
/// every line it logs can be traced to its client.
pub fn serve(stream: Stream, preread: Bytes, state: Arc<AppState>, heartbeat: Heartbeat) -> impl Future<Output = ()> + Send {
    use tracing::{field::Empty, Instrument};
    let conn = Connection::new(stream, preread, state, heartbeat);
    // At the error level, so that it is on whatever the filter lets through: a warning from a
    // connection must say whose it is even under `--log-level warn`.
    let span = tracing::error_span!("conn", id = conn.session.key, session = Empty, user = Empty);
    conn.run().instrument(span)
}

/// What a received message asks of the connection, once decoded (owned, and small: it is held
/// while a request runs).
enum Todo {
    Nothing,
    Answer(Answer),
    Request(Box<Request>),
    /// The client closed: the connection ends.
    End,
}

/// What woke the connection while it waited.
enum Wake {
    Input,
    /// The client closed its side, or reading failed.
    Eof,
    Written(WriteDone),
    Timer,
    /// A close is queued or went out: wait a little for the client's reply, and no longer
    /// (a client that stopped reading may never see the close frame).
    Closing,
    Overflow,
    WriteFailed,
}

/// Why the connection ended, for what is still owed to the client.
#[derive(PartialEq)]
enum End {
    /// Flush what is queued (a close reply, the last replies), then shut the socket.
    Flush,
    /// The socket is unusable or the client stopped reading: just drop it.
    Drop,
}

/// Everything one connection keeps. Its size is the idle cost of a connection (with the task
/// header and the socket's kernel buffers), so the rare parts live behind boxes.
struct Connection {
    ws: WsSocket<Stream>,
    out: Sender,
    session: Session,
    tx: Outbox,
    state: Arc<AppState>,
    /// The heartbeat deadline, or the close deadline once a close is under way.
    timer: Pin<Box<Sleep>>,
    interval: Option<Duration>,
    skipped: u32,
    last_pong: Option<Instant>,
    /// Set once a close is queued or sent: from then on only the client's close matters.
    closing: bool,
    close_by: Option<Instant>,
    /// Created on the first pipelined write: an idle connection does not carry it.
    pipeline: Option<Box<Pipeline>>,
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

impl Connection {
    fn new(io: Stream, preread: Bytes, state: Arc<AppState>, heartbeat: Heartbeat) -> Self {
        // hyper's leftover bytes share its whole 8 KiB read buffer: copy them, let it go.
        let ws = WsSocket::new(io, &preread, state.config.max_frame_bytes);
        let (tx, rx) = outbox(state.config.max_queue_bytes, &state.queue_budget);
        let key = state.register(tx.clone());
        let deadline = heartbeat.interval.map(|i| Instant::now() + i);
        Connection {
            ws,
            out: Sender::new(rx),
            session: Session::new(key),
            tx,
            state,
            timer: Box::pin(tokio::time::sleep_until(deadline.unwrap_or_else(far_future))),
            interval: heartbeat.interval,
            skipped: 0,
            last_pong: None,
            closing: false,
            close_by: None,
            pipeline: None,
        }
    }

    /// `self` is taken by value into the returned future and used in place (an `async fn`
    /// would keep a second copy of its argument in the task).
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl Future<Output = ()> + Send {
        async move {
            let end = self.serve().await;
            // The end is boxed: an idle connection need not carry its space.
            Box::pin(self.finish(end)).await
        }
    }

    async fn serve(&mut self) -> End {
        loop {
            // Everything complete in the input, in order.
            loop {
                let Some(todo) = self.next_todo() else { break };
                match todo {
                    Todo::Nothing => {}
                    Todo::End => return End::Flush,
                    // Boxed, as every wait while handling input: an idle connection need not
                    // carry the space of a request in progress.
                    Todo::Answer(answer) => {
                        Box::pin(self.drain()).await;
                        answer.send(&self.tx);
                    }
                    Todo::Request(req) => Box::pin(self.request(req)).await,
                }
                // Large output starts leaving while the rest of a burst is handled.
                if self.ws.unwritten() + self.tx.queued_bytes() >= EAGER_WRITE_BYTES {
                    let Connection { ws, out, .. } = self;
                    poll_fn(|cx| {
                        out.poll(cx, ws);
                        Poll::Ready(())
                    })
                    .await;
                }
            }
            let wake = self.wait().await;
            // Awake: what its own requests queue is written before it sleeps again, so they need
            // not wake it (see `OutboxReceiver::unregister`).
            self.out.unregister();
            match wake {
                Wake::Input => {}
                Wake::Eof => return End::Flush,
                Wake::Written(done) => {
                    if let Some(p) = self.pipeline.as_mut() {
                        p.finish(&self.state, &self.tx, done);
                    }
                }
                Wake::Closing => {
                    self.closing = true;
                    let by = Instant::now() + CLOSE_GRACE;
                    self.close_by = Some(by);
                    self.timer.as_mut().reset(by);
                }
                Wake::Overflow if self.tx.evicted() => return End::Drop, // logged by `shed_queues`
                Wake::Overflow => {
                    // The client stopped reading: drop it rather than buffer without bound.
                    let who = self.session.id().map_or("(not logged in)", |id| id);
                    tracing::warn!(conn = self.session.key, session = %who, limit = self.tx.limit(), "closing connection: outbound queue full (client not reading)");
                    self.state.telemetry.slow_consumer();
                    return End::Drop;
                }
                Wake::WriteFailed => return End::Drop,
                Wake::Timer => {
                    if self.close_by.is_some() {
                        return End::Drop;
                    }
                    self.heartbeat_missed();
                }
            }
        }
    }

    /// Decode the next complete message and do what needs no waiting; `None` when the input
    /// holds no complete message.
    fn next_todo(&mut self) -> Option<Todo> {
        let key = self.session.key;
        let closing = self.closing;
        let text = match self.ws.next_message()? {
            Incoming::Text(_) | Incoming::Binary(_) if closing => return Some(Todo::Nothing),
            Incoming::Text(t) => decode(&self.state, &self.session, t),
            // Primus sends text, but a binary frame holding UTF-8 JSON is read the same way.
            Incoming::Binary(b) => match std::str::from_utf8(b) {
                Ok(t) => decode(&self.state, &self.session, t),
                Err(_) => {
                    tracing::debug!(conn = key, "binary frame that is not UTF-8 dropped");
                    return Some(Todo::Nothing);
                }
            },
            Incoming::Ping => {
                // The socket answers it. websocket-level pings keep the spark alive too, as in
                // happn's Primus (its websocket transformer emits `incoming::ping` for them).
                self.heartbeat_seen();
                if !self.out.overflowed() && self.ws.owed_pong_bytes() + self.tx.queued_bytes() > self.tx.limit() {
                    // Pinging without reading: pongs the client will not take count against the
                    // outbound limit like any reply, and the connection closes the same way.
                    tracing::debug!(
                        conn = key,
                        "websocket pings from a client that does not read past the outbound limit"
                    );
                    self.tx.overflow();
                }
                return Some(Todo::Nothing);
            }
            Incoming::Pong => return Some(Todo::Nothing),
            Incoming::Close(code) => {
                if !self.closing {
                    // Answer the client's close with its own code, after what is queued.
                    self.tx.close(vec![], code.unwrap_or(1005), String::new());
                }
                return Some(Todo::End);
            }
            Incoming::TooBig => {
                let limit = self.state.config.max_frame_bytes;
                tracing::warn!(conn = key, "closing connection: message over the {limit}-byte limit");
                let err = WireError::error(format!("message exceeds the maximum size of {limit} bytes"));
                self.close(vec![anonymous_error(&err)], 1009, format!("message too big (limit {limit} bytes)"));
                return Some(Todo::Nothing);
            }
            Incoming::NotUtf8 => {
                self.close(vec![], 1007, "text frame that is not UTF-8".into());
                return Some(Todo::Nothing);
            }
            Incoming::Violation(v) => {
                tracing::debug!(conn = key, reason = v.reason, "closing connection: websocket protocol error");
                self.close(vec![], v.code, v.reason.into());
                return Some(Todo::Nothing);
            }
        };
        Some(match text {
            Text::Control(Control::Ping(n)) => {
                self.heartbeat_seen();
                let now = Instant::now();
                let pong_skip = Duration::from_millis(self.state.config.pong_skip_time_ms);
                if self.last_pong.is_none_or(|t| now.duration_since(t) >= pong_skip) {
                    self.last_pong = Some(now);
                    self.tx.text(encode_control(&format!("primus::pong::{n}")));
                }
                Todo::Nothing
            }
            Text::Control(Control::Id) => {
                self.tx.text(encode_control(&format!("primus::id::{key}")));
                Todo::Nothing
            }
            Text::Invalid(e) => {
                if e.contains("recursion limit") {
                    let err = WireError::error("message is nested too deeply (the limit is 128 levels)");
                    self.tx.text(anonymous_error(&err));
                } else {
                    // As the original: invalid JSON is logged and dropped, no reply.
                    tracing::debug!(conn = key, error = %e, "invalid JSON frame dropped");
                }
                Todo::Nothing
            }
            Text::Parsed(Parsed::Answer(answer)) => Todo::Answer(answer),
            Text::Parsed(Parsed::Request(req)) => Todo::Request(req),
        })
    }

    /// Run one request; on stores whose writes wait (durable ones) a write is started and left
    /// in flight.
    async fn request(&mut self, req: Box<Request>) {
        let pipelining = !self.state.data.writes_inline();
        let req = if pipelining && !self.pipeline.as_ref().is_some_and(|p| p.writes_to(&req)) {
            let Connection {
                ws, out, session, state, ..
            } = self;
            match flushing(ws, out, Box::pin(handler::start_write(state, session, req))).await {
                Ok(write) => {
                    // A full pipeline first finishes its oldest write.
                    self.drain_to(MAX_PIPELINED - 1).await;
                    self.pipeline.get_or_insert_with(Box::default).start(write);
                    return;
                }
                Err(req) => req,
            }
        } else {
            req
        };
        self.drain().await;
        let Connection {
            ws,
            out,
            session,
            state,
            tx,
            ..
        } = self;
        // Pinned in place: this future is itself boxed by `serve`, so one allocation per
        // request holds both.
        flushing(ws, out, std::pin::pin!(handler::handle_request(state, session, tx, req))).await;
    }

    /// Finish every pipelined write in flight, in order, writing output meanwhile.
    async fn drain(&mut self) {
        self.drain_to(0).await
    }

    /// Finish pipelined writes, oldest first, until at most `keep` are in flight.
    async fn drain_to(&mut self, keep: usize) {
        let Connection {
            ws,
            out,
            state,
            tx,
            pipeline,
            ..
        } = self;
        if let Some(p) = pipeline.as_mut().filter(|p| p.len() > keep) {
            flushing(ws, out, Box::pin(p.drain_to(keep, state, tx))).await;
        }
    }

    /// Sleep until there is input, a finished write, or a timer, writing output meanwhile.
    fn wait(&mut self) -> impl Future<Output = Wake> + '_ {
        let Connection {
            ws,
            out,
            timer,
            pipeline,
            close_by,
            session,
            ..
        } = self;
        poll_fn(move |cx| {
            let flow = out.poll(cx, ws);
            if flow == Flow::Failed {
                return Poll::Ready(Wake::WriteFailed);
            }
            if out.overflowed() {
                return Poll::Ready(Wake::Overflow);
            }
            if out.closing() && close_by.is_none() {
                return Poll::Ready(Wake::Closing);
            }
            if let Some(p) = pipeline.as_mut() {
                if let Poll::Ready(Some(done)) = p.poll_next(cx) {
                    return Poll::Ready(Wake::Written(done));
                }
            }
            // The timer before the input: a client that keeps the input busy (a flood of
            // pings, say) must not starve its own heartbeat and close deadlines.
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            match ws.poll_fill(cx) {
                Poll::Ready(Ok(true)) => {
                    out.set_inbound(ws.input_held());
                    return Poll::Ready(Wake::Input);
                }
                Poll::Ready(Ok(false)) => return Poll::Ready(Wake::Eof),
                Poll::Ready(Err(e)) => {
                    tracing::debug!(conn = session.key, error = %e, "websocket read failed");
                    return Poll::Ready(Wake::Eof);
                }
                Poll::Pending => {}
            }
            if flow == Flow::Idle {
                // Nothing in flight either way: give the buffers back while the client is quiet.
                ws.release_idle();
                out.release_idle();
                out.set_inbound(ws.input_held());
            }
            Poll::Pending
        })
    }

    /// Queue a close: nothing the client sends is handled after this, but its close.
    fn close(&mut self, preface: Vec<String>, code: u16, reason: String) {
        self.tx.close(preface, code, reason);
        self.closing = true;
    }

    /// A ping from the client: the spark is alive.
    fn heartbeat_seen(&mut self) {
        self.skipped = 0;
        if self.close_by.is_none() {
            let next = self.interval.map(|i| Instant::now() + i);
            self.timer.as_mut().reset(next.unwrap_or_else(far_future));
        }
    }

    /// The heartbeat timer ran out: a pong of our own while skips are allowed, then a close.
    fn heartbeat_missed(&mut self) {
        self.skipped += 1;
        if self.skipped <= self.state.config.allow_skipped_heartbeats {
            let now_ms = happn_engine::now_millis();
            self.tx.text(encode_control(&format!("primus::pong::{now_ms}")));
            let next = self.interval.map(|i| Instant::now() + i);
            self.timer.as_mut().reset(next.unwrap_or_else(far_future));
        } else {
            tracing::debug!(conn = self.session.key, "heartbeat flatlined; closing");
            self.close(vec![], 1000, String::new());
            self.timer.as_mut().reset(far_future());
        }
    }

    async fn finish(&mut self, end: End) {
        // Writes already started are committed: publish their events (and queue their replies).
        self.drain().await;
        self.session.end(&self.state);
        self.state.unregister(self.session.key);
        if end == End::Flush {
            let Connection { ws, out, .. } = self;
            let flushed = poll_fn(|cx| match out.poll(cx, ws) {
                Flow::Blocked => Poll::Pending,
                Flow::Idle | Flow::Failed => Poll::Ready(()),
            });
            if tokio::time::timeout(CLOSE_GRACE, flushed).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(1), poll_fn(|cx| ws.poll_shutdown(cx))).await;
            }
        }
    }
}

/// A text frame, decoded.
enum Text {
    Control(Control),
    /// Not JSON: the parser's message.
    Invalid(String),
    /// A request, or the answer to one that cannot run.
    Parsed(Parsed),
}

/// Decode a text frame: straight into a request, or through a JSON value when payload
/// encryption may have wrapped it.
fn decode(state: &AppState, session: &Session, text: &str) -> Text {
    if !state.config.encrypt_payloads {
        return match happn_protocol::decode_request(text) {
            Decoded::Control(c) => Text::Control(c),
            Decoded::Invalid(e) => invalid(text, e),
            Decoded::Request(r) => Text::Parsed(handler::parse_decoded(r)),
        };
    }
    match happn_protocol::decode_frame(text) {
        Frame::Control(c) => Text::Control(c),
        Frame::Invalid(e) => invalid(text, e),
        Frame::Message(v) => Text::Parsed(handler::parse(state, session, v)),
    }
}

/// A frame that did not parse: still a request owed an error reply when it is one in JSON's
/// grammar and its eventId can be read (a 5,000-digit number in its data, say); otherwise
/// invalid.
fn invalid(text: &str, error: String) -> Text {
    match happn_protocol::unreadable_request(text, &error) {
        Some(refused) => Text::Parsed(handler::parse_decoded(Err(refused))),
        None => Text::Invalid(error),
    }
}

/// Await `fut` while writing output, so replies and events already queued keep flowing.
async fn flushing<S, F>(ws: &mut WsSocket<S>, out: &mut Sender, mut fut: F) -> F::Output
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future + Unpin,
{
    poll_fn(|cx| {
        if let Poll::Ready(v) = Pin::new(&mut fut).poll(cx) {
            return Poll::Ready(v);
        }
        // A failed write is noticed by the main loop once the request is done.
        out.poll(cx, ws);
        Poll::Pending
    })
    .await
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

#[cfg(test)]
mod size {
    use super::*;

    fn future_size<F: FnOnce(Connection) -> Fut, Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Tens of thousands of mostly idle connections are the common case: the state a connection
    /// keeps while it waits is its memory cost, so growth here should be a decision.
    #[test]
    fn an_idle_connection_stays_small() {
        let state = std::mem::size_of::<Connection>();
        let task = future_size(Connection::run);
        eprintln!("connection state {state} bytes, task future {task} bytes");
        assert!(state <= 448, "connection state grew to {state} bytes");
        assert!(task <= 576, "connection future grew to {task} bytes");
    }
}
