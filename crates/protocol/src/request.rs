//! Incoming happn requests. Parsing is lenient where the original is (extra keys are ignored,
//! `protocol` and `timeout` are client-side only) and strict where a wrong type would otherwise
//! reach the engine.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Describe,
    Login,
    RequestNonce,
    Get,
    Set,
    Remove,
    On,
    Off,
    RevokeSession,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "describe" => Action::Describe,
            "login" => Action::Login,
            "request-nonce" => Action::RequestNonce,
            "get" => Action::Get,
            "set" => Action::Set,
            "remove" => Action::Remove,
            "on" => Action::On,
            "off" => Action::Off,
            "revoke-session" => Action::RevokeSession,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Describe => "describe",
            Action::Login => "login",
            Action::RequestNonce => "request-nonce",
            Action::Get => "get",
            Action::Set => "set",
            Action::Remove => "remove",
            Action::On => "on",
            Action::Off => "off",
            Action::RevokeSession => "revoke-session",
        }
    }
}

/// A well-formed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub action: Action,
    /// Echoed verbatim (any JSON value); `None` when the key was absent.
    pub event_id: Option<Value>,
    /// Echoed only; never used for authorisation.
    pub session_id: Option<Value>,
    pub path: Option<Value>,
    pub data: Option<Value>,
    /// `options` (empty when absent or null).
    pub options: Map<String, Value>,
}

/// Why a frame is not a request we can execute; each carries what the error reply echoes.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// Not a JSON object (null, string, number, array): the reply has no eventId or action.
    NotAnObject,
    /// `action` missing or not one we know: `Unknown request action: <action>`.
    UnknownAction {
        action: Value,
        event_id: Option<Value>,
        session_id: Option<Value>,
    },
    /// A known action with a malformed field (e.g. `options` that is not an object).
    Malformed {
        action: Action,
        event_id: Option<Value>,
        session_id: Option<Value>,
        message: String,
    },
}

impl Request {
    pub fn parse(frame: Value) -> Result<Request, RequestError> {
        let Value::Object(mut obj) = frame else {
            return Err(RequestError::NotAnObject);
        };
        let event_id = obj.remove("eventId");
        let session_id = obj.remove("sessionId");
        let action_value = obj.remove("action").unwrap_or(Value::Null);
        let Some(action) = action_value.as_str().and_then(Action::parse) else {
            return Err(RequestError::UnknownAction {
                action: action_value,
                event_id,
                session_id,
            });
        };
        let options = match obj.remove("options") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(RequestError::Malformed {
                    action,
                    event_id,
                    session_id,
                    message: format!("options must be an object, not {}", type_name(&other)),
                })
            }
        };
        Ok(Request {
            action,
            event_id,
            session_id,
            path: obj.remove("path"),
            data: obj.remove("data"),
            options,
        })
    }

    /// The path as a string, or a description of what is wrong with it.
    pub fn path_str(&self) -> Result<&str, String> {
        match &self.path {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err("a path is required".into()),
            Some(other) => Err(format!("path must be a string, not {}", type_name(other))),
        }
    }

    /// An option interpreted the way JS does: present and truthy.
    pub fn option_truthy(&self, key: &str) -> bool {
        self.options.get(key).is_some_and(truthy)
    }
}

/// JS truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_set() {
        let r = Request::parse(json!({"action":"set","eventId":"abc","path":"/a","data":{"x":1},"sessionId":"s","options":{"merge":true,"timeout":20000},"protocol":"1.1.0"})).unwrap();
        assert_eq!(r.action, Action::Set);
        assert_eq!(r.event_id, Some(json!("abc")));
        assert_eq!(r.path_str().unwrap(), "/a");
        assert!(r.option_truthy("merge"));
        assert!(!r.option_truthy("noPublish"));
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(Request::parse(json!(null)).unwrap_err(), RequestError::NotAnObject);
        assert_eq!(Request::parse(json!([1, 2])).unwrap_err(), RequestError::NotAnObject);
        match Request::parse(json!({"action":"frobnicate","eventId":4})).unwrap_err() {
            RequestError::UnknownAction { action, event_id, .. } => {
                assert_eq!(action, json!("frobnicate"));
                assert_eq!(event_id, Some(json!(4)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Request::parse(json!({"action":"get","path":"/x","options":7})).unwrap_err(),
            RequestError::Malformed { .. }
        ));
        let r = Request::parse(json!({"action":"get","path":5})).unwrap();
        assert!(r.path_str().unwrap_err().contains("a number"));
    }

    #[test]
    fn js_truthiness() {
        for v in [json!(0), json!(""), json!(null), json!(false)] {
            assert!(!truthy(&v));
        }
        for v in [json!(1), json!("x"), json!([]), json!({}), json!(true)] {
            assert!(truthy(&v));
        }
    }
}
