//! The hand-written request envelope scanner (`crates/protocol/src/scan.rs`) and the streaming
//! serde decoder behind it, against serde_json's `Value` as the oracle: for any text, the three
//! ways a frame can be read give the same request (same fields, same key order inside them) or
//! the same error, down to serde_json's error message and position.
//!
//! * `decode_request`: the scanner, falling back to the streaming decoder;
//! * `decode_request_without_scanner`: the streaming decoder alone;
//! * the oracle: `serde_json::from_str::<Value>` (via `decode_frame`) then `Request::parse`.
#![no_main]

use happn_protocol::frame::{decode_request_without_scanner, scanner_reads};
use happn_protocol::{decode_frame, decode_request, Decoded, Frame, Request};
use libfuzzer_sys::fuzz_target;

fn oracle(text: &str) -> Decoded {
    match decode_frame(text) {
        Frame::Control(c) => Decoded::Control(c),
        Frame::Message(v) => Decoded::Request(Request::parse(v)),
        Frame::Invalid(e) => Decoded::Invalid(e),
    }
}

fuzz_target!(|data: &[u8]| {
    // Websocket text frames are checked to be UTF-8 before they are decoded.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let expected = oracle(text);
    let fast = decode_request(text);
    let streaming = decode_request_without_scanner(text);
    assert_eq!(fast, expected, "scanner path, frame {text:?}");
    assert_eq!(streaming, expected, "streaming path, frame {text:?}");
    // `PartialEq` on maps ignores key order; `Debug` shows it.
    let expected_debug = format!("{expected:?}");
    assert_eq!(format!("{fast:?}"), expected_debug, "scanner path key order, frame {text:?}");
    assert_eq!(format!("{streaming:?}"), expected_debug, "streaming path key order, frame {text:?}");
    if scanner_reads(text) {
        // What the scanner accepts is always a request object (never invalid JSON).
        assert!(matches!(fast, Decoded::Request(_)), "scanner read {text:?} as {fast:?}");
    }
});
