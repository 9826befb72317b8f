//! A server websocket over any byte stream, owning its buffers so that an idle connection holds
//! none: input is read through a stack buffer and kept on the heap only while a frame is
//! incomplete or messages are being handled; output is kept only until it is written. Both are
//! given back by [`WsSocket::release_idle`] when the connection goes quiet.
//!
//! What a client can make the socket hold follows what it actually sends and reads: a frame's
//! announced length reserves no more than one read's worth of room (the buffer grows with the
//! bytes that arrive), and while the client is not reading its pings are answered by one pending
//! pong for the latest of them (RFC 6455 5.5.3 allows it), so pinging without reading adds
//! nothing to the output.

use super::frame::{self, FrameAt, Kind, ProtocolViolation};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `ready!` for `Poll<io::Result<T>>`: hand on `Pending` and errors, unwrap the value.
macro_rules! ready_or_return {
    ($e:expr) => {
        match $e {
            Poll::Ready(Ok(v)) => v,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    };
}

/// Bytes read per system call when no larger frame is pending.
const READ_CHUNK: usize = 16 * 1024;

/// The output buffer's first size when a connection starts writing again.
const WRITE_CHUNK: usize = 8 * 1024;

/// What each ping received while the output is blocked counts against the connection's
/// outbound limit ([`WsSocket::owed_pong_bytes`]): the largest pong frame (127 bytes) and
/// about what a queued frame costs besides its bytes.
const OWED_PONG_BYTES: usize = 192;

/// A message, or what went wrong instead, borrowed from the socket's input.
#[derive(Debug, PartialEq)]
pub enum Incoming<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    /// A ping; the socket has already answered it (see [`WsSocket::owed_pong_bytes`]).
    Ping,
    Pong,
    /// The client's close, with its status code when it sent a valid one.
    Close(Option<u16>),
    /// A message over the size limit; its bytes are skipped as they arrive.
    TooBig,
    /// A text message that is not UTF-8 (close with 1007).
    NotUtf8,
    Violation(ProtocolViolation),
}

pub struct WsSocket<S> {
    io: S,
    /// Received bytes; everything before `consumed` has been handed out.
    input: Vec<u8>,
    consumed: usize,
    /// Payload bytes of a refused (oversized) frame still to drop.
    skip: u64,
    /// A fragmented message being assembled: its kind and the payload so far. Boxed: Primus
    /// clients never fragment, so an idle connection should not carry its space.
    fragments: Option<Box<(Kind, Vec<u8>)>>,
    /// The last reassembled message, kept so it can be lent out.
    assembled: Vec<u8>,
    max_message: usize,
    output: Vec<u8>,
    written: usize,
    /// The payload of the latest ping not yet answered (when `pong_pending`), kept while the
    /// output is blocked: the pong is framed once everything before it is written, so pings
    /// that arrive while the client is not reading replace each other here instead of piling
    /// pongs up in `output`.
    pong: Vec<u8>,
    pong_pending: bool,
    /// The last write could not finish: the client is not reading (for now).
    blocked: bool,
    /// Pings received while the output was blocked, since it last drained.
    pings_while_blocked: u32,
    /// A close frame is framed: no pong may follow it.
    close_sent: bool,
    /// After a protocol violation the input cannot be framed any more: it is discarded.
    broken: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSocket<S> {
    /// `preread`: bytes the HTTP layer read past the upgrade request.
    pub fn new(io: S, preread: &[u8], max_message: usize) -> Self {
        WsSocket {
            io,
            input: preread.to_vec(),
            consumed: 0,
            skip: 0,
            fragments: None,
            assembled: Vec::new(),
            max_message,
            output: Vec::new(),
            written: 0,
            pong: Vec::new(),
            pong_pending: false,
            blocked: false,
            pings_while_blocked: 0,
            close_sent: false,
            broken: false,
        }
    }

    /// Heap bytes the input holds (the read buffer and a fragmented message being assembled):
    /// counted in the server-wide memory budget with the connection's queued output.
    pub fn input_held(&self) -> usize {
        self.input.capacity() + self.fragments.as_ref().map_or(0, |f| f.1.capacity())
    }

    /// Read what the client has sent. `Ready(Ok(false))` at end of stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.consumed > 0 {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
        let spare = self.input.capacity() - self.input.len();
        if spare >= READ_CHUNK {
            // A large frame is pending and room for its next part is reserved: read straight
            // into it.
            let mut buf = ReadBuf::uninit(self.input.spare_capacity_mut());
            ready_or_return!(Pin::new(&mut self.io).poll_read(cx, &mut buf));
            let n = buf.filled().len();
            // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
            unsafe { self.input.set_len(self.input.len() + n) };
            return Poll::Ready(Ok(n > 0));
        }
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        ready_or_return!(Pin::new(&mut self.io).poll_read(cx, &mut buf));
        let got = buf.filled();
        if self.input.is_empty() {
            // Room for a burst of requests, kept while the connection is busy.
            self.input.reserve(READ_CHUNK.max(got.len()));
        }
        self.input.extend_from_slice(got);
        Poll::Ready(Ok(!got.is_empty()))
    }

    /// The next complete message in the input, if any.
    pub fn next_message(&mut self) -> Option<Incoming<'_>> {
        loop {
            if self.broken {
                self.consumed = self.input.len();
                return None;
            }
            if self.skip > 0 {
                let drop = (self.skip).min((self.input.len() - self.consumed) as u64);
                self.consumed += drop as usize;
                self.skip -= drop;
                if self.skip > 0 {
                    return None;
                }
            }
            let at = match frame::parse_header(&self.input[self.consumed..]) {
                Ok(Some(at)) => at,
                Ok(None) => return None,
                Err(v) => {
                    self.broken = true;
                    return Some(Incoming::Violation(v));
                }
            };
            let so_far = self.fragments.as_ref().map_or(0, |f| f.1.len() as u64);
            // Saturating: `parse_header` bounds the length to 2^63 - 1, this keeps the check
            // sound whatever it lets through.
            if !at.kind.is_control() && so_far.saturating_add(at.payload_len) > self.max_message as u64 {
                self.consumed += at.header_len;
                self.skip = at.payload_len;
                self.fragments = None;
                return Some(Incoming::TooBig);
            }
            let available = self.input.len() - self.consumed;
            let total = at.header_len + at.payload_len as usize;
            if available < total {
                // Keep only the incomplete frame: room reserved behind messages already
                // handled would double the buffer whenever a read fills it, for a client that
                // merely keeps sending small frames faster than they are read.
                if self.consumed > 0 {
                    self.input.drain(..self.consumed);
                    self.consumed = 0;
                }
                // Make room for the next part of the frame so it is read in place. Not for the
                // whole frame: a client that announces 16 MiB and sends nothing more would make
                // the server hold that much for nothing. The buffer grows (doubling) with the
                // bytes that actually arrive.
                self.input.reserve((total - available).min(READ_CHUNK));
                return None;
            }
            let start = self.consumed + at.header_len;
            self.consumed += total;
            frame::unmask(&mut self.input[start..start + at.payload_len as usize], at.mask);
            match self.take(at, start) {
                Taken::Continue => continue,
                Taken::Message(Kind::Ping, Source::Input(payload)) => {
                    self.answer_ping(payload);
                    return Some(Incoming::Ping);
                }
                Taken::Message(kind, range) => return Some(self.message(kind, range)),
                Taken::Violation(v) => {
                    self.broken = true;
                    return Some(Incoming::Violation(v));
                }
            }
        }
    }

    /// Account for one unmasked frame whose payload starts at `start`.
    fn take(&mut self, at: FrameAt, start: usize) -> Taken {
        let payload = start..start + at.payload_len as usize;
        match at.kind {
            Kind::Close | Kind::Ping | Kind::Pong => Taken::Message(at.kind, Source::Input(payload)),
            Kind::Text | Kind::Binary if self.fragments.is_some() => {
                Taken::Violation(violation("a new message started inside a fragmented one"))
            }
            Kind::Text | Kind::Binary if at.fin => Taken::Message(at.kind, Source::Input(payload)),
            Kind::Text | Kind::Binary => {
                self.fragments = Some(Box::new((at.kind, self.input[payload].to_vec())));
                Taken::Continue
            }
            Kind::Continuation => {
                let Some(mut fragments) = self.fragments.take() else {
                    return Taken::Violation(violation("a continuation frame without a message to continue"));
                };
                fragments.1.extend_from_slice(&self.input[payload]);
                if !at.fin {
                    self.fragments = Some(fragments);
                    return Taken::Continue;
                }
                let (kind, so_far) = *fragments;
                self.assembled = so_far;
                Taken::Message(kind, Source::Assembled)
            }
        }
    }

    fn message(&self, kind: Kind, source: Source) -> Incoming<'_> {
        let bytes = match source {
            Source::Input(range) => &self.input[range],
            Source::Assembled => &self.assembled[..],
        };
        match kind {
            Kind::Text => match std::str::from_utf8(bytes) {
                Ok(t) => Incoming::Text(t),
                Err(_) => Incoming::NotUtf8,
            },
            Kind::Binary => Incoming::Binary(bytes),
            Kind::Ping => Incoming::Ping,
            Kind::Pong => Incoming::Pong,
            Kind::Close => Incoming::Close(frame::close_code(bytes)),
            Kind::Continuation => unreachable!("continuations are assembled into their message's kind"),
        }
    }

    /// Answer the ping whose payload is `payload`. While the client reads, every ping gets its
    /// pong, as the original's websocket library does. While the output is blocked the pong
    /// waits instead, replacing any earlier one still waiting: RFC 6455 5.5.3 lets an endpoint
    /// answer only the most recent of the pings it has not answered yet, and a client that
    /// pings without reading then grows nothing. The pings it sends meanwhile are counted
    /// ([`WsSocket::owed_pong_bytes`]).
    fn answer_ping(&mut self, payload: std::ops::Range<usize>) {
        if self.close_sent {
            return;
        }
        if !self.blocked {
            // At most one read's worth of pongs piles up here before the connection writes
            // (it writes once output reaches its eager-write size).
            if self.output.capacity() == 0 {
                self.output.reserve(WRITE_CHUNK);
            }
            frame::write_frame(&mut self.output, Kind::Pong, &self.input[payload]);
            return;
        }
        self.pings_while_blocked = self.pings_while_blocked.saturating_add(1);
        self.pong.clear();
        self.pong.extend_from_slice(&self.input[payload]);
        self.pong_pending = true;
    }

    /// What the pings received while the client was not reading would have queued, had each
    /// been answered: the connection counts it against its outbound limit, so a client that
    /// pings and never reads is closed as a slow consumer, as one sending requests would be.
    /// Zero once the output drains.
    pub fn owed_pong_bytes(&self) -> usize {
        self.pings_while_blocked as usize * OWED_PONG_BYTES
    }

    /// Queue a frame for writing.
    pub fn send(&mut self, kind: Kind, payload: &[u8]) {
        if self.output.capacity() == 0 {
            // Output is released whenever the connection goes quiet, so it starts over often:
            // one allocation for a typical burst instead of growing frame by frame.
            self.output.reserve(WRITE_CHUNK.max(payload.len() + 14));
        }
        if kind == Kind::Close {
            // Nothing follows a close: a pong still owed goes before it.
            if self.pong_pending {
                self.pong_pending = false;
                frame::write_frame(&mut self.output, Kind::Pong, &self.pong);
            }
            self.close_sent = true;
        }
        frame::write_frame(&mut self.output, kind, payload);
    }

    /// Bytes queued and not yet written (a pending pong included).
    pub fn unwritten(&self) -> usize {
        let pong = if self.pong_pending { 2 + self.pong.len() } else { 0 };
        self.output.len() - self.written + pong
    }

    /// Write (and flush) everything queued, then the pending pong, if any.
    pub fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while self.written < self.output.len() {
                let n = match Pin::new(&mut self.io).poll_write(cx, &self.output[self.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        self.blocked = true;
                        return Poll::Pending;
                    }
                };
                self.written += n;
            }
            self.output.clear();
            self.written = 0;
            // The client has taken everything before it: now the latest ping is answered.
            if !self.pong_pending {
                break;
            }
            self.pong_pending = false;
            frame::write_frame(&mut self.output, Kind::Pong, &self.pong);
        }
        self.blocked = false;
        self.pings_while_blocked = 0;
        // TLS keeps records until flushed; for plain TCP this is a no-op.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    /// Give back the buffers of a connection with nothing in flight.
    pub fn release_idle(&mut self) {
        if self.consumed == self.input.len() && self.input.capacity() > 0 {
            self.input = Vec::new();
            self.consumed = 0;
        }
        if self.output.is_empty() && self.output.capacity() > 0 {
            self.output = Vec::new();
        }
        if !self.pong_pending && self.pong.capacity() > 0 {
            self.pong = Vec::new();
        }
        if self.assembled.capacity() > 0 {
            self.assembled = Vec::new();
        }
    }
}

enum Source {
    Input(std::ops::Range<usize>),
    Assembled,
}

enum Taken {
    Continue,
    Message(Kind, Source),
    Violation(ProtocolViolation),
}

fn violation(reason: &'static str) -> ProtocolViolation {
    ProtocolViolation { code: 1002, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [7, 1, 9, 3];
        let mut out = vec![first];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn fill<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WsSocket<S>) -> bool {
        poll_fn(|cx| ws.poll_fill(cx)).await.unwrap()
    }

    #[tokio::test]
    async fn messages_split_across_reads_and_fragments() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut ws = WsSocket::new(server, &masked(0x81, b"pre"), 1024);
        assert_eq!(
            ws.next_message(),
            Some(Incoming::Text("pre")),
            "bytes read before the upgrade count"
        );
        assert_eq!(ws.next_message(), None);

        // One text message in two fragments with a ping between them, written byte by byte.
        let mut wire = masked(0x01, b"hel");
        wire.extend(masked(0x89, b"p"));
        wire.extend(masked(0x80, "lo ✓".as_bytes()));
        let mut seen = Vec::new();
        for b in wire {
            client.write_all(&[b]).await.unwrap();
            assert!(fill(&mut ws).await);
            while let Some(m) = ws.next_message() {
                seen.push(format!("{m:?}"));
            }
        }
        assert_eq!(seen, ["Ping", "Text(\"hello ✓\")"]);
        ws.release_idle();
        assert_eq!(ws.input.capacity(), 0, "an idle socket keeps no input buffer");

        client.write_all(&masked(0x88, &[0x03, 0xE8])).await.unwrap();
        fill(&mut ws).await;
        assert_eq!(ws.next_message(), Some(Incoming::Close(Some(1000))));
        drop(client);
        assert!(!fill(&mut ws).await, "end of stream");
    }

    #[tokio::test]
    async fn oversized_messages_are_refused_and_skipped() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut ws = WsSocket::new(server, &[], 100);
        let mut wire = masked(0x81, &[b'x'; 300]);
        wire.extend(masked(0x81, b"after"));
        client.write_all(&wire).await.unwrap();
        fill(&mut ws).await;
        assert_eq!(ws.next_message(), Some(Incoming::TooBig));
        // The next message is intact once the refused payload has been skipped.
        let next = loop {
            if let Some(m) = ws.next_message() {
                break format!("{m:?}");
            }
            fill(&mut ws).await;
        };
        assert_eq!(next, "Text(\"after\")");
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/ws_frame.rs`): a continuation announcing a length near
    /// 2^64 after a fragment overflowed the size check and the frame arithmetic, so that one
    /// client's frame panicked its connection task (or, with overflow checks, the addition).
    /// RFC 6455 §5.2 forbids lengths of 2^63 and more; they are a protocol violation.
    #[tokio::test]
    async fn lengths_past_2_pow_63_are_refused() {
        let mut wire = masked(0x01, b"0123456789");
        wire.extend_from_slice(&[0x80, 0x80 | 127]);
        wire.extend_from_slice(&(u64::MAX - 5).to_be_bytes());
        wire.extend_from_slice(&[1, 2, 3, 4]);
        wire.extend_from_slice(&[0; 32]);
        let mut ws = WsSocket::new(tokio::io::duplex(64).1, &wire, 100);
        assert!(matches!(ws.next_message(), Some(Incoming::Violation(v)) if v.code == 1002));
        assert_eq!(ws.next_message(), None);

        for len in [1u64 << 63, u64::MAX] {
            let mut wire = vec![0x82, 0x80 | 127];
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(&[1, 2, 3, 4]);
            let mut ws = WsSocket::new(tokio::io::duplex(64).1, &wire, 100);
            assert!(matches!(ws.next_message(), Some(Incoming::Violation(_))), "{len}");
        }
        // The largest length RFC 6455 allows is only too big.
        let mut wire = vec![0x82, 0x80 | 127];
        wire.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        wire.extend_from_slice(&[1, 2, 3, 4]);
        let mut ws = WsSocket::new(tokio::io::duplex(64).1, &wire, 100);
        assert_eq!(ws.next_message(), Some(Incoming::TooBig));
    }

    #[tokio::test]
    async fn violations_and_bad_text() {
        let (_client, server) = tokio::io::duplex(64);
        let mut ws = WsSocket::new(server, &[0x81, 0x01, b'a'], 100);
        assert!(
            matches!(ws.next_message(), Some(Incoming::Violation(v)) if v.code == 1002),
            "unmasked"
        );
        let mut ws = WsSocket::new(tokio::io::duplex(64).1, &masked(0x81, &[0xFF, 0xFE]), 100);
        assert_eq!(ws.next_message(), Some(Incoming::NotUtf8));
        let mut ws = WsSocket::new(tokio::io::duplex(64).1, &masked(0x80, b"x"), 100);
        assert!(matches!(ws.next_message(), Some(Incoming::Violation(_))), "continuation of nothing");
    }

    /// `poll_write_out` once, without waiting.
    fn write_once<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WsSocket<S>) -> Poll<io::Result<()>> {
        let waker = futures_util::task::noop_waker();
        ws.poll_write_out(&mut Context::from_waker(&waker))
    }

    #[tokio::test]
    async fn a_client_that_reads_gets_a_pong_for_every_ping() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut wire = Vec::new();
        for i in 0..3 {
            wire.extend(masked(0x89, &[b'0' + i]));
        }
        let mut ws = WsSocket::new(server, &wire, 1024);
        for _ in 0..3 {
            assert_eq!(ws.next_message(), Some(Incoming::Ping));
        }
        poll_fn(|cx| ws.poll_write_out(cx)).await.unwrap();
        let mut got = [0u8; 9];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x8A, 1, b'0', 0x8A, 1, b'1', 0x8A, 1, b'2']);
    }

    #[tokio::test]
    async fn pings_faster_than_the_client_reads_leave_one_pong() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut ws = WsSocket::new(server, &[], 1024);
        // The client's side holds 64 bytes: this reply fills it and the rest waits.
        ws.send(Kind::Text, &[b'r'; 200]);
        assert!(write_once(&mut ws).is_pending());
        assert_eq!(ws.owed_pong_bytes(), 0);
        let mut wire = Vec::new();
        for i in 0..1000 {
            wire.extend(masked(0x89, format!("ping {i}").as_bytes()));
        }
        let mut pings = 0;
        for chunk in wire.chunks(64) {
            ws.input.extend_from_slice(chunk);
            while let Some(m) = ws.next_message() {
                assert_eq!(m, Incoming::Ping);
                pings += 1;
            }
            assert!(write_once(&mut ws).is_pending(), "the client still reads nothing");
        }
        assert_eq!(pings, 1000);
        assert_eq!(ws.unwritten(), 204 - 64 + 2 + "ping 999".len(), "the reply's rest and one pong");
        assert_eq!(ws.owed_pong_bytes(), 1000 * OWED_PONG_BYTES, "what the pongs would have queued");

        // Once the client reads, the reply goes out, then one pong, for the latest ping.
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 2 + 2 + 200 + 2 + 8];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        poll_fn(|cx| ws.poll_write_out(cx)).await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(&got[..4], [0x81, 126, 0, 200]);
        assert_eq!(&got[204..], b"\x8A\x08ping 999");
        assert_eq!((ws.unwritten(), ws.owed_pong_bytes()), (0, 0), "drained: nothing owed");
        ws.release_idle();
        assert_eq!(ws.pong.capacity(), 0, "an idle socket keeps no pong buffer");
    }

    #[tokio::test]
    async fn a_pong_owed_goes_before_the_close_and_none_after() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut wire = masked(0x89, b"a");
        wire.extend(masked(0x89, b"b"));
        let mut ws = WsSocket::new(server, &wire, 1024);
        assert_eq!(ws.next_message(), Some(Incoming::Ping));
        ws.send(Kind::Close, &[0x03, 0xE8]);
        assert_eq!(ws.next_message(), Some(Incoming::Ping), "still read, but not answered");
        poll_fn(|cx| ws.poll_write_out(cx)).await.unwrap();
        drop(ws);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [0x8A, 1, b'a', 0x88, 2, 0x03, 0xE8]);
    }

    #[tokio::test]
    async fn an_announced_frame_reserves_room_only_for_what_arrives() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let len: usize = 16 << 20;
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(len as u64).to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 0]);
        let mut ws = WsSocket::new(server, &header, 32 << 20);
        assert_eq!(ws.next_message(), None);
        assert!(
            ws.input.capacity() <= 2 * READ_CHUNK,
            "a 16 MiB header alone reserved {} bytes",
            ws.input.capacity()
        );
        // The frame still arrives whole, however it is cut up.
        let body = vec![b'x'; len];
        let writer = tokio::spawn(async move {
            for part in body.chunks(100_000) {
                client.write_all(part).await.unwrap();
            }
            client
        });
        let got = loop {
            if let Some(m) = ws.next_message() {
                break match m {
                    Incoming::Text(t) => t.len(),
                    other => panic!("{other:?}"),
                };
            }
            assert!(
                ws.input.capacity() <= 2 * ws.input.len() + 2 * READ_CHUNK,
                "room follows the bytes that arrived"
            );
            assert!(fill(&mut ws).await);
        };
        assert_eq!(got, len);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_stream_of_small_frames_keeps_the_input_small() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut ws = WsSocket::new(server, &[], 1024);
        // 4 MiB of small frames in writes that end mid-frame, faster than they are read.
        let mut wire = Vec::new();
        while wire.len() < 4 << 20 {
            wire.extend(masked(0x82, b"12345"));
        }
        let writer = tokio::spawn(async move {
            for part in wire.chunks(100_003) {
                client.write_all(part).await.unwrap();
            }
            client
        });
        let mut frames = 0;
        let mut most = 0;
        while frames < (4 << 20) / 11 {
            assert!(fill(&mut ws).await);
            most = most.max(ws.input.capacity());
            while let Some(m) = ws.next_message() {
                assert_eq!(m, Incoming::Binary(b"12345"));
                frames += 1;
            }
        }
        assert!(most <= 4 * READ_CHUNK, "the input buffer grew to {most} bytes");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn output_is_written_then_released() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut ws = WsSocket::new(server, &[], 100);
        ws.send(Kind::Text, b"hi");
        ws.send(Kind::Pong, b"");
        assert_eq!(ws.unwritten(), 6);
        poll_fn(|cx| ws.poll_write_out(cx)).await.unwrap();
        assert_eq!(ws.unwritten(), 0);
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x81, 2, b'h', b'i', 0x8A, 0]);
        ws.release_idle();
        assert_eq!(ws.output.capacity(), 0);
    }
}
