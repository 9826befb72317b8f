//! The websocket frame reader (`crates/server/src/websocket`): a header parser (tungstenite's,
//! plus the server's checks) and a socket that frames, unmasks and reassembles messages in buffers
//! it owns. Checked against an independent reading of RFC 6455 written here:
//!
//! * `parse_header` on any bytes agrees with the reference header reader: the same "incomplete",
//!   the same refusal, or the same fin / opcode / header length / payload length / mask;
//! * the socket, fed the bytes in chunks of a size the input chooses (the first chunk as the bytes
//!   read before the upgrade), hands out exactly the messages the reference reader finds in the
//!   whole stream at once, with lengths counted in `u128` so no sum can wrap;
//! * frames the server writes read back (kind, fin, payload), and close payloads keep their code.
//!
//! Input: byte 0 picks the message size limit and the chunk size, the rest is the wire.
#![no_main]

use happn_rs::fuzzing::frame::{self, Kind};
use happn_rs::fuzzing::{Incoming, WsSocket};
use libfuzzer_sys::fuzz_target;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const LIMITS: [usize; 8] = [0, 1, 7, 125, 126, 300, 4096, 70_000];

fuzz_target!(|data: &[u8]| {
    let Some((&config, wire)) = data.split_first() else {
        return;
    };
    let max_message = LIMITS[(config & 7) as usize];
    // 1..=31 bytes per read, or everything in one read.
    let chunk = match config >> 3 {
        0 => wire.len().max(1),
        n => n as usize,
    };

    check_header(wire);
    let expected = reference_messages(wire, max_message);
    let got = socket_messages(wire, chunk, max_message);
    assert_eq!(got, expected, "limit {max_message}, chunks of {chunk}");
    check_writes(wire);
});

/// What a header reader can answer, in a form both readers produce.
#[derive(Debug, PartialEq)]
enum Header {
    Incomplete,
    Refused,
    Frame {
        fin: bool,
        opcode: u8,
        header_len: usize,
        payload_len: u64,
        mask: Option<[u8; 4]>,
    },
}

/// RFC 6455 §5.2, read straight from the text. `client`: the rules for frames a server receives
/// (masked, no extension bits); otherwise any well-formed frame (to read the server's own frames).
fn reference_header(buf: &[u8], client: bool) -> Header {
    if buf.len() < 2 {
        return Header::Incomplete;
    }
    let (b0, b1) = (buf[0], buf[1]);
    let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Header::Incomplete,
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().unwrap()), 10),
            None => return Header::Incomplete,
        },
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let Some(m) = buf.get(at..at + 4) else {
            return Header::Incomplete;
        };
        at += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    let control = opcode & 0x08 != 0;
    let refused = !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10)
        // "the most significant bit MUST be 0"
        || payload_len >> 63 != 0
        // control frames: final, at most 125 bytes
        || (control && (!fin || payload_len > 125))
        || (client && (rsv != 0 || !masked));
    if refused {
        return Header::Refused;
    }
    Header::Frame {
        fin,
        opcode,
        header_len: at,
        payload_len,
        mask,
    }
}

fn opcode_of(kind: Kind) -> u8 {
    match kind {
        Kind::Continuation => 0,
        Kind::Text => 1,
        Kind::Binary => 2,
        Kind::Close => 8,
        Kind::Ping => 9,
        Kind::Pong => 10,
    }
}

fn check_header(wire: &[u8]) {
    let ours = match frame::parse_header(wire) {
        Ok(None) => Header::Incomplete,
        Err(v) => {
            assert_eq!(v.code, 1002);
            Header::Refused
        }
        Ok(Some(at)) => Header::Frame {
            fin: at.fin,
            opcode: opcode_of(at.kind),
            header_len: at.header_len,
            payload_len: at.payload_len,
            mask: Some(at.mask),
        },
    };
    assert_eq!(ours, reference_header(wire, true), "header of {:02x?}", &wire[..wire.len().min(14)]);
}

/// A message as both readers report it, owned.
#[derive(Debug, PartialEq)]
enum Message {
    Text(String),
    Binary(Vec<u8>),
    /// A ping (the socket answers it itself; its payload comes back in the pong, which the
    /// socket's unit tests check).
    Ping,
    Pong,
    Close(Option<u16>),
    TooBig,
    NotUtf8,
    Violation,
}

impl From<Incoming<'_>> for Message {
    fn from(m: Incoming<'_>) -> Message {
        match m {
            Incoming::Text(t) => Message::Text(t.to_owned()),
            Incoming::Binary(b) => Message::Binary(b.to_vec()),
            Incoming::Ping => Message::Ping,
            Incoming::Pong => Message::Pong,
            Incoming::Close(code) => Message::Close(code),
            Incoming::TooBig => Message::TooBig,
            Incoming::NotUtf8 => Message::NotUtf8,
            Incoming::Violation(v) => {
                assert_eq!(v.code, 1002);
                Message::Violation
            }
        }
    }
}

/// The messages in a whole stream, frame by frame, as RFC 6455 and the server's size limit say.
fn reference_messages(wire: &[u8], max_message: usize) -> Vec<Message> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut fragments: Option<(u8, Vec<u8>)> = None;
    loop {
        let Header::Frame {
            fin,
            opcode,
            header_len,
            payload_len,
            mask,
        } = (match reference_header(&wire[at..], true) {
            Header::Incomplete => return out,
            Header::Refused => {
                out.push(Message::Violation);
                return out;
            }
            h => h,
        })
        else {
            unreachable!()
        };
        let control = opcode & 0x08 != 0;
        let so_far = fragments.as_ref().map_or(0, |(_, f)| f.len()) as u128;
        if !control && so_far + u128::from(payload_len) > max_message as u128 {
            // Refused; its payload is skipped as it arrives, and the stream goes on after it.
            out.push(Message::TooBig);
            fragments = None;
            let end = at as u128 + header_len as u128 + u128::from(payload_len);
            if end > wire.len() as u128 {
                return out;
            }
            at = end as usize;
            continue;
        }
        let end = at as u128 + header_len as u128 + u128::from(payload_len);
        if end > wire.len() as u128 {
            return out;
        }
        let mask = mask.unwrap();
        let payload: Vec<u8> = wire[at + header_len..end as usize]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        at = end as usize;
        let whole = |opcode: u8, bytes: Vec<u8>| match opcode {
            1 => String::from_utf8(bytes).map_or(Message::NotUtf8, Message::Text),
            _ => Message::Binary(bytes),
        };
        match opcode {
            8 => out.push(Message::Close(frame::close_code(&payload))),
            9 => out.push(Message::Ping),
            10 => out.push(Message::Pong),
            1 | 2 if fragments.is_some() => {
                out.push(Message::Violation);
                return out;
            }
            1 | 2 if fin => out.push(whole(opcode, payload)),
            1 | 2 => fragments = Some((opcode, payload)),
            0 => match fragments.take() {
                None => {
                    out.push(Message::Violation);
                    return out;
                }
                Some((kind, mut so_far)) => {
                    so_far.extend_from_slice(&payload);
                    if fin {
                        out.push(whole(kind, so_far));
                    } else {
                        fragments = Some((kind, so_far));
                    }
                }
            },
            _ => unreachable!("refused above"),
        }
    }
}

/// A client that sends `wire` in reads of `chunk` bytes, then closes; what it is sent is dropped.
struct Chunked<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.rest.len()).min(buf.remaining());
        buf.put_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chunked<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn socket_messages(wire: &[u8], chunk: usize, max_message: usize) -> Vec<Message> {
    let (preread, rest) = wire.split_at(chunk.min(wire.len()));
    let mut ws = WsSocket::new(Chunked { rest, chunk }, preread, max_message);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    // Every read but the last brings at least one byte, so this ends.
    loop {
        while let Some(m) = ws.next_message() {
            let m = Message::from(m);
            let stop = m == Message::Violation;
            out.push(m);
            if stop {
                // A broken stream hands out nothing more, whatever arrives.
                let _ = ws.poll_fill(&mut cx);
                assert!(ws.next_message().is_none());
                return out;
            }
        }
        match ws.poll_fill(&mut cx) {
            Poll::Ready(Ok(true)) => {}
            Poll::Ready(Ok(false)) => return out,
            other => panic!("an in-memory read answered {other:?}"),
        }
        ws.release_idle();
    }
}

/// Server frames and close payloads read back.
fn check_writes(wire: &[u8]) {
    const KINDS: [Kind; 6] = [Kind::Continuation, Kind::Text, Kind::Binary, Kind::Close, Kind::Ping, Kind::Pong];
    let kind = KINDS[wire.first().map_or(0, |b| *b as usize % 6)];
    let payload = &wire[..wire.len().min(if kind.is_control() { 125 } else { 70_000 })];
    let mut out = vec![0xAA];
    frame::write_frame(&mut out, kind, payload);
    match reference_header(&out[1..], false) {
        Header::Frame {
            fin: true,
            opcode,
            header_len,
            payload_len,
            mask: None,
        } => {
            assert_eq!(opcode, opcode_of(kind));
            assert_eq!(payload_len, payload.len() as u64);
            assert_eq!(&out[1 + header_len..], payload);
            // The shortest length encoding, as RFC 6455 requires.
            let shortest = match payload.len() {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(header_len, shortest);
        }
        other => panic!("the server wrote {other:?}"),
    }
    if wire.len() >= 2 {
        let code = u16::from_be_bytes([wire[0], wire[1]]);
        let reason = String::from_utf8_lossy(&wire[2..]);
        let close = frame::close_payload(code, &reason);
        assert!(close.len() <= 125, "a close payload fits a control frame");
        assert!(
            std::str::from_utf8(&close[2..]).is_ok(),
            "the reason is cut on a character boundary"
        );
        assert!(reason.as_bytes().starts_with(&close[2..]));
        if frame::close_code(&code.to_be_bytes()).is_some() {
            assert_eq!(frame::close_code(&close), Some(code));
        }
    }
}
