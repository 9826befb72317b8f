//! A tiny JSON object writer. Replies are written straight into a `String` with their keys in
//! the order the original emits them, without building intermediate `Value`s (and without
//! cloning document bodies, which are serialised once).

use serde::Serialize;

pub struct ObjectWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn open(out: &'a mut String) -> Self {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        // Keys are compile-time ASCII identifiers, so no escaping is needed; assert it in debug.
        debug_assert!(!key.contains(['"', '\\']));
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
        self.out.push_str(itoa_i64(n).as_str());
        self
    }

    pub fn bool(&mut self, key: &str, b: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if b { "true" } else { "false" });
        self
    }

    pub fn value<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> &mut Self {
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

/// Append `v` as JSON. Serialising a `serde_json::Value` (or any derived type) cannot fail.
pub fn write_value<T: Serialize + ?Sized>(out: &mut String, v: &T) {
    // SAFETY-free: serde_json writes valid UTF-8 into the Vec we hand it.
    let mut buf = std::mem::take(out).into_bytes();
    if serde_json::to_writer(&mut buf, v).is_err() {
        buf.extend_from_slice(b"null");
    }
    *out = String::from_utf8(buf).unwrap_or_default();
}

pub fn write_str(out: &mut String, s: &str) {
    write_value(out, s)
}

fn itoa_i64(n: i64) -> String {
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
