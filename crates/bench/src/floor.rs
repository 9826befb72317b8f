//! The floor server: what serving a happn client costs on this machine with no happn work at all.
//!
//! A minimal websocket server on plain tokio: it reads the HTTP upgrade, answers it, then reads
//! whatever the socket has, unmasks every complete frame in it, answers each text frame with a
//! canned happn-shaped reply (the request's `eventId` and `path` copied in), and writes all the
//! replies to one read in one write. No JSON parsing, no store, no sessions, no queue between
//! tasks: what is left is the kernel's socket work, the runtime's wake-ups and the framing, the
//! part of every request that no server can avoid. A happn server's CPU per request divided by
//! this one's, under the same load in the same run, is how much of its cost is its own.
//!
//! The replies have the shape (and about the size) of happn 2.21's, so every load runs against
//! it unchanged, the npm client included: `describe` and `login` (password or token) answer as a
//! secure server does, `set` and `get` with a 64-byte document and the full `_meta`, any other
//! action (`on`, `off`, `configure-session`, …) with an empty `ok`. Primus heartbeats
//! (`"primus::ping::<t>"`) are answered; websocket pings get pongs; a close is echoed.
//! Everything is bounded: a request head of 8 KiB, a frame of 1 MiB, one read buffer per socket.

use crate::conn::BoxError;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const MAX_HEAD: usize = 8 * 1024;
const MAX_FRAME: usize = 1024 * 1024;
/// Bytes read per `read` call at most.
const READ_CHUNK: usize = 16 * 1024;

/// `floor-server`: listen on `listen` until killed; prints the address.
pub async fn serve(listen: &str) -> Result<(), BoxError> {
    let listener = TcpListener::bind(listen).await?;
    println!("floor server listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors (or similar): back off a little rather than spin.
                eprintln!("floor server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = connection(stream).await;
        });
    }
}

async fn connection(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut input = handshake(&mut s).await?;
    let mut out = Vec::new();
    let mut open = answer(&mut input, &mut [], &mut out)?;
    loop {
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
            if out.capacity() > READ_CHUNK {
                out = Vec::new();
            }
        }
        if !open {
            return Ok(());
        }
        s.readable().await?;
        open = match read_and_answer(&s, &mut input, &mut out) {
            Ok(open) => open,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => return Err(e),
        };
    }
}

/// One read through a buffer on the stack (so an idle connection holds none), then the answers
/// to every complete frame in it. `Ok(false)`: the peer closed.
fn read_and_answer(s: &TcpStream, input: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; READ_CHUNK];
    let n = s.try_read(&mut chunk)?;
    if n == 0 {
        return Ok(false);
    }
    answer(input, &mut chunk[..n], out)
}

/// Answer every complete frame of `input` followed by `fresh`; what is incomplete stays in
/// `input`. `Ok(false)` after a close frame.
fn answer(input: &mut Vec<u8>, fresh: &mut [u8], out: &mut Vec<u8>) -> io::Result<bool> {
    if input.is_empty() {
        let used = answer_frames(fresh, out)?;
        let Some(used) = used else { return Ok(false) };
        input.extend_from_slice(&fresh[used..]);
    } else {
        input.extend_from_slice(fresh);
        let used = answer_frames(input, out)?;
        let Some(used) = used else { return Ok(false) };
        input.drain(..used);
        if input.is_empty() {
            *input = Vec::new();
        }
    }
    if input.len() > MAX_FRAME + 14 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
    }
    Ok(true)
}

/// Answers the complete frames at the start of `buf`; the bytes they took, or `None` after a
/// close frame (echoed).
fn answer_frames(buf: &mut [u8], out: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut at = 0;
    while let Some((opcode, start, end)) = next_frame(&mut buf[at..])? {
        let payload = &buf[at + start..at + end];
        match opcode {
            0x1 => reply(payload, out),
            0x8 => {
                write_frame(out, 0x8, payload);
                return Ok(None);
            }
            0x9 => write_frame(out, 0xA, payload),
            _ => {} // binary, pong: nothing to answer
        }
        at += end;
    }
    Ok(Some(at))
}

/// Read the upgrade request, answer it; returns the bytes read past the request head.
async fn handshake(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too long"));
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let key = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    });
    let Some(key) = key else {
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a websocket upgrade"));
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    s.write_all(response.as_bytes()).await?;
    Ok(head[end..].to_vec())
}

/// The next complete frame at the start of `buf`, unmasked in place: (opcode, payload start,
/// payload end = frame end). `None` while incomplete. Fragmented messages are refused: no
/// happn client sends them.
fn next_frame(buf: &mut [u8]) -> io::Result<Option<(u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (fin, opcode, masked) = (buf[0] & 0x80 != 0, buf[0] & 0x0F, buf[1] & 0x80 != 0);
    if !fin || opcode == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "fragmented message"));
    }
    let (len, mut at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize, 10),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
    }
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        at += 4;
        Some([buf[at - 4], buf[at - 3], buf[at - 2], buf[at - 1]])
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    if let Some(m) = mask {
        for (i, b) in buf[at..at + len].iter_mut().enumerate() {
            *b ^= m[i & 3];
        }
    }
    Ok(Some((opcode, at, at + len)))
}

/// An unmasked server frame.
fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// A fixed session id and token, as a happn 2.21 login reply carries them.
const SESSION: &str = "134d9b16-b90b-43e4-b9f1-fe41df9add6a";
const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.ImlkfDEzNGQ5YjE2LWI5MGItNDNlNC1iOWYxLWZlNDFkZjlhZGQ2YXx0eXBlfHRpbWVzdGFtcHxpbmZvfF9icm93c2VyfHBvbGljeXwwfHR0bHxpbmFjdGl2aXR5X3RocmVzaG9sZHwxfHBlcm1pc3Npb25TZXRLZXl8L19BRE1JTi98aXNUb2tlbnx1c2VybmFtZXxfQURNSU5eMHxNV1hFMEhYOXwwfDBeXiQwfDF8MnxHfDN8SHw0fCQ1fC0yXXw2fCQ3fCQ4fEl8OXwtM118QXwkOHxKfDl8LTNdXXxCfEN8RHwtMXxFfEZdIg.HgRcKaJj_PCIxnvklS2aH-SXEb9gbffmrcqZv1C8l2A";
/// The document set and get replies carry: the 64-byte body the bench loads write.
const DOC: &str = r#"{"v":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

/// The canned reply to one text frame, framed, appended to `out`.
fn reply(req: &[u8], out: &mut Vec<u8>) {
    let Ok(text) = std::str::from_utf8(req) else { return };
    if let Some(rest) = text.strip_prefix("\"primus::ping::") {
        let mut pong = String::with_capacity(text.len());
        pong.push_str("\"primus::pong::");
        pong.push_str(rest);
        write_frame(out, 0x1, pong.as_bytes());
        return;
    }
    let action = string_field(text, "\"action\":\"").unwrap_or("");
    let id = number_field(text, "\"eventId\":").unwrap_or("0");
    let path = string_field(text, "\"path\":\"").unwrap_or("");
    let body = match action {
        "describe" => format!(
            r#"{{"data":{{"name":"floor","secure":true,"encryptPayloads":false,"publicKey":"AtTjgajVCQhNPzaWrQkCzls0HgfS4N4MoilCkyHnwDHa"}},"_meta":{{"type":"response","status":"ok","published":false,"eventId":{id},"action":"describe"}},"protocol":"1.1.0"}}"#
        ),
        "login" => format!(
            r#"{{"data":{{"id":"{SESSION}","token":"{TOKEN}","timestamp":1795687566525,"info":{{"_browser":false,"_local":false,"happn":{{"name":"floor"}}}},"index":0,"type":1,"user":{{"username":"_ADMIN"}}}},"_meta":{{"type":"response","status":"ok","published":false,"eventId":{id},"action":"login"}},"protocol":"1.1.0"}}"#
        ),
        "set" => format!(
            r#"{{"data":{DOC},"_meta":{{"created":1795687569295,"modified":1795687569295,"path":"{path}","type":"response","status":"ok","published":true,"eventId":{id},"sessionId":"{SESSION}","action":"/SET@{path}"}},"protocol":"1.1.0"}}"#
        ),
        "get" => format!(
            r#"{{"data":{DOC},"_meta":{{"created":1795687569295,"modified":1795687569295,"path":"{path}","type":"response","status":"ok","published":false,"eventId":{id},"sessionId":"{SESSION}","action":"get"}},"protocol":"1.1.0"}}"#
        ),
        other => format!(
            r#"{{"data":{{}},"_meta":{{"status":"ok","type":"response","published":false,"eventId":{id},"sessionId":"{SESSION}","action":"{other}"}},"protocol":"1.1.0"}}"#
        ),
    };
    write_frame(out, 0x1, body.as_bytes());
}

/// The characters of a string value after `key` (up to the next quote: the loads' actions and
/// paths hold no escapes; one that does is cut short, which only changes the canned text).
fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    let end = rest.find(['"', '\\'])?;
    Some(&rest[..end])
}

/// The digits of a number value after `key`.
fn number_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    #[test]
    fn reads_masked_frames_and_waits_for_incomplete_ones() {
        let long = vec![b'a'; 300];
        let mut buf = masked(1, b"hello");
        buf.extend(masked(1, &long));
        let (op, s, e) = next_frame(&mut buf).unwrap().unwrap();
        assert_eq!((op, &buf[s..e]), (1, &b"hello"[..]));
        let mut rest = buf[e..].to_vec();
        let (op, s, e2) = next_frame(&mut rest).unwrap().unwrap();
        assert_eq!((op, &rest[s..e2]), (1, &long[..]));
        let mut part = masked(1, &long)[..100].to_vec();
        assert!(next_frame(&mut part).unwrap().is_none());
        let mut fragment = masked(1, b"x");
        fragment[0] &= 0x7F;
        assert!(next_frame(&mut fragment).is_err());
    }

    #[test]
    fn replies_copy_event_id_and_path() {
        let mut out = Vec::new();
        reply(
            br#"{"action":"set","eventId":4711,"path":"/bench/set/7","data":{"v":"x"}}"#,
            &mut out,
        );
        let text = std::str::from_utf8(&out[4..]).unwrap();
        assert_eq!(out[0], 0x81);
        assert_eq!(crate::conn::event_id(text), Some(4711));
        assert!(text.contains(r#""path":"/bench/set/7""#) && text.contains(r#""action":"/SET@/bench/set/7""#));
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["_meta"]["status"], "ok");

        out.clear();
        reply(br#""primus::ping::123""#, &mut out);
        assert_eq!(&out[2..], br#""primus::pong::123""#);

        out.clear();
        reply(br#"{"action":"login","eventId":2,"data":{"token":"t"}}"#, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out[4..]).unwrap();
        assert_eq!((v["data"]["id"].as_str(), v["_meta"]["eventId"].as_u64()), (Some(SESSION), Some(2)));
    }
}
