//! A hand-written reader for the request envelopes clients actually send:
//! `{"action":"set","eventId":4,"path":"/a","data":{…},"sessionId":"…","options":{"timeout":20000},"protocol":"1.1.0"}`.
//!
//! serde_json's visitor machinery costs more than the rest of a plain set's request decoding
//! together, for an object whose shape is almost always this one. This reader accepts only a
//! strict subset of JSON: keys and string values without escapes or control characters,
//! non-negative integers short enough to be exact, `true`/`false`/`null`, and an `options`
//! object of such scalars. `data` is any value, taken as raw text by serde_json itself. For
//! anything else it answers `None` and the caller takes the serde path, so what it accepts it
//! reads exactly as that path would (the decoder tests check this on a corpus and on every
//! one-byte mutation of typical frames).

use crate::request::{Action, Data, Envelope};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Read `text` into `env` (an empty envelope) when it is an object in the subset above, and
/// say whether it was; `env` is filled in place, as it is too big to pass around by value on
/// every request. When this answers false, `env` holds a partial read and must be discarded.
pub(crate) fn read_simple_envelope(text: &str, env: &mut Envelope) -> bool {
    envelope_into(text, env).is_some()
}

fn envelope_into(text: &str, env: &mut Envelope) -> Option<()> {
    let mut s = Scanner { text, at: 0 };
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.at += 1;
    } else {
        loop {
            s.skip_ws();
            let key = s.plain_string()?;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            // Assignments overwrite, so a repeated key keeps its last value, as on the serde path.
            match key {
                "action" => env.action = Ok(Action::parse(s.plain_string()?)?),
                "eventId" => env.event_id = Some(s.scalar()?.into_value()),
                "sessionId" => env.session_id = Some(s.scalar()?.into_value()),
                "path" => env.path = Some(s.scalar()?.into_value()),
                "data" => env.data = Some(Data::Json(s.raw_value()?)),
                "options" => env.options = Some(s.options()?),
                _ => {
                    s.scalar()?;
                }
            }
            s.skip_ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.at == text.len()).then_some(())
}

/// A scalar value, borrowed from the text until it is needed as a `Value`.
enum Scalar<'a> {
    Str(&'a str),
    Int(u64),
    Bool(bool),
    Null,
}

impl Scalar<'_> {
    fn into_value(self) -> Value {
        match self {
            Scalar::Str(s) => Value::String(s.to_owned()),
            Scalar::Int(n) => Value::from(n),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Null => Value::Null,
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

/// At most this many digits: exact as a `u64`, so serde_json reads the same number.
const MAX_DIGITS: usize = 18;

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// JSON's whitespace, exactly: space, tab, line feed, carriage return.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string with no escapes and no control characters (which JSON forbids raw), as the
    /// slice between its quotes.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = &self.bytes()[self.at..];
        let len = crate::json::plain_prefix_len(rest);
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        let s = &self.text[self.at..self.at + len];
        self.at += len + 1;
        Some(s)
    }

    /// `0` or a positive integer of at most [`MAX_DIGITS`] digits, not followed by a fraction
    /// or an exponent (those, and anything longer, are left to serde_json).
    fn integer(&mut self) -> Option<u64> {
        let rest = &self.bytes()[self.at..];
        let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > MAX_DIGITS || (len > 1 && rest[0] == b'0') {
            return None;
        }
        if matches!(rest.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let n = rest[..len].iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        self.at += len;
        Some(n)
    }

    fn literal(&mut self, word: &str, value: Scalar<'a>) -> Option<Scalar<'a>> {
        if self.bytes()[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Some(value)
        } else {
            None
        }
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.plain_string().map(Scalar::Str),
            b'0'..=b'9' => self.integer().map(Scalar::Int),
            b't' => self.literal("true", Scalar::Bool(true)),
            b'f' => self.literal("false", Scalar::Bool(false)),
            b'n' => self.literal("null", Scalar::Null),
            _ => None,
        }
    }

    /// `options`: `null`, or an object of scalars. `timeout` is the client's own request
    /// timeout and is dropped here, as `OptionsSeed` does.
    fn options(&mut self) -> Option<Value> {
        if self.peek()? == b'n' {
            return self.literal("null", Scalar::Null).map(Scalar::into_value);
        }
        self.expect(b'{')?;
        let mut options = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(Value::Object(options));
        }
        loop {
            self.skip_ws();
            let key = self.plain_string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let value = self.scalar()?;
            if key != "timeout" {
                options.insert(key.to_owned(), value.into_value());
            }
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(Value::Object(options)),
                _ => return None,
            }
        }
    }

    /// `data`: any JSON value that surely parses as a `Value` inside the envelope, kept as its
    /// text. Checked here in one pass; what a `Value` parse could refuse beyond the grammar is
    /// answered `None` (the serde path then decides): `\u` escapes (lone surrogates), exponents
    /// and numbers longer than [`MAX_NUMBER_LEN`] (out of `f64` range), and nesting deeper than
    /// [`MAX_DATA_DEPTH`].
    fn raw_value(&mut self) -> Option<Arc<str>> {
        let start = self.at;
        self.value(0)?;
        Some(Arc::from(&self.text[start..self.at]))
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.container(depth, b'}', true),
            b'[' => self.container(depth, b']', false),
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal("true", Scalar::Null).map(drop),
            b'f' => self.literal("false", Scalar::Null).map(drop),
            b'n' => self.literal("null", Scalar::Null).map(drop),
            _ => None,
        }
    }

    /// An object (`keyed`) or array, its opening bracket next.
    fn container(&mut self, depth: usize, close: u8, keyed: bool) -> Option<()> {
        if depth >= MAX_DATA_DEPTH {
            return None;
        }
        self.at += 1;
        self.skip_ws();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_ws();
            if keyed {
                self.string()?;
                self.skip_ws();
                self.expect(b':')?;
                self.skip_ws();
            }
            self.value(depth + 1)?;
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string with at most the two-character escapes (`\u` ones are left to serde_json).
    fn string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            self.at += crate::json::plain_prefix_len(&self.bytes()[self.at..]);
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    _ => return None,
                },
                // A raw control character: invalid JSON.
                _ => return None,
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)?`: JSON's number without an exponent.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let before = self.at;
            self.skip_digits();
            if self.at == before {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.at - start > MAX_NUMBER_LEN {
            return None;
        }
        Some(())
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

/// Nesting `data` may have here: with the envelope, one level under serde_json's limit of 128.
const MAX_DATA_DEPTH: usize = 126;

/// A plain decimal overflows `f64` only past 309 digits.
const MAX_NUMBER_LEN: usize = 300;

#[cfg(test)]
mod tests {
    use super::*;

    fn simple_envelope(text: &str) -> Option<Envelope> {
        let mut env = Envelope::empty();
        read_simple_envelope(text, &mut env).then_some(env)
    }

    #[test]
    fn reads_what_clients_send() {
        let text = r#"{"action":"set","eventId":4,"path":"/sets/plain","data":{"name":"one","nested":{"a":[1,2,3]}},"sessionId":"d3","options":{"merge":true,"timeout":20000},"protocol":"1.1.0"}"#;
        let env = simple_envelope(text).expect("the 2.21 client's set");
        assert_eq!(env.action, Ok(Action::Set));
        assert_eq!(env.event_id, Some(Value::from(4)));
        assert_eq!(env.path, Some(Value::from("/sets/plain")));
        assert_eq!(env.session_id, Some(Value::from("d3")));
        assert_eq!(env.options, Some(serde_json::json!({"merge": true})));
        match env.data {
            Some(Data::Json(raw)) => assert_eq!(&*raw, r#"{"name":"one","nested":{"a":[1,2,3]}}"#),
            _ => panic!("data is kept as text"),
        }
        let spaced = " { \"action\" : \"get\" ,\n\"eventId\":\t0 , \"options\" : { } , \"data\" : [ 1 , 2 ] }\r\n";
        let env = simple_envelope(spaced).expect("whitespace anywhere JSON allows it");
        assert_eq!(env.event_id, Some(Value::from(0)));
        assert_eq!(env.options, Some(serde_json::json!({})));
        assert!(simple_envelope("{}").is_some());
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for text in [
            r#"{"action":"bogus"}"#,
            r#"{"action":"get","eventId":-1}"#,
            r#"{"action":"get","eventId":01}"#,
            r#"{"action":"get","eventId":1.5}"#,
            r#"{"action":"get","eventId":1e3}"#,
            r#"{"action":"get","eventId":1234567890123456789}"#,
            r#"{"action":"get","path":"/a\"b"}"#,
            r#"{"act\u0069on":"get"}"#,
            "{\"action\":\"get\",\"path\":\"a\u{1}\"}",
            r#"{"action":"get","options":{"a":[1]}}"#,
            r#"{"action":"get","options":"x"}"#,
            r#"{"action":"get","x":{}}"#,
            r#"{"action":"get",}"#,
            r#"{"action":"get"} x"#,
            r#"{"action":"get","data":1e999"#,
            r#"[{"action":"get"}]"#,
            r#"{"action":"get","x":nul}"#,
        ] {
            assert!(simple_envelope(text).is_none(), "{text}");
        }
    }
}
