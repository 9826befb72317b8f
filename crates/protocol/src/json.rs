//! A tiny JSON object writer. Replies are written straight into a `String` with their keys in
//! the order the original emits them, without building intermediate `Value`s (and without
//! cloning document bodies, which are serialised once).
//!
//! Strings, integers and `Value` scalars are appended directly: no temporary allocation and no
//! UTF-8 revalidation of the text written so far. Output is byte-identical to `serde_json`'s
//! compact form (the tests below compare the two), because clients and trace diffs see it.

use serde::Serialize;
use serde_json::Value;
use std::any::Any;

pub struct ObjectWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn open(out: &'a mut String) -> Self {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    /// Continue an object whose `{` (and possibly some members) the caller already wrote, for
    /// templates that splice members around pre-rendered text. `first` says whether no member
    /// has been written yet (so no leading comma is due).
    pub(crate) fn resume(out: &'a mut String, first: bool) -> Self {
        ObjectWriter { out, first }
    }

    /// Members written by `write` straight into the text, which answers whether it wrote any
    /// (each after the first preceded by a comma, as usual).
    pub(crate) fn members(&mut self, write: impl FnOnce(&mut String) -> bool) {
        let mark = self.out.len();
        if !self.first {
            self.out.push(',');
        }
        if write(self.out) {
            self.first = false;
        } else {
            self.out.truncate(mark);
        }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        // Keys are compile-time ASCII identifiers, so no escaping is needed; assert it in debug.
        debug_assert!(!key.bytes().any(|b| ESCAPE[b as usize] != 0));
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    /// A value that is already JSON text.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    pub fn str(&mut self, key: &str, s: &str) -> &mut Self {
        self.key(key);
        write_str(self.out, s);
        self
    }

    pub fn int(&mut self, key: &str, n: i64) -> &mut Self {
        self.key(key);
        write_i64(self.out, n);
        self
    }

    pub fn bool(&mut self, key: &str, b: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if b { "true" } else { "false" });
        self
    }

    /// Any serialisable value; `serde_json::Value` scalars take the direct path (see [`write_value`]).
    pub fn value<T: Serialize + Any>(&mut self, key: &str, v: &T) -> &mut Self {
        self.key(key);
        write_value(self.out, v);
        self
    }

    /// Start a nested object under `key`; close it with [`ObjectWriter::close`].
    pub fn object(&mut self, key: &str) -> ObjectWriter<'_> {
        self.key(key);
        ObjectWriter::open(self.out)
    }

    pub fn close(self) {
        self.out.push('}');
    }
}

/// Append `v` as JSON.
///
/// Echoed `eventId`s and `sessionId`s are `Value`s, nearly always scalars, and are written
/// directly. Everything else goes through serde_json. The `Any` bound is what lets a generic
/// caller reach the `Value` path: the downcast is a type-id comparison the compiler folds away
/// per instantiation.
pub fn write_value<T: Serialize + Any>(out: &mut String, v: &T) {
    match (v as &dyn Any).downcast_ref::<Value>() {
        Some(v) => write_json(out, v),
        None => write_serialized(out, v),
    }
}

/// Append a `serde_json::Value`: scalars directly, arrays and objects through serde_json.
pub fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push_str(itoa::Buffer::new().format(u));
            } else if let Some(i) = n.as_i64() {
                write_i64(out, i);
            } else {
                // A float. `Number`'s Display is the formatter serde_json serialises it with
                // (shortest round-trip form; a `Number` is never NaN or infinite), and writing to a
                // String cannot fail.
                use std::fmt::Write;
                let _ = write!(out, "{n}");
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(_) | Value::Object(_) => write_serialized(out, v),
    }
}

/// The serde_json fallback. `to_string` hands back its buffer without re-checking the UTF-8 it
/// wrote, so only this value's bytes are copied and nothing already in `out` is looked at again.
fn write_serialized<T: Serialize + ?Sized>(out: &mut String, v: &T) {
    match serde_json::to_string(v) {
        Ok(json) if out.is_empty() => *out = json,
        Ok(json) => out.push_str(&json),
        // Only maps with non-string keys or failing Serialize impls get here; none of the wire
        // types do, and `null` is what the original's JSON.stringify would fall back to.
        Err(_) => out.push_str("null"),
    }
}

pub fn write_i64(out: &mut String, n: i64) {
    out.push_str(itoa::Buffer::new().format(n));
}

// serde_json's escape table: the byte is escaped as `\<entry>`, `u` meaning `\u00XX`; 0 means
// the byte is copied as is (including every byte of a multi-byte UTF-8 sequence, so U+2028 and
// U+2029 are not escaped, as in serde_json and JSON.stringify).
const UU: u8 = b'u';
const BB: u8 = b'b';
const TT: u8 = b't';
const NN: u8 = b'n';
const FF: u8 = b'f';
const RR: u8 = b'r';
const QU: u8 = b'"';
const BS: u8 = b'\\';
const __: u8 = 0;

static ESCAPE: [u8; 256] = {
    let mut table = [__; 256];
    let controls: [u8; 32] = [
        UU, UU, UU, UU, UU, UU, UU, UU, BB, TT, NN, UU, FF, RR, UU, UU, //
        UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, //
    ];
    let mut i = 0;
    while i < 32 {
        table[i] = controls[i];
        i += 1;
    }
    table[b'"' as usize] = QU;
    table[b'\\' as usize] = BS;
    table
};

/// The length of the longest prefix of `bytes` that a JSON string holds as it is: no `"`, no
/// `\\` and no control character. Eight bytes at a time, since paths, ids and keys are almost
/// always plain all the way.
pub fn plain_prefix_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set where it is zero (for the XORs: where it matched) or below
        // 0x20. Borrows can only flag bytes above a real match, so the lowest flag is exact.
        let hits = (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash) | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & HIGHS;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + bytes[i..].iter().position(|&b| ESCAPE[b as usize] != 0).unwrap_or(bytes.len() - i)
}

/// Append `s` as a JSON string, escaped exactly as serde_json escapes it.
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let plain = plain_prefix_len(bytes);
    if plain == bytes.len() {
        out.push_str(s);
        out.push('"');
        return;
    }
    // Copy unescaped runs in one go. Every escaped byte is ASCII, so `start` and `i` always sit
    // on char boundaries.
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(plain) {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.push_str(&s[start..i]);
        start = i + 1;
        if escape == UU {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push('\\');
            out.push(escape as char);
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_prefixes() {
        // Every position of each kind of stop, in and past the eight-byte chunks, against the
        // escape table byte by byte.
        for stop in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
            for len in 0..20 {
                for at in 0..=len {
                    let mut bytes = vec![b'a'; len];
                    bytes.extend_from_slice("é€".as_bytes());
                    if at < len {
                        bytes[at] = stop;
                    }
                    let expected = bytes.iter().position(|&b| ESCAPE[b as usize] != 0).unwrap_or(bytes.len());
                    assert_eq!(plain_prefix_len(&bytes), expected, "{bytes:?}");
                }
            }
        }
        assert_eq!(plain_prefix_len(b" !#[]~\x7f\x80"), 8);
    }

    #[test]
    fn writes_in_order() {
        let mut s = String::new();
        let mut w = ObjectWriter::open(&mut s);
        w.str("b", "x\"y").int("a", 5).bool("c", false).raw("d", "null");
        let mut inner = w.object("e");
        inner.int("z", 1);
        inner.close();
        w.close();
        assert_eq!(s, r#"{"b":"x\"y","a":5,"c":false,"d":null,"e":{"z":1}}"#);
    }

    fn str_json(s: &str) -> String {
        // Start from a non-empty buffer so appending (not just writing) is what is checked.
        let mut out = String::from("<");
        write_str(&mut out, s);
        out.split_off(1)
    }

    #[test]
    fn string_escaping_matches_serde_json() {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        // Every ASCII char embedded between plain text, and runs of mixed escapes.
        cases.extend((0u8..0x80).map(|b| format!("ab{}cd", char::from(b))));
        cases.push((0u8..0x80).map(char::from).collect());
        cases.extend(
            [
                "",
                "plain",
                "/SET@/sets/plain",
                "\"",
                "\\",
                "\\\"",
                "\"quoted\" and \\back\\slashed\\",
                "line\nbreak\r\n\ttab\u{8}\u{c}",
                "\u{0}\u{1}\u{1f}\u{7f}",
                "emoji 😀 and 👍🏽 and 🏳️‍🌈",
                "\u{2028}\u{2029} separators",
                "ünïcödé ñ 日本語 \u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
                "\u{feff}bom",
                "end with escape\n",
                "\u{1b}[31mred\u{1b}[0m",
            ]
            .map(String::from),
        );
        for s in &cases {
            assert_eq!(str_json(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn integers_match_serde_json() {
        for n in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            12345,
            1_700_000_000_000,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
        ] {
            let mut out = String::from("x");
            write_i64(&mut out, n);
            assert_eq!(out[1..], serde_json::to_string(&n).unwrap(), "{n}");
        }
    }

    #[test]
    fn values_match_serde_json() {
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-0),
            json!(7),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(0.0),
            json!(-0.0),
            json!(1.5),
            json!(-2.25e-8),
            json!(0.1 + 0.2),
            json!(1e300),
            json!(f64::MIN_POSITIVE),
            json!(f64::MAX),
            json!(1e21),
            json!(123456789012345680.0),
            json!("s\"1\n😀\u{2028}"),
            json!([1, "a", null, [true], {"k": 1.5}]),
            json!({"b": 1, "a": {"z": "\u{0}", "y": []}, "\"": -3}),
        ];
        for v in &values {
            let mut out = String::from("x");
            write_value(&mut out, v);
            assert_eq!(out[1..], serde_json::to_string(v).unwrap(), "{v:?}");
            // An empty buffer takes the serialised text as is.
            let mut empty = String::new();
            write_json(&mut empty, v);
            assert_eq!(empty, serde_json::to_string(v).unwrap(), "{v:?}");
        }
        // Non-Value types go through serde_json.
        let mut out = String::from("x");
        write_value(&mut out, &vec![Some(1), None]);
        assert_eq!(out, "x[1,null]");
    }
}
