//! Primus framing: every websocket text frame is one JSON value. Primus control messages are
//! JSON *strings* (`"primus::ping::<n>"`); everything else is a happn message.

use crate::request::{Request, RequestError};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Client heartbeat; the payload is echoed back in the pong.
    Ping(String),
    /// `"primus::id::"`: the client asks for its spark id.
    Id,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Control(Control),
    /// Any other JSON value, for happn to handle (including non-objects, which it rejects).
    Message(Value),
    /// Not JSON at all: the original logs and drops it, with no reply.
    Invalid(String),
}

/// Decode one text frame.
pub fn decode_frame(text: &str) -> Frame {
    // Fast path: control strings are short JSON strings starting with "primus::.
    if let Some(rest) = text.strip_prefix("\"primus::") {
        if let Ok(Value::String(s)) = serde_json::from_str::<Value>(text) {
            if let Some(n) = s.strip_prefix("primus::ping::") {
                return Frame::Control(Control::Ping(n.to_string()));
            }
            if s == "primus::id::" {
                return Frame::Control(Control::Id);
            }
            // Unknown primus:: strings reach happn, which answers "Unknown request action".
            return Frame::Message(Value::String(s));
        }
        let _ = rest;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Frame::Message(v),
        Err(e) => Frame::Invalid(e.to_string()),
    }
}

/// A text frame decoded for a connection without payload encryption: control messages as
/// [`decode_frame`] gives them, anything else already parsed as a request.
// The request is boxed as it is built; only the (rare) error variant is large.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Control(Control),
    /// A JSON value, parsed as by [`Request::parse`] (non-objects are `Err(NotAnObject)`).
    Request(Result<Box<Request>, RequestError>),
    /// Not JSON: serde_json's error text, as in [`Frame::Invalid`].
    Invalid(String),
}

/// Same result as `decode_frame(text)` followed by `Request::parse` on a `Frame::Message`,
/// without building a `Value` map for the envelope. Encrypted payloads still need the `Value`
/// path, since the request is inside the envelope.
pub fn decode_request(text: &str) -> Decoded {
    decode_request_with(text, true)
}

/// [`decode_request`] without the hand-written envelope scanner: every object goes through
/// serde_json. Only for the fuzz target (`fuzz/fuzz_targets/envelope_scanner.rs`), which checks
/// that the scanner, this path and the `Value` path give the same answer for any text.
#[doc(hidden)]
pub fn decode_request_without_scanner(text: &str) -> Decoded {
    decode_request_with(text, false)
}

/// Whether the hand-written envelope scanner reads `text` itself (rather than leaving it to
/// serde_json). Only for the fuzz target, to count how often the scanner's own path is taken.
#[doc(hidden)]
pub fn scanner_reads(text: &str) -> bool {
    crate::scan::read_simple_envelope(text, &mut crate::request::Envelope::empty())
}

#[inline(always)]
fn decode_request_with(text: &str, use_scanner: bool) -> Decoded {
    // Control strings take decode_frame's route: it alone decides what counts as one (only an
    // unescaped `"primus::` at the very start), and they are tiny, so nothing is saved here.
    if text.starts_with("\"primus::") {
        return match decode_frame(text) {
            Frame::Control(c) => Decoded::Control(c),
            Frame::Message(v) => Decoded::Request(Request::parse(v)),
            Frame::Invalid(e) => Decoded::Invalid(e),
        };
    }
    match crate::request::parse_request_str_with(text, use_scanner) {
        Ok(r) => Decoded::Request(r),
        Err(e) => Decoded::Invalid(e.to_string()),
    }
}

/// A Primus control string as a frame (`"primus::pong::<n>"` etc.), JSON-encoded.
pub fn encode_control(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Both Primus encoders write U+2028/U+2029 as `\u2028`/`\u2029` escapes. serde_json leaves them
/// raw; JSON allows either, but we match the reference byte for byte.
pub fn escape_line_separators(mut s: String) -> String {
    // Both characters start with the byte 0xE2 in UTF-8: one memchr pass finds out whether
    // there is anything to do (almost never).
    if memchr::memchr(0xE2, s.as_bytes()).is_some() && s.contains(['\u{2028}', '\u{2029}']) {
        s = s.replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_strings() {
        assert_eq!(decode_frame("\"primus::ping::123\""), Frame::Control(Control::Ping("123".into())));
        assert_eq!(decode_frame("\"primus::id::\""), Frame::Control(Control::Id));
        assert_eq!(
            decode_frame("\"primus::bogus::x\""),
            Frame::Message(Value::String("primus::bogus::x".into()))
        );
        assert_eq!(encode_control("primus::pong::5"), "\"primus::pong::5\"");
    }

    #[test]
    fn invalid_and_values() {
        assert!(matches!(decode_frame("{not json"), Frame::Invalid(_)));
        assert_eq!(decode_frame("null"), Frame::Message(Value::Null));
        assert_eq!(decode_frame("[1]"), Frame::Message(serde_json::json!([1])));
    }

    /// The reference: the `Value` path the fast one must agree with.
    fn slow(text: &str) -> Decoded {
        match decode_frame(text) {
            Frame::Control(c) => Decoded::Control(c),
            Frame::Message(v) => Decoded::Request(Request::parse(v)),
            Frame::Invalid(e) => Decoded::Invalid(e),
        }
    }

    fn nested(open: &str, close: &str, depth: usize, inner: &str) -> String {
        format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
    }

    fn corpus() -> Vec<String> {
        let fixed = [
            // Every action, as the 2.21 client sends them.
            r#"{"action":"describe","eventId":1,"protocol":"1.1.0"}"#,
            r#"{"action":"login","eventId":2,"data":{"username":"_ADMIN","password":"happn","info":{}},"options":{"timeout":30000},"protocol":"1.1.0"}"#,
            r#"{"action":"request-nonce","eventId":3,"data":{"username":"u","publicKey":"AjC"},"protocol":"1.1.0"}"#,
            r#"{"action":"get","eventId":4,"path":"/a/*","data":null,"sessionId":"s1","options":{"criteria":{"x":{"$gt":1}},"sort":{"a":-1}},"protocol":"1.1.0"}"#,
            r#"{"action":"set","eventId":5,"path":"/a/b","data":{"x":1,"y":[true,false,null],"z":"w"},"sessionId":"s1","options":{"merge":true,"timeout":20000},"protocol":"1.1.0"}"#,
            r#"{"action":"remove","eventId":6,"path":"/a/b","sessionId":"s1","options":{},"protocol":"1.1.0"}"#,
            r#"{"action":"on","eventId":"7","path":"/a/*","data":{"event_type":"set","count":0},"options":{"meta":{}},"sessionId":"s"}"#,
            r#"{"action":"off","eventId":8,"path":12,"sessionId":"s"}"#,
            r#"{"action":"revoke-session","eventId":9,"data":{"reason":"x"}}"#,
            // Keys in another order, and whitespace everywhere JSON allows it.
            " \t\r\n{ \"data\" : [ 1 , 2 ] , \"path\" : \"/p\" , \"action\" : \"set\" , \"eventId\" : 10 } \n",
            // Missing, unknown and non-string actions.
            r#"{"eventId":11,"sessionId":"s","path":"/x"}"#,
            r#"{"action":"frobnicate","eventId":12,"sessionId":{"a":1}}"#,
            r#"{"action":"GET","eventId":13}"#,
            r#"{"action":"","eventId":14}"#,
            r#"{"action":5,"eventId":15}"#,
            r#"{"action":-3,"eventId":16}"#,
            r#"{"action":1.5,"eventId":17}"#,
            r#"{"action":18446744073709551615}"#,
            r#"{"action":true}"#,
            r#"{"action":null}"#,
            r#"{"action":[1,"get",{"a":null}]}"#,
            r#"{"action":{"z":1,"a":[2,{"b":3}],"m":{}},"eventId":18}"#,
            r#"{"action":"frob\u00e9","eventId":19}"#,
            // options: null or absent is empty; anything else but an object is malformed.
            r#"{"action":"get","path":"/x","options":null}"#,
            r#"{"action":"get","path":"/x","options":7,"eventId":20,"sessionId":"s"}"#,
            r#"{"action":"get","path":"/x","options":"merge"}"#,
            r#"{"action":"set","path":"/x","options":[]}"#,
            r#"{"action":"set","path":"/x","options":false}"#,
            r#"{"action":"nope","options":7,"eventId":21}"#,
            // Duplicate keys: the last one wins.
            r#"{"action":"frob","action":"get","path":"/x"}"#,
            r#"{"action":"get","action":5,"eventId":22}"#,
            r#"{"action":"get","eventId":1,"eventId":2,"sessionId":"a","sessionId":null}"#,
            r#"{"action":"get","options":{"a":1},"options":null}"#,
            r#"{"action":"get","options":null,"options":3}"#,
            r#"{"action":"set","data":1,"data":{"x":2},"path":"/a","path":"/b","protocol":1,"protocol":"1.1.0"}"#,
            r#"{"action":"set","data":{"k":1,"k":2,"a":0}}"#,
            // Unicode and escapes, in keys too.
            r#"{"action":"set","path":"/ü/日本","data":{"emoji":"😀","k€y":"v","\u2028":"\u2029"}}"#,
            r#"{"act\u0069on":"g\u0065t","path":"/a\"b\\c\n\t\/","data":"\ud83d\ude00","ev\u0065ntId":"\u0000"}"#,
            r#"{"action":"set","data":{"":"","\"":"\\"},"pro\ntocol":"x"}"#,
            // Numbers as eventIds and data, small, large and odd.
            r#"{"action":"get","eventId":1.0}"#,
            r#"{"action":"get","eventId":-0}"#,
            r#"{"action":"get","eventId":-0.0}"#,
            r#"{"action":"get","eventId":1e3}"#,
            r#"{"action":"get","eventId":12345678901234567890}"#,
            r#"{"action":"get","eventId":123456789012345678901234567890}"#,
            r#"{"action":"get","eventId":-9223372036854775808}"#,
            r#"{"action":"get","eventId":-9223372036854775809}"#,
            r#"{"action":"set","data":[1e308,-1e-320,0.1,2.5E+10,4.9406564584124654e-324,1.7976931348623157e308]}"#,
            // Empty object and unknown keys only.
            "{}",
            r#"{"protocol":"1.1.0","timeout":20000}"#,
            r#"{"action":"get","path":"/x","extra":[1,{"b":null,"c":[[]]}],"more":{"x":"\ud83d\ude00"}}"#,
            // Not objects.
            "[]",
            "[1,2]",
            r#"[{"action":"get"}]"#,
            r#""a string""#,
            r#""""#,
            "42",
            "-1.5",
            "null",
            "true",
            "false",
            // Control strings, and near misses that happn answers instead.
            r#""primus::ping::1700000000000""#,
            r#""primus::ping::""#,
            r#""primus::id::""#,
            r#""primus::bogus::x""#,
            r#" "primus::ping::1""#,
            r#""primus\u003a:ping::1""#,
            r#""primus::ping::1" x"#,
            r#""primus::ping::1"#,
            r#""primus::id::\u0000""#,
            // Invalid JSON.
            "",
            "   ",
            "{",
            "{not json",
            r#"{"action":"get",}"#,
            r#"{'action':'get'}"#,
            r#"{"action" "get"}"#,
            r#"{1:2}"#,
            r#"{"action":"get""#,
            r#"{"action":"get","data":[1,2}"#,
            "nul",
            "01",
            "1.",
            "-",
            "[1,]",
            "\u{feff}{}",
            // Trailing garbage after a complete value.
            r#"{"action":"get"} x"#,
            r#"{"action":"get"}}"#,
            "{} {}",
            "[1] 2",
            "null null",
            "\"a\" 1",
            // Values serde_json only rejects when it parses them properly (not in IgnoredAny's
            // scanner): out-of-range numbers, lone surrogates; under known and unknown keys.
            r#"{"action":"get","data":1e999}"#,
            r#"{"action":"get","protocol":1e999}"#,
            r#"{"action":"get","protocol":-1e400}"#,
            r#"{"action":"get","x":"\ud800"}"#,
            r#"{"action":"get","x":{"y":["\udc00"]}}"#,
            r#"{"\ud800":1,"action":"get"}"#,
            r#"{"action":"get","x":"\q"}"#,
            r#"{"action":"get","x":"\u12"}"#,
            "{\"action\":\"get\",\"x\":\"a\u{1}b\"}",
            "[1e999]",
            "1e999",
            // `data` is read as raw text first (`request::Data`): whatever a `Value` parse would
            // refuse in it must still be refused, for a set and for any other action.
            r#"{"action":"set","path":"/a","data":{"x":"\ud800"}}"#,
            r#"{"action":"set","path":"/a","data":{"x":"\udc00\ud800"},"eventId":1}"#,
            r#"{"action":"login","data":{"x":["\ud800"]}}"#,
            r#"{"action":"set","path":"/a","data":{"x":1e999}}"#,
            r#"{"action":"set","path":"/a","data":{"x":-1E+999,"y":2}}"#,
            r#"{"action":"on","path":"/a","data":1e999}"#,
            r#"{"action":"set","path":"/a","data":{"x":1e300,"y":"\u00e9\ud83d\ude00","z":[1.5e-3]}}"#,
            r#"{"action":"set","path":"/a","data":{"x":1},"y":"\ud800"}"#,
            r#"{"action":"set","path":"/a","data":{"x":"\ud800"},"y":[}"#,
            r#"{"action":"set","path":"/a","data":{"a\"b":"c\\","d\u0041":true},"eventId":2}"#,
            r#"{"action":"get","path":"/a","data":{"k":null,"t":true,"f":false,"n":-0.0}}"#,
            // A repeated `data`: the one replaced is checked too (found by the fuzz target).
            r#"{"action":"set","path":"/a","data":{"x":"\ude00"},"data":"ok"}"#,
            r#"{"acti\u006fn":"set","data":["\ud800"],"data":1}"#,
            r#"{"x":1,"data":1e999,"data":{}}"#,
        ];
        let mut frames: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        // Nesting around serde_json's limit of 128 levels, counting the envelope itself, under
        // known keys, unknown keys, the action, and outside any object.
        for depth in [1, 125, 126, 127, 128, 200, 10_000] {
            frames.push(format!(r#"{{"action":"set","path":"/a","data":{}}}"#, nested("[", "]", depth, "1")));
            frames.push(format!(r#"{{"action":"set","data":{}}}"#, nested(r#"{"a":"#, "}", depth, "null")));
            frames.push(format!(r#"{{"action":"set","protocol":{}}}"#, nested("[", "]", depth, "")));
            frames.push(format!(r#"{{"x":{},"action":"get"}}"#, nested(r#"{"a":"#, "}", depth, "{}")));
            frames.push(format!(r#"{{"action":{}}}"#, nested("[", "]", depth, "")));
            frames.push(format!(r#"{{"action":"get","options":{}}}"#, nested(r#"{"a":"#, "}", depth, "0")));
            frames.push(nested("[", "]", depth, ""));
            frames.push(format!(r#"{{"action":"get","data":{}}}"#, nested("[", "]", depth, "1")));
        }
        // Numbers at the edge of f64's range, as plain digits.
        for digits in [300, 308, 309, 310, 400] {
            frames.push(format!(r#"{{"action":"set","path":"/a","data":{{"x":{}}}}}"#, "9".repeat(digits)));
            frames.push(format!(
                r#"{{"action":"set","path":"/a","data":{{"x":-0.{}}}}}"#,
                "9".repeat(digits)
            ));
        }
        frames
    }

    #[test]
    fn decode_request_matches_the_value_path() {
        let frames = corpus();
        assert!(frames.len() >= 40, "{}", frames.len());
        let (mut requests, mut errors, mut invalid, mut control) = (0, 0, 0, 0);
        for text in &frames {
            let fast = decode_request(text);
            let slow = slow(text);
            assert_eq!(fast, slow, "frame {text:?}");
            // Map equality ignores key order; Debug shows it, so this also checks that objects
            // inside the fields keep the order they arrived in.
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "frame {text:?}");
            match fast {
                Decoded::Request(Ok(_)) => requests += 1,
                Decoded::Request(Err(_)) => errors += 1,
                Decoded::Invalid(_) => invalid += 1,
                Decoded::Control(_) => control += 1,
            }
        }
        // Every kind of outcome is exercised, not just agreed on.
        assert!(
            requests >= 20 && errors >= 20 && invalid >= 30 && control >= 3,
            "{requests} {errors} {invalid} {control}"
        );
    }

    /// The hand-written envelope reader (`scan`) against the `Value` path on every one-byte
    /// change of typical frames: each byte dropped, replaced or preceded by a byte that matters
    /// to JSON, and each prefix. Whatever the reader accepts must read the same.
    #[test]
    fn decode_request_matches_the_value_path_on_mutations() {
        let bases = [
            r#"{"action":"set","eventId":12,"path":"/a/b","data":{"v":"x","n":[1,true]},"sessionId":"s-1","options":{"merge":true,"timeout":20000},"protocol":"1.1.0"}"#,
            r#"{"action":"get","eventId":0,"path":"/a/*","sessionId":null,"options":{"tag":"t","n":7,"f":false,"z":null},"x":true}"#,
            r#" { "action" : "on" , "data" : null , "options" : null , "eventId" : "e" } "#,
            r#"{"action":"set","path":"/p","data":{"a":[-1.5,0,{"b":"c\nd\"\/"}],"e":null,"f":[[]],"g":{}},"eventId":3}"#,
            r#"{"action":"login","data":[10.25,-0,"\t",false,{"x":{"y":[1]}}]}"#,
        ];
        let specials = b" \t\n\"\\{}[]:,-+.0159eEtfnux\x01";
        let mut checked = 0;
        for base in bases {
            let bytes = base.as_bytes();
            let mut variants: Vec<Vec<u8>> = Vec::new();
            for i in 0..=bytes.len() {
                variants.push(bytes[..i].to_vec());
                if i < bytes.len() {
                    variants.push([&bytes[..i], &bytes[i + 1..]].concat());
                }
                for &b in specials {
                    if i < bytes.len() {
                        let mut replaced = bytes.to_vec();
                        replaced[i] = b;
                        variants.push(replaced);
                    }
                    variants.push([&bytes[..i], &[b][..], &bytes[i..]].concat());
                }
            }
            for v in variants {
                let text = String::from_utf8(v).expect("ASCII changes of ASCII text");
                let fast = decode_request(&text);
                assert_eq!(fast, slow(&text), "frame {text:?}");
                assert_eq!(format!("{fast:?}"), format!("{:?}", slow(&text)), "frame {text:?}");
                checked += 1;
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn decode_request_fields() {
        let text =
            r#"{"protocol":"1.1.0","action":"set","eventId":7,"path":"/a","data":{"b":1,"a":2},"sessionId":"s","options":{"merge":true}}"#;
        let Decoded::Request(Ok(r)) = decode_request(text) else {
            panic!("{:?}", decode_request(text));
        };
        assert_eq!(r.action(), crate::Action::Set);
        assert_eq!(r.event_id, Some(serde_json::json!(7)));
        assert_eq!(r.session_id, Some(serde_json::json!("s")));
        assert_eq!(r.path_str(), Ok("/a"));
        match &r.data {
            Some(crate::Data::Json(raw)) => assert_eq!(&**raw, r#"{"b":1,"a":2}"#, "a set's body stays text"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&r.command, crate::Command::Set(o) if o.merge));

        assert_eq!(decode_request(r#""primus::ping::5""#), Decoded::Control(Control::Ping("5".into())));
        assert_eq!(decode_request("[1]"), Decoded::Request(Err(RequestError::NotAnObject)));
        assert_eq!(
            decode_request(r#"{"eventId":3}"#),
            Decoded::Request(Err(RequestError::UnknownAction {
                action: Value::Null,
                event_id: Some(serde_json::json!(3)),
                session_id: None,
            }))
        );
    }

    #[test]
    fn decode_request_errors_as_the_server_expects() {
        // The server answers only this error, recognised by its text, so it must survive
        // wherever the nesting is (IgnoredAny would have accepted the unknown-key case).
        for text in [
            format!(r#"{{"action":"set","data":{}}}"#, nested("[", "]", 200, "")),
            format!(r#"{{"action":"set","protocol":{}}}"#, nested("[", "]", 200, "")),
        ] {
            match decode_request(&text) {
                Decoded::Invalid(e) => assert!(e.contains("recursion limit"), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        for text in [
            r#"{"action":"get","protocol":1e999}"#,
            r#"{"action":"get"} x"#,
            r#"{"action":"get","x":"\ud800"}"#,
        ] {
            assert!(matches!(decode_request(text), Decoded::Invalid(_)), "{text}");
        }
    }

    /// Frames the decoder must call invalid (a `Value` parse refuses them) but that are requests
    /// a client waits on: [`crate::unreadable_request`] finds the answer they are owed.
    #[test]
    fn invalid_requests_still_get_an_answer_when_their_event_id_is_readable() {
        let huge = "1".repeat(5_000);
        let answered = |text: &str| match decode_request(text) {
            Decoded::Invalid(e) => crate::unreadable_request(text, &e),
            other => panic!("{other:?}"),
        };
        for text in [
            format!(r#"{{"action":"set","eventId":1,"path":"/a","data":{{"n":{huge}}},"options":{{"timeout":20000}}}}"#),
            format!(r#"{{"action":"set","eventId":1,"path":"/a","data":{{"n":[0.5,-{huge}]}}}}"#),
            format!(r#"{{"action":"get","eventId":1,"path":"/a","options":{{"criteria":{{"n":{{"$gt":{huge}}}}}}}}}"#),
            format!(
                r#"{{"action":"set","eventId":1,"path":"/a","data":{}}}"#,
                nested("[", "]", 5_000, "")
            ),
            r#"{"action":"set","eventId":1,"path":"/a","data":{"a":"\udfff"}}"#.to_string(),
        ] {
            match answered(&text) {
                Some(RequestError::Malformed { event_id, .. }) => assert_eq!(event_id, Some(serde_json::json!(1))),
                other => panic!("{}: {other:?}", &text[..50]),
            }
        }
        // A 5,000-digit eventId leaves nothing to address a reply to.
        assert_eq!(answered(&format!(r#"{{"action":"get","eventId":{huge}}}"#)), None);
        // Not JSON at all: dropped, as the original does.
        assert_eq!(answered(r#"{"action":"get","eventId":1"#), None);
    }

    #[test]
    fn escapes_separators() {
        assert_eq!(escape_line_separators("a\u{2028}b\u{2029}".into()), "a\\u2028b\\u2029");
        assert_eq!(escape_line_separators("plain".into()), "plain");
    }
}
