//! Outgoing frames: replies, multi-item replies, events and system messages, each with its
//! `_meta` keys in the order the 2.21 server emits them (clients do not care about order, but
//! trace diffs against the reference do).

use crate::error::WireError;
use crate::json::{write_i64, write_json, write_str, ObjectWriter};
use crate::PROTOCOL_VERSION;
use serde_json::Value;
use std::borrow::Cow;

/// The record part of `_meta`: timestamps and path of the document a reply or event is about.
/// Emitted order: timestamp, created, modified, path, _id, tag. The constructors are the shapes
/// the replies use.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordMeta<'a> {
    pub timestamp: Option<i64>,
    pub created: Option<i64>,
    pub modified: Option<i64>,
    pub path: Option<&'a str>,
    pub id: Option<&'a str>,
    pub tag: Option<&'a str>,
}

impl<'a> RecordMeta<'a> {
    /// A stored document in a single-record reply or an event: created, modified, path, tag.
    pub fn stored(created: i64, modified: i64, path: &'a str, tag: Option<&'a str>) -> Self {
        RecordMeta {
            created: Some(created),
            modified: Some(modified),
            path: Some(path),
            tag,
            ..Default::default()
        }
    }

    /// A stored document as an item of a list (its path also as `_id`).
    pub fn item(created: i64, modified: i64, path: &'a str, tag: Option<&'a str>) -> Self {
        RecordMeta {
            id: Some(path),
            ..RecordMeta::stored(created, modified, path, tag)
        }
    }

    /// Only the path: a projected document, or a write that was not stored (`noStore`).
    pub fn at(path: &'a str) -> Self {
        RecordMeta {
            path: Some(path),
            ..Default::default()
        }
    }

    /// Only the path, also as `_id`: an item of a projected or `path_only` list.
    pub fn item_at(path: &'a str) -> Self {
        RecordMeta {
            id: Some(path),
            ..RecordMeta::at(path)
        }
    }

    /// A remove: when it happened and the path (or pattern) removed.
    pub fn removed(timestamp: i64, path: &'a str) -> Self {
        RecordMeta {
            timestamp: Some(timestamp),
            ..RecordMeta::at(path)
        }
    }
}

/// Room for a reply's fixed text, its three timestamps and the eventId/sessionId echoes;
/// variable-length strings are added on top, so a reply is written without regrowing its buffer.
const REPLY_OVERHEAD: usize = 320;

impl RecordMeta<'_> {
    /// The record meta's strings (timestamps and keys are within [`REPLY_OVERHEAD`]).
    fn text_len(&self) -> usize {
        [self.path, self.id, self.tag].iter().map(|s| s.map_or(0, str::len)).sum()
    }

    fn write(&self, w: &mut ObjectWriter<'_>) {
        w.members(|out| self.write_members(out));
    }

    /// The members as comma-separated text; whether there were any. Each key comes with its
    /// quotes and colon in one piece: every reply and event carries these.
    fn write_members(&self, out: &mut String) -> bool {
        let mut sep = "";
        if let Some(t) = self.timestamp {
            out.push_str("\"timestamp\":");
            write_i64(out, t);
            sep = ",";
        }
        if let Some(c) = self.created {
            out.push_str(sep);
            out.push_str("\"created\":");
            write_i64(out, c);
            sep = ",";
        }
        if let Some(m) = self.modified {
            out.push_str(sep);
            out.push_str("\"modified\":");
            write_i64(out, m);
            sep = ",";
        }
        for (key, value) in [("\"path\":", self.path), ("\"_id\":", self.id), ("\"tag\":", self.tag)] {
            if let Some(v) = value {
                out.push_str(sep);
                out.push_str(key);
                write_str(out, v);
                sep = ",";
            }
        }
        !sep.is_empty()
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

    /// A buffer for a reply carrying `body` bytes of pre-rendered JSON and `record`'s strings.
    fn buffer(&self, body: usize, record_text: usize) -> String {
        let session = match self.session_id {
            Some(Value::String(s)) => s.len(),
            _ => 0,
        };
        String::with_capacity(REPLY_OVERHEAD + body + record_text + self.action.len() + session)
    }

    /// `{"data":<data_json>,"_meta":{<record>,type,status,published,eventId,sessionId,action},"protocol":"1.1.0"}`
    ///
    /// The reply to every set and get, so written as a few constant pieces rather than member
    /// by member (the tests compare it with the general writer's text).
    pub fn ok(&self, data_json: &str, record: &RecordMeta<'_>) -> String {
        let mut out = self.buffer(data_json.len(), record.text_len());
        out.push_str("{\"data\":");
        out.push_str(data_json);
        out.push_str(",\"_meta\":{");
        if record.write_members(&mut out) {
            out.push(',');
        }
        out.push_str(if self.published {
            "\"type\":\"response\",\"status\":\"ok\",\"published\":true"
        } else {
            "\"type\":\"response\",\"status\":\"ok\",\"published\":false"
        });
        if let Some(e) = self.event_id {
            out.push_str(",\"eventId\":");
            write_json(&mut out, e);
        }
        if let Some(s) = self.session_id {
            out.push_str(",\"sessionId\":");
            write_json(&mut out, s);
        }
        out.push_str(",\"action\":");
        write_str(&mut out, self.action);
        out.push_str("},\"protocol\":\"1.1.0\"}");
        debug_assert!(PROTOCOL_VERSION == "1.1.0");
        out
    }

    /// [`Reply::ok`] written member by member, as the other replies are: what `ok` must equal.
    #[cfg(test)]
    fn ok_by_members(&self, data_json: &str, record: &RecordMeta<'_>) -> String {
        let mut out = String::new();
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
        let mut out = self.buffer(data_json.len(), 0);
        let mut w = ObjectWriter::open(&mut out);
        w.raw("data", data_json);
        let mut m = w.object("_meta");
        self.write_tail(&mut m, true, "ok");
        m.close();
        w.str("protocol", PROTOCOL_VERSION);
        w.close();
        out
    }

    /// `on` with `initialCallback`: data is the current values as items (`data_json` with its
    /// record meta as `_meta`), plus the original's redundant top-level `initialValues` array
    /// of `{"data":<item>,"_meta":<record meta>}`.
    pub fn ok_initial_values<'v>(&self, values: impl ExactSizeIterator<Item = (&'v str, RecordMeta<'v>)>) -> String {
        let mut items = Vec::with_capacity(values.len());
        let mut raw = Vec::with_capacity(values.len());
        for (data_json, record) in values {
            let item = item_json_text(data_json, &record);
            let mut r = String::with_capacity(item.len() + REPLY_OVERHEAD + record.text_len());
            r.push_str("{\"data\":");
            r.push_str(&item);
            r.push_str(",\"_meta\":");
            let mut w = ObjectWriter::open(&mut r);
            record.write(&mut w);
            w.close();
            r.push('}');
            raw.push(r);
            items.push(item);
        }
        let (items_json, initial_values_json) = (format!("[{}]", items.join(",")), format!("[{}]", raw.join(",")));
        let mut out = self.buffer(items_json.len() + initial_values_json.len(), 0);
        let mut w = ObjectWriter::open(&mut out);
        w.raw("data", &items_json);
        let mut m = w.object("_meta");
        self.write_tail(&mut m, true, "ok");
        m.close();
        w.raw("initialValues", &initial_values_json);
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
        let mut out = self.buffer(error_text_len(error), 0);
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
        write_error(m, error);
    }
}

/// `_meta.error`, written field by field in `WireError`'s serde order (name, then message and
/// reason when present) instead of through serde_json. The exhaustive destructuring makes a new
/// field a compile error here rather than a silent difference from the derived form.
fn write_error(m: &mut ObjectWriter<'_>, error: &WireError) {
    let WireError { name, message, reason } = error;
    let mut e = m.object("error");
    e.str("name", name);
    if let Some(message) = message {
        e.str("message", message);
    }
    if let Some(reason) = reason {
        e.str("reason", reason);
    }
    e.close();
}

fn error_text_len(error: &WireError) -> usize {
    error.name.len() + error.message.as_ref().map_or(0, String::len) + error.reason.as_ref().map_or(0, String::len)
}

/// The error reply for a frame that is not a request object at all: no eventId, no action.
pub fn anonymous_error(error: &WireError) -> String {
    let mut out = String::with_capacity(REPLY_OVERHEAD + error_text_len(error));
    let mut w = ObjectWriter::open(&mut out);
    w.raw("data", "null");
    let mut m = w.object("_meta");
    m.str("type", "response").str("status", "error").bool("published", false);
    write_error(&mut m, error);
    m.close();
    w.str("protocol", PROTOCOL_VERSION);
    w.close();
    out
}

/// The error reply for an unknown action: echoes eventId, sessionId and the action as sent.
pub fn unknown_action_error(action: &Value, event_id: Option<&Value>, session_id: Option<&Value>) -> String {
    let mut out = String::with_capacity(REPLY_OVERHEAD);
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
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Null => Cow::Borrowed("undefined"),
        other => Cow::Owned(other.to_string()),
    };
    write_error(&mut m, &WireError::unknown_action(&text));
    m.close();
    w.str("protocol", PROTOCOL_VERSION);
    w.close();
    out
}

/// One event of `on` with `initialEmit`: a current value of the subscribed path, sent after the
/// reply and carrying the `on` request's eventId. (`data` is written from the parsed document,
/// as the original re-serialises it.)
pub fn initial_emit_event(
    data: &serde_json::Map<String, Value>,
    record: &RecordMeta<'_>,
    channel: &str,
    session_id: &str,
    event_id: Option<&Value>,
) -> String {
    let mut s = String::with_capacity(REPLY_OVERHEAD + record.text_len() + 2 * channel.len() + session_id.len());
    let mut w = ObjectWriter::open(&mut s);
    w.value("data", data);
    let mut m = w.object("_meta");
    record.write(&mut m);
    m.str("channel", channel)
        .str("sessionId", session_id)
        .str("action", channel)
        .str("type", "data");
    if let Some(e) = event_id {
        m.value("eventId", e);
    }
    m.str("status", "ok").bool("published", false);
    m.close();
    w.str("protocol", PROTOCOL_VERSION);
    w.close();
    s
}

/// An event for one subscription, serialised as a template once per publish: the document body
/// and record meta are written once, and only the recipient's `sessionId` and the subscription
/// `channel` are spliced in per recipient.
#[derive(Debug, Clone)]
pub struct EventMeta {
    /// `{"data":…,"_meta":{<record meta>,"type":"data",` then, from `action_at`,
    /// `"action":"/SET@/x","channel":` (one buffer: one allocation per publish).
    template: String,
    action_at: usize,
    /// The original copies the publisher's reply `_meta`, so `sessionId` sits before `action`
    /// when the publisher's request carried one, and is appended after `channel` otherwise.
    session_before_action: bool,
}

impl EventMeta {
    pub fn new(data_json: &str, record: &RecordMeta<'_>, action: &str, session_before_action: bool) -> Self {
        let mut template = String::with_capacity(data_json.len() + record.text_len() + action.len() + 160);
        template.push_str("{\"data\":");
        template.push_str(data_json);
        template.push_str(",\"_meta\":{");
        // The record meta goes straight into the open `_meta` object, which stays open.
        let mut w = ObjectWriter::resume(&mut template, true);
        record.write(&mut w);
        w.str("type", "data");
        template.push(',');
        let action_at = template.len();
        template.push_str("\"action\":");
        write_str(&mut template, action);
        template.push_str(",\"channel\":");
        EventMeta {
            template,
            action_at,
            session_before_action,
        }
    }

    /// The frame for one recipient.
    pub fn render(&self, recipient_session: &str, channel: &str) -> String {
        const SESSION_KEY: &str = "\"sessionId\":";
        const PROTOCOL_KEY: &str = "},\"protocol\":\"";
        // +8 covers the quotes around both strings, the comma beside `sessionId` and the closing `"}`.
        let mut out = String::with_capacity(
            self.template.len()
                + SESSION_KEY.len()
                + recipient_session.len()
                + channel.len()
                + PROTOCOL_KEY.len()
                + PROTOCOL_VERSION.len()
                + 8,
        );
        if self.session_before_action {
            let (head, action) = self.template.split_at(self.action_at);
            out.push_str(head);
            out.push_str(SESSION_KEY);
            write_str(&mut out, recipient_session);
            out.push(',');
            out.push_str(action);
            write_str(&mut out, channel);
        } else {
            out.push_str(&self.template);
            write_str(&mut out, channel);
            out.push(',');
            out.push_str(SESSION_KEY);
            write_str(&mut out, recipient_session);
        }
        out.push_str(PROTOCOL_KEY);
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
    fn ok_equals_the_general_writer() {
        let (eid, sid, other) = (json!(4), json!("s\"1"), json!({"x":[1]}));
        let metas = [
            RecordMeta::default(),
            RecordMeta {
                path: Some("/a\\b"),
                ..Default::default()
            },
            RecordMeta {
                timestamp: Some(-1),
                created: Some(1),
                modified: Some(2),
                path: Some("/p"),
                id: Some("i"),
                tag: Some("t"),
            },
            RecordMeta {
                modified: Some(2),
                tag: Some("t"),
                ..Default::default()
            },
        ];
        for meta in &metas {
            for (event_id, session_id) in [(None, None), (Some(&eid), Some(&sid)), (Some(&other), None), (None, Some(&eid))] {
                for published in [true, false] {
                    let r = Reply {
                        event_id,
                        session_id,
                        action: "/SET@/é\u{2028}",
                        published,
                    };
                    let text = r.ok(r#"{"a":1}"#, meta);
                    assert_eq!(text, r.ok_by_members(r#"{"a":1}"#, meta));
                    serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
                }
            }
        }
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
    fn error_object_matches_its_serde_form() {
        let errors = [
            WireError::named("Unknown request action: \"x\"\n"),
            WireError::access_denied("unauthorized", None),
            WireError::access_denied("unauthorized", Some("token \u{1} expired 😀".into())),
            WireError {
                name: "n".into(),
                message: None,
                reason: Some("r".into()),
            },
        ];
        for e in &errors {
            let mut out = String::new();
            let mut w = ObjectWriter::open(&mut out);
            write_error(&mut w, e);
            w.close();
            assert_eq!(out, format!("{{\"error\":{}}}", serde_json::to_string(e).unwrap()));
        }
    }

    #[test]
    fn event_and_reply_strings_are_escaped_like_serde() {
        let (path, session, channel) = ("/e/\"q\"\\\u{2028}", "s\n1", "/ALL@/e/\t*");
        let rec = RecordMeta {
            path: Some(path),
            ..Default::default()
        };
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let ev = EventMeta::new("1", &rec, path, false).render(session, channel);
        assert_eq!(
            ev,
            format!(
                r#"{{"data":1,"_meta":{{"path":{p},"type":"data","action":{p},"channel":{c},"sessionId":{s}}},"protocol":"1.1.0"}}"#,
                p = q(path),
                c = q(channel),
                s = q(session)
            )
        );
        let sid = json!(session);
        let r = Reply {
            event_id: Some(&json!(1.5)),
            session_id: Some(&sid),
            action: path,
            published: false,
        };
        assert_eq!(
            r.ok("[]", &rec),
            format!(
                r#"{{"data":[],"_meta":{{"path":{p},"type":"response","status":"ok","published":false,"eventId":1.5,"sessionId":{s},"action":{p}}},"protocol":"1.1.0"}}"#,
                p = q(path),
                s = q(session)
            )
        );
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
    // The meta is written in place (at most once) rather than rendered to a scratch string.
    let write_meta = |out: &mut String| {
        let mut w = ObjectWriter::open(out);
        record.write(&mut w);
        w.close();
    };
    let mut out = String::with_capacity(REPLY_OVERHEAD + record.text_len());
    out.push('{');
    let mut first = true;
    let mut meta_written = false;
    for (k, v) in data {
        if !first {
            out.push(',');
        }
        first = false;
        write_str(&mut out, k);
        out.push(':');
        if k == "_meta" {
            write_meta(&mut out);
            meta_written = true;
        } else {
            write_json(&mut out, v);
        }
    }
    if !meta_written {
        if !first {
            out.push(',');
        }
        out.push_str("\"_meta\":");
        write_meta(&mut out);
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

#[cfg(test)]
mod initial_value_tests {
    use super::*;
    use serde_json::json;

    /// The frames `on` sends with current values, as the 2.21 server writes them.
    #[test]
    fn initial_values_and_emitted_events() {
        let reply = Reply {
            event_id: Some(&json!(3)),
            session_id: None,
            action: "on",
            published: false,
        };
        let meta = RecordMeta::item(1, 2, "/p", None);
        let item = r#"{"a":1,"_meta":{"created":1,"modified":2,"path":"/p","_id":"/p"}}"#;
        assert_eq!(
            reply.ok_initial_values([(r#"{"a":1}"#, meta)].into_iter()),
            format!(
                r#"{{"data":[{item}],"_meta":{{"status":"ok","type":"response","published":false,"eventId":3,"action":"on"}},"initialValues":[{{"data":{item},"_meta":{{"created":1,"modified":2,"path":"/p","_id":"/p"}}}}],"protocol":"1.1.0"}}"#
            )
        );
        assert_eq!(
            reply.ok_initial_values(std::iter::empty()),
            r#"{"data":[],"_meta":{"status":"ok","type":"response","published":false,"eventId":3,"action":"on"},"initialValues":[],"protocol":"1.1.0"}"#
        );
        let data = json!({"a": 1});
        assert_eq!(
            initial_emit_event(data.as_object().unwrap(), &meta, "/SET@/p", "s", Some(&json!(3))),
            r#"{"data":{"a":1},"_meta":{"created":1,"modified":2,"path":"/p","_id":"/p","channel":"/SET@/p","sessionId":"s","action":"/SET@/p","type":"data","eventId":3,"status":"ok","published":false},"protocol":"1.1.0"}"#
        );
    }

    #[test]
    fn record_meta_shapes() {
        let text = |m: RecordMeta<'_>| {
            let mut out = String::new();
            m.write_members(&mut out);
            out
        };
        assert_eq!(
            text(RecordMeta::stored(1, 2, "/p", Some("t"))),
            r#""created":1,"modified":2,"path":"/p","tag":"t""#
        );
        assert_eq!(text(RecordMeta::item_at("/p")), r#""path":"/p","_id":"/p""#);
        assert_eq!(text(RecordMeta::removed(5, "/p/*")), r#""timestamp":5,"path":"/p/*""#);
    }
}
