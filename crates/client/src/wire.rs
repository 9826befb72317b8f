//! Frames in both directions: writing requests with the JS client's field order, and sorting
//! incoming frames into replies, publications, system messages and Primus control strings.

use crate::error::{Error, Result};
use happn_protocol::{decode_frame, encode_control, Action, Control, Frame, PROTOCOL_VERSION};
use serde_json::{Map, Value};

/// A request waiting to be written.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub event_id: u64,
    pub action: Action,
    pub path: Option<String>,
    pub data: Option<Value>,
    /// `None` leaves `options` out of the frame (describe, login, revoke-session).
    pub options: Option<Map<String, Value>>,
    /// Set for `off` requests: the server session (see `Registry::generation`) whose
    /// subscription count they adjust. Written only while that session is the live one;
    /// otherwise they are answered locally, since the session they refer to is gone.
    pub generation: Option<u64>,
}

impl Outgoing {
    pub fn new(event_id: u64, action: Action) -> Self {
        Outgoing {
            event_id,
            action,
            path: None,
            data: None,
            options: None,
            generation: None,
        }
    }
}

/// `{"action","eventId","path"?,"data"?,"sessionId"?,"options"?,"protocol"}`, in that order.
/// Like the JS client, `timeout` (client-side only; servers ignore it) is appended to `options`.
pub(crate) fn encode_request(o: &Outgoing, session_id: Option<&str>, timeout_ms: u64) -> String {
    let mut m = Map::new();
    m.insert("action".into(), o.action.as_str().into());
    m.insert("eventId".into(), o.event_id.into());
    if let Some(p) = &o.path {
        m.insert("path".into(), p.clone().into());
    }
    if let Some(d) = &o.data {
        m.insert("data".into(), d.clone());
    }
    if let Some(s) = session_id {
        m.insert("sessionId".into(), s.into());
    }
    if let Some(opts) = &o.options {
        let mut opts = opts.clone();
        opts.insert("timeout".into(), timeout_ms.into());
        m.insert("options".into(), Value::Object(opts));
    }
    m.insert("protocol".into(), PROTOCOL_VERSION.into());
    Value::Object(m).to_string()
}

/// The heartbeat frame: `"primus::ping::<ms since the epoch>"`.
pub(crate) fn encode_ping(now_ms: u128) -> String {
    encode_control(&format!("primus::ping::{now_ms}"))
}

/// One decoded server frame.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// `"primus::pong::<n>"`.
    Pong,
    /// `"primus::server::close"`: the close that follows means "do not reconnect".
    ServerClose,
    /// The reply to request `event_id`. `Ok` holds the whole object frame, or, for array
    /// replies, the items without the trailing `_meta`.
    Reply { event_id: u64, result: Result<Value> },
    /// A publication (`_meta.type == "data"`), routed by `_meta.channel`.
    Data(Value),
    /// A system message (`_meta.type == "system"`).
    System(Value),
    /// Anything else; logged and dropped, as the JS client does.
    Ignored(String),
}

fn event_id_of(meta: &Value) -> Option<u64> {
    meta.get("eventId").and_then(Value::as_u64)
}

fn reply_result(meta: &Value, ok: Value) -> Result<Value> {
    if meta.get("status").and_then(Value::as_str) == Some("error") {
        Err(Error::from_wire(meta.get("error")))
    } else {
        Ok(ok)
    }
}

/// Sort a text frame.
pub(crate) fn classify(text: &str) -> Incoming {
    let value = match decode_frame(text) {
        Frame::Message(v) => v,
        Frame::Control(Control::Ping(_)) => return Incoming::Ignored("ping from the server".into()),
        Frame::Control(Control::Id) => return Incoming::Ignored("primus::id:: from the server".into()),
        Frame::Invalid(e) => return Incoming::Ignored(format!("invalid JSON: {e}")),
    };
    match value {
        Value::String(s) => {
            if s.starts_with("primus::pong::") {
                Incoming::Pong
            } else if s == "primus::server::close" {
                Incoming::ServerClose
            } else {
                Incoming::Ignored(format!("string frame {s:?}"))
            }
        }
        // Multi-item replies: the last element is the reply's `_meta`.
        Value::Array(mut items) => {
            let Some(meta) = items.pop() else {
                return Incoming::Ignored("empty array".into());
            };
            match event_id_of(&meta) {
                Some(event_id) => Incoming::Reply {
                    event_id,
                    result: reply_result(&meta, Value::Array(items)),
                },
                None => Incoming::Ignored("array reply without an eventId".into()),
            }
        }
        Value::Object(obj) => {
            let Some(meta) = obj.get("_meta") else {
                return Incoming::Ignored("object without _meta".into());
            };
            match meta.get("type").and_then(Value::as_str) {
                Some("data") => Incoming::Data(Value::Object(obj)),
                Some("system") => Incoming::System(Value::Object(obj)),
                _ => match event_id_of(meta) {
                    Some(event_id) => {
                        let meta = meta.clone();
                        Incoming::Reply {
                            event_id,
                            result: reply_result(&meta, Value::Object(obj)),
                        }
                    }
                    None => Incoming::Ignored(format!("reply without an eventId: {}", Value::Object(obj.clone()))),
                },
            }
        }
        other => Incoming::Ignored(format!("unexpected frame {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_like_the_js_client() {
        let mut o = Outgoing::new(3, Action::Set);
        o.path = Some("/set/some/data".into());
        o.data = Some(json!({"data":{"was":"set"}}));
        o.options = Some(Map::new());
        assert_eq!(
            encode_request(&o, Some("sid"), 20000),
            r#"{"action":"set","eventId":3,"path":"/set/some/data","data":{"data":{"was":"set"}},"sessionId":"sid","options":{"timeout":20000},"protocol":"1.1.0"}"#
        );
        assert_eq!(
            encode_request(&Outgoing::new(1, Action::Describe), None, 20000),
            r#"{"action":"describe","eventId":1,"protocol":"1.1.0"}"#
        );
        assert_eq!(encode_ping(17), r#""primus::ping::17""#);
    }

    #[test]
    fn classifies_frames() {
        assert!(matches!(classify(r#""primus::pong::5""#), Incoming::Pong));
        assert!(matches!(classify(r#""primus::server::close""#), Incoming::ServerClose));
        assert!(matches!(classify("{nope"), Incoming::Ignored(_)));
        match classify(r#"[{"a":1,"_meta":{"path":"/a"}},{"type":"response","status":"ok","eventId":4}]"#) {
            Incoming::Reply {
                event_id: 4,
                result: Ok(v),
            } => assert_eq!(v, json!([{"a":1,"_meta":{"path":"/a"}}])),
            other => panic!("{other:?}"),
        }
        match classify(
            r#"{"data":null,"_meta":{"type":"response","status":"error","eventId":9,"error":{"name":"AccessDenied","message":"unauthorized"}},"protocol":"1.1.0"}"#,
        ) {
            Incoming::Reply {
                event_id: 9,
                result: Err(e),
            } => assert!(e.is_access_denied()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(r#"{"data":{},"_meta":{"type":"data","channel":"/ALL@*","eventId":3}}"#),
            Incoming::Data(_)
        ));
        assert!(matches!(
            classify(r#"{"_meta":{"type":"system"},"eventKey":"server-side-disconnect","data":"x"}"#),
            Incoming::System(_)
        ));
        // Errors without an eventId (unknown actions) cannot be matched to a request.
        assert!(matches!(
            classify(r#"{"data":null,"_meta":{"type":"response","status":"error","error":{"name":"x"}}}"#),
            Incoming::Ignored(_)
        ));
    }
}
