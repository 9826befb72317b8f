//! Outgoing frames: replies, multi-item replies, events and system messages, each with its
//! `_meta` keys in the order the 2.21 server emits them (clients do not care about order, but
//! trace diffs against the reference do).

use crate::error::WireError;
use crate::json::{write_value, ObjectWriter};
use crate::PROTOCOL_VERSION;
use serde_json::Value;

/// The record part of `_meta`: timestamps and path of the document a reply or event is about.
/// Emitted order: timestamp, created, modified, path, _id, tag.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordMeta<'a> {
    pub timestamp: Option<i64>,
    pub created: Option<i64>,
    pub modified: Option<i64>,
    pub path: Option<&'a str>,
    pub id: Option<&'a str>,
    pub tag: Option<&'a str>,
}

impl RecordMeta<'_> {
    fn write(&self, w: &mut ObjectWriter<'_>) {
        if let Some(t) = self.timestamp {
            w.int("timestamp", t);
        }
        if let Some(c) = self.created {
            w.int("created", c);
        }
        if let Some(m) = self.modified {
            w.int("modified", m);
        }
        if let Some(p) = self.path {
            w.str("path", p);
        }
        if let Some(id) = self.id {
            w.str("_id", id);
        }
        if let Some(t) = self.tag {
            w.str("tag", t);
        }
    }
}

/// What every reply echoes about its request.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub event_id: Option<&'a Value>,
    /// The request's `sessionId`, echoed (omitted for login/describe and when absent).
    pub session_id: Option<&'a Value>,
    /// `_meta.action`: the raw action, or `/SET@<path>` / `/REMOVE@<path>` once published.
    pub action: &'a str,
    pub published: bool,
}

impl<'a> Reply<'a> {
    fn write_tail(&self, w: &mut ObjectWriter<'_>, status_first: bool, status: &str) {
        if status_first {
            w.str("status", status).str("type", "response");
        } else {
            w.str("type", "response").str("status", status);
        }
        w.bool("published", self.published);
        if let Some(e) = self.event_id {
            w.value("eventId", e);
        }
        if let Some(s) = self.session_id {
            w.value("sessionId", s);
        }
        w.str("action", self.action);
    }

    /// `{"data":<data_json>,"_meta":{<record>,type,status,published,eventId,sessionId,action},"protocol":"1.1.0"}`
    pub fn ok(&self, data_json: &str, record: &RecordMeta<'_>) -> String {
        let mut out = String::with_capacity(data_json.len() + 160);
        let mut w = ObjectWriter::open(&mut out);
        w.raw("data", data_json);
        let mut m = w.object("_meta");
        record.write(&mut m);
        self.write_tail(&mut m, false, "ok");
        m.close();
        w.str("protocol", PROTOCOL_VERSION);
        w.close();
        out
    }

    /// Replies to on / off / revoke-session start their `_meta` with `status`.
    pub fn ok_status_first(&self, data_json: &str) -> String {
        let mut out = String::with_capacity(data_json.len() + 160);
        let mut w = ObjectWriter::open(&mut out);
        w.raw("data", data_json);
        let mut m = w.object("_meta");
        self.write_tail(&mut m, true, "ok");
        m.close();
        w.str("protocol", PROTOCOL_VERSION);
        w.close();
        out
    }

    /// `on` with `initialCallback`: data is the formatted items, plus the original's redundant
    /// top-level `initialValues` array.
    pub fn ok_initial_values(&self, items_json: &str, initial_values_json: &str) -> String {
        let mut out = String::with_capacity(items_json.len() + initial_values_json.len() + 200);
        let mut w = ObjectWriter::open(&mut out);
        w.raw("data", items_json);
        let mut m = w.object("_meta");
        self.write_tail(&mut m, true, "ok");
        m.close();
        w.raw("initialValues", initial_values_json);
        w.str("protocol", PROTOCOL_VERSION);
        w.close();
        out
    }

    /// A multi-item reply: a bare JSON array whose last element is the reply `_meta`
    /// (arrays carry no `protocol` key, as in the original).
    pub fn array<I, S>(&self, items: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = String::from("[");
        for item in items {
            out.push_str(item.as_ref());
            out.push(',');
        }
        let mut m = ObjectWriter::open(&mut out);
        self.write_tail(&mut m, false, "ok");
        m.close();
        out.push(']');
        out
    }

    /// `{"data":null,"_meta":{type,status:"error",published:false,eventId,sessionId,action,error},"protocol":"1.1.0"}`
    pub fn error(&self, error: &WireError) -> String {
        let mut out = String::with_capacity(200);
        let mut w = ObjectWriter::open(&mut out);
        w.raw("data", "null");
        let mut m = w.object("_meta");
        Reply { published: false, ..*self }.write_tail_error(&mut m, error);
        m.close();
        w.str("protocol", PROTOCOL_VERSION);
        w.close();
        out
    }

    fn write_tail_error(&self, m: &mut ObjectWriter<'_>, error: &WireError) {
        self.write_tail(m, false, "error");
        m.value("error", error);
    }
}

/// The error reply for a frame that is not a request object at all: no eventId, no action.
pub fn anonymous_error(error: &WireError) -> String {
    let mut out = String::with_capacity(160);
    let mut w = ObjectWriter::open(&mut out);
    w.raw("data", "null");
    let mut m = w.object("_meta");
    m.str("type", "response")
        .str("status", "error")
        .bool("published", false)
        .value("error", error);
    m.close();
    w.str("protocol", PROTOCOL_VERSION);
    w.close();
    out
}

/// The error reply for an unknown action: echoes eventId, sessionId and the action as sent.
pub fn unknown_action_error(action: &Value, event_id: Option<&Value>, session_id: Option<&Value>) -> String {
    let mut out = String::with_capacity(200);
    let mut w = ObjectWriter::open(&mut out);
    w.raw("data", "null");
    let mut m = w.object("_meta");
    m.str("type", "response").str("status", "error").bool("published", false);
    if let Some(e) = event_id {
        m.value("eventId", e);
    }
    if let Some(s) = session_id {
        m.value("sessionId", s);
    }
    if !action.is_null() {
        m.value("action", action);
    }
    let text = match action {
        Value::String(s) => s.clone(),
        Value::Null => "undefined".to_string(),
        other => other.to_string(),
    };
    m.value("error", &WireError::unknown_action(&text));
    m.close();
    w.str("protocol", PROTOCOL_VERSION);
    w.close();
    out
}

/// An event for one subscription, serialised as a template once per publish: the document body
/// and record meta are written once, and only the recipient's `sessionId` and the subscription
/// `channel` are spliced in per recipient.
#[derive(Debug, Clone)]
pub struct EventMeta {
    /// `{"data":…,"_meta":{<record meta>,"type":"data",`
    head: String,
    /// `"action":"/SET@/x"` (JSON-encoded)
    action_json: String,
    /// The original copies the publisher's reply `_meta`, so `sessionId` sits before `action`
    /// when the publisher's request carried one, and is appended after `channel` otherwise.
    session_before_action: bool,
}

impl EventMeta {
    pub fn new(data_json: &str, record: &RecordMeta<'_>, action: &str, session_before_action: bool) -> Self {
        let mut head = String::with_capacity(data_json.len() + 120);
        head.push_str("{\"data\":");
        head.push_str(data_json);
        head.push_str(",\"_meta\":{");
        // Write record meta through a scratch writer, then drop its braces.
        let mut scratch = String::new();
        let mut w = ObjectWriter::open(&mut scratch);
        record.write(&mut w);
        w.str("type", "data");
        w.close();
        head.push_str(&scratch[1..scratch.len() - 1]);
        head.push(',');
        let mut action_json = String::new();
        write_value(&mut action_json, action);
        EventMeta {
            head,
            action_json,
            session_before_action,
        }
    }

    /// The frame for one recipient.
    pub fn render(&self, recipient_session: &str, channel: &str) -> String {
        let mut out = String::with_capacity(self.head.len() + self.action_json.len() + channel.len() + 96);
        out.push_str(&self.head);
        if self.session_before_action {
            out.push_str("\"sessionId\":");
            write_value(&mut out, recipient_session);
            out.push(',');
        }
        out.push_str("\"action\":");
        out.push_str(&self.action_json);
        out.push_str(",\"channel\":");
        write_value(&mut out, channel);
        if !self.session_before_action {
            out.push_str(",\"sessionId\":");
            write_value(&mut out, recipient_session);
        }
        out.push_str("},\"protocol\":\"");
        out.push_str(PROTOCOL_VERSION);
        out.push_str("\"}");
        out
    }
}

/// `{"_meta":{"type":"system"},"eventKey":…,"data":…,[reconnect],"protocol":"1.1.0"}`
pub fn system_message(event_key: &str, data: &Value, reconnect: Option<bool>) -> String {
    let mut out = String::with_capacity(160);
    let mut w = ObjectWriter::open(&mut out);
    let mut m = w.object("_meta");
    m.str("type", "system");
    m.close();
    w.str("eventKey", event_key).value("data", data);
    if let Some(r) = reconnect {
        w.bool("reconnect", r);
    }
    w.str("protocol", PROTOCOL_VERSION);
    w.close();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_reply_matches_reference() {
        let eid = json!(4);
        let sid = json!("s1");
        let r = Reply {
            event_id: Some(&eid),
            session_id: Some(&sid),
            action: "/SET@/sets/plain",
            published: true,
        };
        let rec = RecordMeta {
            created: Some(1),
            modified: Some(2),
            path: Some("/sets/plain"),
            ..Default::default()
        };
        assert_eq!(
            r.ok(r#"{"a":1}"#, &rec),
            r#"{"data":{"a":1},"_meta":{"created":1,"modified":2,"path":"/sets/plain","type":"response","status":"ok","published":true,"eventId":4,"sessionId":"s1","action":"/SET@/sets/plain"},"protocol":"1.1.0"}"#
        );
    }

    #[test]
    fn on_reply_and_error_and_array() {
        let eid = json!(3);
        let r = Reply {
            event_id: Some(&eid),
            session_id: None,
            action: "on",
            published: false,
        };
        assert_eq!(
            r.ok_status_first("{}"),
            r#"{"data":{},"_meta":{"status":"ok","type":"response","published":false,"eventId":3,"action":"on"},"protocol":"1.1.0"}"#
        );
        assert_eq!(
            r.error(&WireError::access_denied("unauthorized", None)),
            r#"{"data":null,"_meta":{"type":"response","status":"error","published":false,"eventId":3,"action":"on","error":{"name":"AccessDenied","message":"unauthorized"}},"protocol":"1.1.0"}"#
        );
        assert_eq!(
            r.array(["{\"a\":1}"]),
            r#"[{"a":1},{"type":"response","status":"ok","published":false,"eventId":3,"action":"on"}]"#
        );
    }

    #[test]
    fn anonymous_and_unknown_errors() {
        assert_eq!(
            anonymous_error(&WireError::unknown_action("undefined")),
            r#"{"data":null,"_meta":{"type":"response","status":"error","published":false,"error":{"name":"Unknown request action: undefined"}},"protocol":"1.1.0"}"#
        );
        assert_eq!(
            unknown_action_error(&json!("frobnicate"), Some(&json!(4)), None),
            r#"{"data":null,"_meta":{"type":"response","status":"error","published":false,"eventId":4,"action":"frobnicate","error":{"name":"Unknown request action: frobnicate"}},"protocol":"1.1.0"}"#
        );
    }

    #[test]
    fn event_template() {
        let rec = RecordMeta {
            created: Some(1),
            modified: Some(1),
            path: Some("/e/1"),
            ..Default::default()
        };
        let ev = EventMeta::new(r#"{"v":1}"#, &rec, "/SET@/e/1", true);
        assert_eq!(
            ev.render("sess", "/ALL@/e/1"),
            r#"{"data":{"v":1},"_meta":{"created":1,"modified":1,"path":"/e/1","type":"data","sessionId":"sess","action":"/SET@/e/1","channel":"/ALL@/e/1"},"protocol":"1.1.0"}"#
        );
        let ev = EventMeta::new(r#"{"v":1}"#, &rec, "/SET@/e/1", false);
        assert!(ev
            .render("sess", "/SET@/e/*")
            .ends_with(r#""action":"/SET@/e/1","channel":"/SET@/e/*","sessionId":"sess"},"protocol":"1.1.0"}"#));
    }

    #[test]
    fn system_message_shape() {
        assert_eq!(
            system_message("server-side-disconnect", &json!("bye"), Some(false)),
            r#"{"_meta":{"type":"system"},"eventKey":"server-side-disconnect","data":"bye","reconnect":false,"protocol":"1.1.0"}"#
        );
    }
}

/// One item of a multi-item reply: the document's fields with `_meta` in place of any stored
/// `_meta` key (appended when there is none), as `{...item.data, _meta: item._meta}` does in JS.
pub fn item_json(data: &serde_json::Map<String, Value>, record: &RecordMeta<'_>) -> String {
    let mut meta = String::new();
    let mut w = ObjectWriter::open(&mut meta);
    record.write(&mut w);
    w.close();
    let mut out = String::with_capacity(meta.len() + 64);
    out.push('{');
    let mut first = true;
    let mut meta_written = false;
    for (k, v) in data {
        if !first {
            out.push(',');
        }
        first = false;
        write_value(&mut out, k.as_str());
        out.push(':');
        if k == "_meta" {
            out.push_str(&meta);
            meta_written = true;
        } else {
            write_value(&mut out, v);
        }
    }
    if !meta_written {
        if !first {
            out.push(',');
        }
        out.push_str("\"_meta\":");
        out.push_str(&meta);
    }
    out.push('}');
    out
}

/// [`item_json`] for a body that is JSON text (an object). Without a `_meta` key the text is
/// only spliced, not parsed: `_meta` goes last, as `item_json` appends it.
pub fn item_json_text(data_json: &str, record: &RecordMeta<'_>) -> String {
    if memchr::memmem::find(data_json.as_bytes(), b"\"_meta\"").is_some() {
        // Maybe a key (to be replaced in place), maybe inside a string: let the parse decide.
        return match serde_json::from_str::<serde_json::Map<String, Value>>(data_json) {
            Ok(map) => item_json(&map, record),
            Err(_) => item_json(&serde_json::Map::new(), record),
        };
    }
    let inner = data_json
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    let mut out = String::with_capacity(data_json.len() + 96);
    out.push('{');
    out.push_str(inner);
    if !inner.is_empty() {
        out.push(',');
    }
    out.push_str("\"_meta\":");
    let mut w = ObjectWriter::open(&mut out);
    record.write(&mut w);
    w.close();
    out.push('}');
    out
}

#[cfg(test)]
mod item_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_from_text_is_item_from_map() {
        let meta = RecordMeta {
            created: Some(1),
            modified: Some(2),
            path: Some("/p"),
            id: Some("/p"),
            ..Default::default()
        };
        for text in [
            r#"{"a":1,"b":{"c":[1,2]}}"#,
            "{}",
            "{ }",
            r#"{"_meta":{"x":1},"a":2}"#,
            r#"{"a":"not \"_meta\" a key"}"#,
            r#"{"a":{"_meta":1}}"#,
        ] {
            let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
            let from_text: Value = serde_json::from_str(&item_json_text(text, &meta)).unwrap();
            let from_map: Value = serde_json::from_str(&item_json(&map, &meta)).unwrap();
            assert_eq!(from_text, from_map, "{text}");
            assert_eq!(format!("{from_text:?}"), format!("{from_map:?}"), "key order of {text}");
        }
        assert_eq!(
            item_json_text(r#"{"a":1}"#, &meta),
            r#"{"a":1,"_meta":{"created":1,"modified":2,"path":"/p","_id":"/p"}}"#
        );
    }

    #[test]
    fn item_meta_replaces_in_place_or_appends() {
        let rec = RecordMeta {
            created: Some(1),
            modified: Some(2),
            path: Some("/p"),
            id: Some("/p"),
            ..Default::default()
        };
        let d = json!({"a": 1, "b": [2]});
        assert_eq!(
            item_json(d.as_object().unwrap(), &rec),
            r#"{"a":1,"b":[2],"_meta":{"created":1,"modified":2,"path":"/p","_id":"/p"}}"#
        );
        let tag = json!({"data": {}, "_meta": {"path": "/x"}, "created": 5});
        assert_eq!(
            item_json(tag.as_object().unwrap(), &rec),
            r#"{"data":{},"_meta":{"created":1,"modified":2,"path":"/p","_id":"/p"},"created":5}"#
        );
        assert_eq!(
            item_json(
                &serde_json::Map::new(),
                &RecordMeta {
                    path: Some("/p"),
                    id: Some("/p"),
                    ..Default::default()
                }
            ),
            r#"{"_meta":{"path":"/p","_id":"/p"}}"#
        );
    }
}
