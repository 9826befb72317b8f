//! Primus framing: every websocket text frame is one JSON value. Primus control messages are
//! JSON *strings* (`"primus::ping::<n>"`); everything else is a happn message.

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

    #[test]
    fn escapes_separators() {
        assert_eq!(escape_line_separators("a\u{2028}b\u{2029}".into()), "a\\u2028b\\u2029");
        assert_eq!(escape_line_separators("plain".into()), "plain");
    }
}
