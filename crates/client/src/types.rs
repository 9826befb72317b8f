//! What calls return: stored items, events, the session, connection states and client events.
//! Each type knows how to read itself from the wire (`from_wire`); nothing here does I/O.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::time::Duration;

/// A JSON object.
pub type Object = Map<String, Value>;

fn u64_of(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn string_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

/// happn stores and returns scalars as `{"value": …}`; anything that still is not an object is
/// wrapped the same way so that `data` is always an object.
fn into_object(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    }
}

/// Deserialise a JSON object into `T`.
fn object_as<T: DeserializeOwned>(data: &Object) -> Result<T> {
    // `T::deserialize(&Map)` is not available, so go through a `Value`; cheap next to I/O.
    Ok(serde_json::from_value(Value::Object(data.clone()))?)
}

/// The metadata happn keeps with a stored document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Meta {
    /// The document's path. For a tag, the tag's own path (`/_TAGS<path>/<id>`); for a sibling,
    /// the generated path.
    pub path: String,
    /// Creation time, ms since the epoch. Absent for `no_store` sets and projected gets.
    pub created: Option<u64>,
    /// Last modification time, ms since the epoch.
    pub modified: Option<u64>,
    /// The tag name, for tag snapshots.
    pub tag: Option<String>,
}

impl Meta {
    pub(crate) fn from_wire(meta: Option<&Value>) -> Meta {
        Meta {
            path: meta
                .and_then(|m| m.get("path").or_else(|| m.get("_id")))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            created: u64_of(meta.and_then(|m| m.get("created"))),
            modified: u64_of(meta.and_then(|m| m.get("modified"))),
            tag: string_of(meta.and_then(|m| m.get("tag"))),
        }
    }
}

/// A document: its data and its metadata.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Item {
    /// The document body (scalars come back as `{"value": …}`).
    pub data: Object,
    /// Path and timestamps.
    pub meta: Meta,
}

impl Item {
    /// An item of a multi-item reply: the data fields with `_meta` among them.
    pub(crate) fn from_array_element(v: Value) -> Item {
        let mut data = into_object(v);
        let meta = data.remove("_meta");
        Item {
            meta: Meta::from_wire(meta.as_ref()),
            data,
        }
    }

    /// An object reply: `data` plus the envelope `_meta`, which carries the record's fields.
    pub(crate) fn from_reply(data: Value, meta: Option<&Value>) -> Item {
        Item {
            data: into_object(data),
            meta: Meta::from_wire(meta),
        }
    }

    /// The data deserialised into your own type.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T> {
        object_as(&self.data)
    }
}

/// The result of [`Client::get`](crate::Client::get); which variant comes back depends on the
/// request, as in happn.
#[derive(Debug, Clone, PartialEq)]
pub enum Get {
    /// An exact path without criteria: the document, if it exists.
    One(Option<Item>),
    /// A wildcard path, or any request with criteria or `path_only`.
    Many(Vec<Item>),
    /// A request with `count: true`.
    Count(u64),
}

impl Get {
    /// The single item (`One(Some)`) or the first of `Many`.
    pub fn into_one(self) -> Option<Item> {
        match self {
            Get::One(item) => item,
            Get::Many(items) => items.into_iter().next(),
            Get::Count(_) => None,
        }
    }

    /// All items (zero or one for `One`, none for `Count`).
    pub fn into_many(self) -> Vec<Item> {
        match self {
            Get::One(item) => item.into_iter().collect(),
            Get::Many(items) => items,
            Get::Count(_) => Vec::new(),
        }
    }

    /// The count of a `Count` reply, or the number of items otherwise.
    pub fn count(&self) -> u64 {
        match self {
            Get::One(item) => u64::from(item.is_some()),
            Get::Many(items) => items.len() as u64,
            Get::Count(n) => *n,
        }
    }
}

/// What kind of change an [`Event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A `set` (plain, merge, tag, sibling or no-store).
    Set,
    /// A `remove`; the event data is `{"removed": n}`.
    Remove,
    /// An existing value sent because the subscription asked for `initial_emit`.
    Initial,
}

/// Metadata of a published event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventMeta {
    /// The path written (for a wildcard remove, the pattern; for a sibling, the new path).
    pub path: String,
    /// `"/SET@<path as sent>"` or `"/REMOVE@<path as sent>"` (for initial values, the channel).
    pub action: String,
    /// The subscription channel that matched, e.g. `"/ALL@/devices/*"`.
    pub channel: String,
    /// The receiving session's id.
    pub session_id: Option<String>,
    /// Set events: creation time of the record.
    pub created: Option<u64>,
    /// Set events: modification time of the record.
    pub modified: Option<u64>,
    /// Remove events: when the remove happened.
    pub timestamp: Option<u64>,
    /// Tag events: the tag name.
    pub tag: Option<String>,
    /// Set, remove, or an initial value.
    pub kind: EventKind,
}

/// One publication delivered to a subscription.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// The written document (set) or `{"removed": n}` (remove).
    pub data: Object,
    /// Path, action, channel and timestamps.
    pub meta: EventMeta,
}

impl Event {
    pub(crate) fn from_wire(frame: Value) -> Option<Event> {
        let Value::Object(mut frame) = frame else {
            return None;
        };
        let meta = frame.remove("_meta")?;
        let action = string_of(meta.get("action")).unwrap_or_default();
        // initialEmit values carry the `on` request's eventId; publications never do.
        let kind = if meta.get("eventId").is_some() {
            EventKind::Initial
        } else if action.starts_with("/REMOVE@") {
            EventKind::Remove
        } else {
            EventKind::Set
        };
        Some(Event {
            data: into_object(frame.remove("data").unwrap_or(Value::Null)),
            meta: EventMeta {
                path: string_of(meta.get("path")).unwrap_or_default(),
                channel: string_of(meta.get("channel")).unwrap_or_default(),
                session_id: string_of(meta.get("sessionId")),
                created: u64_of(meta.get("created")),
                modified: u64_of(meta.get("modified")),
                timestamp: u64_of(meta.get("timestamp")),
                tag: string_of(meta.get("tag")),
                action,
                kind,
            },
        })
    }

    /// The data deserialised into your own type.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T> {
        object_as(&self.data)
    }
}

/// The logged-in user of a session (secure servers only).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The user name.
    pub username: String,
}

/// The session the server created at login. A reconnect creates a new one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Session {
    /// Session id (a UUID).
    pub id: String,
    /// The session token (a JWT); `None` on insecure servers.
    pub token: Option<String>,
    /// The socket's slot number on the server.
    pub index: u64,
    /// The user; `None` on insecure servers.
    pub user: Option<User>,
    /// Login time, ms since the epoch (secure servers).
    pub timestamp: Option<u64>,
    /// The login `info` as the server recorded it.
    pub info: Object,
}

impl Session {
    pub(crate) fn from_wire(data: &Value) -> Result<Session> {
        let id = string_of(data.get("id")).ok_or_else(|| Error::Protocol(format!("login reply without a session id: {data}")))?;
        Ok(Session {
            id,
            token: string_of(data.get("token")),
            index: u64_of(data.get("index")).unwrap_or_default(),
            user: data
                .get("user")
                .and_then(|u| u.get("username"))
                .and_then(Value::as_str)
                .map(|username| User {
                    username: username.to_string(),
                }),
            timestamp: u64_of(data.get("timestamp")),
            info: data.get("info").and_then(Value::as_object).cloned().unwrap_or_default(),
        })
    }
}

/// What the server said about itself in reply to `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// The server's system name.
    pub name: String,
    /// Whether the server runs with security (logins, users, permissions).
    pub secure: bool,
    /// Whether the server wants encrypted payloads (not supported by this client).
    pub encrypt_payloads: bool,
    /// The server's public key (base64), if it sent one.
    pub public_key: Option<String>,
}

impl ServerInfo {
    pub(crate) fn from_wire(data: &Value) -> ServerInfo {
        ServerInfo {
            name: string_of(data.get("name")).unwrap_or_default(),
            secure: data.get("secure").and_then(Value::as_bool).unwrap_or(false),
            encrypt_payloads: data.get("encryptPayloads").and_then(Value::as_bool).unwrap_or(false),
            public_key: string_of(data.get("publicKey")),
        }
    }
}

/// A `type: "system"` message from the server, e.g. `server-side-disconnect` before a shutdown.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SystemMessage {
    /// `eventKey`, e.g. `"server-side-disconnect"`.
    pub event_key: String,
    /// The message payload (for `server-side-disconnect`, a reason string).
    pub data: Value,
    /// happn-rs tells clients whether to come back (`reconnect`); absent on the original.
    pub reconnect: Option<bool>,
}

impl SystemMessage {
    pub(crate) fn from_wire(frame: &Value) -> SystemMessage {
        SystemMessage {
            event_key: string_of(frame.get("eventKey")).unwrap_or_default(),
            data: frame.get("data").cloned().unwrap_or(Value::Null),
            reconnect: frame.get("reconnect").and_then(Value::as_bool),
        }
    }
}

/// Where the connection stands; see [`Client::watch_state`](crate::Client::watch_state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Logged in; requests go straight out.
    Connected,
    /// The socket was lost; the client is trying to get back. Requests made now wait (up to
    /// their timeout) for the new session.
    Reconnecting,
    /// The client is finished; every request fails with [`Error::Closed`].
    Ended,
}

/// Why a client ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EndReason {
    /// [`Client::disconnect`](crate::Client::disconnect) was called.
    Disconnected,
    /// Every `Client` handle was dropped.
    Dropped,
    /// The server asked clients not to reconnect (`primus::server::close`, or a
    /// `server-side-disconnect` with `reconnect: false`).
    ServerClosed,
    /// The socket was lost and reconnecting is turned off.
    ConnectionLost,
    /// The configured number of reconnect attempts failed.
    ReconnectGaveUp,
    /// The server refused the credentials on reconnect.
    LoginRejected(Error),
}

/// Connection events, delivered to every [`Client::events`](crate::Client::events) receiver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The socket was lost (`reason` says how); requests on the wire failed with
    /// [`Error::Disconnected`]. A reconnect follows unless the client ends.
    Disconnected {
        /// What happened (e.g. `pong timeout`, `closed by the server`).
        reason: String,
    },
    /// A reconnect attempt is scheduled after `delay`.
    Reconnecting {
        /// 1 for the first attempt after a loss.
        attempt: u32,
        /// The backoff delay before this attempt.
        delay: Duration,
    },
    /// A reconnect attempt failed; another follows.
    ReconnectFailed {
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: Error,
    },
    /// Back online with a new session; subscriptions have been re-sent.
    Reconnected {
        /// The new session.
        session: Session,
    },
    /// The server refused to restore a subscription after a reconnect; its stream stays open
    /// but receives nothing.
    ResubscribeFailed {
        /// The channel, e.g. `/SET@/a/*`.
        channel: String,
        /// The server's error.
        error: Error,
    },
    /// The client has ended.
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// A system message from the server.
    System(SystemMessage),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_from_arrays_and_replies() {
        let i = Item::from_array_element(json!({"x":1,"_meta":{"created":5,"modified":6,"path":"/a","_id":"/a"}}));
        assert_eq!(i.data, json!({"x":1}).as_object().unwrap().clone());
        assert_eq!(i.meta.path, "/a");
        assert_eq!(i.meta.created, Some(5));
        let i = Item::from_array_element(json!({"_meta":{"path":"/p","_id":"/p"}}));
        assert!(i.data.is_empty());
        assert_eq!(i.meta.created, None);
        let i = Item::from_reply(
            json!({"v":1}),
            Some(&json!({"path":"/t","tag":"T","created":1,"modified":2,"type":"response"})),
        );
        assert_eq!(i.meta.tag.as_deref(), Some("T"));
        #[derive(serde::Deserialize)]
        struct V {
            v: i32,
        }
        assert_eq!(i.data_as::<V>().unwrap().v, 1);
    }

    #[test]
    fn events() {
        let e = Event::from_wire(json!({"data":{"removed":2},"_meta":{"timestamp":9,"path":"/e/*","type":"data","sessionId":"s","action":"/REMOVE@/e/*","channel":"/REMOVE@/e/*"},"protocol":"1.1.0"})).unwrap();
        assert_eq!(e.meta.kind, EventKind::Remove);
        assert_eq!(e.meta.timestamp, Some(9));
        assert_eq!(e.data["removed"], 2);
        let e = Event::from_wire(json!({"data":{"a":1},"_meta":{"created":1,"modified":1,"path":"/iv/1","_id":"/iv/1","channel":"/ALL@/iv/*","sessionId":"s","action":"/ALL@/iv/*","type":"data","eventId":7,"status":"ok","published":false}})).unwrap();
        assert_eq!(e.meta.kind, EventKind::Initial);
        assert!(Event::from_wire(json!([1])).is_none());
    }

    #[test]
    fn sessions() {
        let s = Session::from_wire(&json!({"id":"x","token":"t","timestamp":3,"info":{"a":1},"index":2,"type":1,"user":{"username":"u"}}))
            .unwrap();
        assert_eq!(s.user.unwrap().username, "u");
        assert_eq!(s.index, 2);
        let s = Session::from_wire(&json!({"id":"x","info":{},"index":0,"type":1})).unwrap();
        assert!(s.token.is_none() && s.user.is_none());
        assert!(Session::from_wire(&json!({})).is_err());
    }
}
