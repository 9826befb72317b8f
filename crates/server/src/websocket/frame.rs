//! RFC 6455 frames, server side: client frames in (always masked), server frames out (never
//! masked). Header parsing and formatting are tungstenite's; this module adds what a connection
//! that owns its buffers needs around them: a frame located in a byte slice, unmasking in place,
//! and headers written straight into an output buffer.

use std::io::Cursor;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// What a complete frame at the start of a buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    pub fin: bool,
    pub kind: Kind,
    /// Header bytes before the payload.
    pub header_len: usize,
    pub payload_len: u64,
    pub mask: [u8; 4],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Kind {
    pub fn is_control(self) -> bool {
        matches!(self, Kind::Close | Kind::Ping | Kind::Pong)
    }
}

/// A frame no server may accept; the connection closes with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolViolation {
    pub code: u16,
    pub reason: &'static str,
}

const PROTOCOL_ERROR: u16 = 1002;

/// The largest payload length a frame may announce: a 64-bit length with its top bit clear.
pub const MAX_PAYLOAD_LEN: u64 = u64::MAX >> 1;

fn violation(reason: &'static str) -> ProtocolViolation {
    ProtocolViolation {
        code: PROTOCOL_ERROR,
        reason,
    }
}

/// The header at the start of `buf`: `Ok(None)` while it is incomplete. The payload may still be
/// partly missing; the caller checks `header_len + payload_len` against what it has.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameAt>, ProtocolViolation> {
    let mut cursor = Cursor::new(buf);
    let (header, payload_len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(_) => return Err(violation("malformed frame header")),
    };
    // No extension is negotiated, so reserved bits must be clear.
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(violation("reserved bits set without an extension"));
    }
    let kind = match header.opcode {
        OpCode::Data(Data::Continue) => Kind::Continuation,
        OpCode::Data(Data::Text) => Kind::Text,
        OpCode::Data(Data::Binary) => Kind::Binary,
        OpCode::Control(Control::Close) => Kind::Close,
        OpCode::Control(Control::Ping) => Kind::Ping,
        OpCode::Control(Control::Pong) => Kind::Pong,
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => return Err(violation("reserved opcode")),
    };
    // RFC 6455 §5.2: "the most significant bit MUST be 0". tungstenite reads all 64 bits; a
    // length past 2^63 would overflow the sums the socket makes with it (found by fuzzing).
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(violation("payload length of 2^63 or more"));
    }
    if kind.is_control() && (!header.is_final || payload_len > 125) {
        return Err(violation("control frames must be final and at most 125 bytes"));
    }
    // RFC 6455 5.1: a server closes the connection on an unmasked client frame.
    let Some(mask) = header.mask else {
        return Err(violation("client frames must be masked"));
    };
    Ok(Some(FrameAt {
        fin: header.is_final,
        kind,
        header_len: cursor.position() as usize,
        payload_len,
        mask,
    }))
}

/// Undo the client's masking in place.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    // Eight bytes at a time: the mask repeats every four bytes, so a doubled mask XORs whole
    // words; the tail goes byte by byte.
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("chunks of eight")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Append a final, unmasked server frame of `kind` carrying `payload`.
pub fn write_frame(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    let opcode = match kind {
        Kind::Continuation => OpCode::Data(Data::Continue),
        Kind::Text => OpCode::Data(Data::Text),
        Kind::Binary => OpCode::Data(Data::Binary),
        Kind::Close => OpCode::Control(Control::Close),
        Kind::Ping => OpCode::Control(Control::Ping),
        Kind::Pong => OpCode::Control(Control::Pong),
    };
    let header = FrameHeader {
        is_final: true,
        opcode,
        ..FrameHeader::default()
    };
    out.reserve(header.len(payload.len() as u64) + payload.len());
    header.format(payload.len() as u64, out).expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
}

/// A close frame's payload: the status code, then the reason (cut to fit the 125-byte limit).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// The status code of a client's close frame, if it carries a valid one (to echo it back).
pub fn close_code(payload: &[u8]) -> Option<u16> {
    let code = u16::from_be_bytes(payload.get(..2)?.try_into().ok()?);
    CloseCode::from(code).is_allowed().then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a websocket client library would send it.
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn parses_and_unmasks_client_frames_of_every_length_format() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut bytes = client_frame(0x81, &payload, [1, 2, 3, 4]);
            let at = parse_header(&bytes).unwrap().unwrap();
            assert_eq!((at.fin, at.kind, at.payload_len), (true, Kind::Text, len as u64));
            let body = &mut bytes[at.header_len..];
            unmask(body, at.mask);
            assert_eq!(body, &payload[..], "length {len}");
            // Any prefix shorter than the header is "not yet".
            assert_eq!(parse_header(&bytes[..at.header_len - 1]).unwrap(), None);
        }
    }

    #[test]
    fn refuses_what_a_server_must_refuse() {
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(parse_header(&unmasked).unwrap_err().code, 1002);
        let rsv = client_frame(0xC1, b"a", [0; 4]);
        assert!(parse_header(&rsv).is_err());
        let reserved_opcode = client_frame(0x83, b"a", [0; 4]);
        assert!(parse_header(&reserved_opcode).is_err());
        let fragmented_ping = client_frame(0x09, b"a", [0; 4]);
        assert!(parse_header(&fragmented_ping).is_err());
        let long_ping = client_frame(0x89, &[0; 126], [0; 4]);
        assert!(parse_header(&long_ping).is_err());
        // A 64-bit length with its top bit set (found by fuzzing: tungstenite accepts it).
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        assert!(parse_header(&huge).is_err());
        huge[2] = 0x7F;
        assert_eq!(parse_header(&huge).unwrap().unwrap().payload_len, 0x7F << 56);
    }

    #[test]
    fn server_frames_are_unmasked_and_sized() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            write_frame(&mut out, Kind::Text, &vec![b'x'; len]);
            let header_len = match len {
                n if n < 126 => 2,
                n if n < 65536 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header_len + len);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "server frames carry no mask");
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(close_payload(1009, "big"), [0x03, 0xF1, b'b', b'i', b'g']);
        assert_eq!(close_payload(1000, &"é".repeat(100)).len(), 2 + 122, "cut on a character boundary");
        assert_eq!(close_code(&[0x03, 0xE8]), Some(1000));
        assert_eq!(close_code(&[0x03]), None);
        assert_eq!(close_code(&[0x00, 0x05]), None, "not a valid code");
    }
}
