//! Incoming happn requests. Parsing is lenient where the original is (extra keys are ignored,
//! `protocol` and `timeout` are client-side only) and strict where a wrong type would otherwise
//! reach the engine.

use crate::command::Command;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

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

/// A request's `data`. The streaming parser ([`crate::decode_request`]) keeps a `set`'s body as
/// the client's JSON text, checked to parse exactly as a `Value` would: the store keeps bodies
/// as text, so parsing it only to write the same text out again is work saved on every set.
/// Every other action's data is parsed.
#[derive(Clone)]
pub enum Data {
    Value(Value),
    /// Checked JSON text, shared: the store keeps this very allocation as the body.
    Json(Arc<str>),
}

impl Data {
    pub fn to_value(&self) -> Cow<'_, Value> {
        match self {
            Data::Value(v) => Cow::Borrowed(v),
            Data::Json(raw) => Cow::Owned(parse_checked(raw)),
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Data::Value(v) => v,
            Data::Json(raw) => parse_checked(&raw),
        }
    }
}

/// Parse text the streaming parser checked with [`parses_like_a_value`] (or found to parse).
fn parse_checked(json: &str) -> Value {
    serde_json::from_str(json).expect("checked to parse when the request was read")
}

/// The same request whichever form its data is in.
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.to_value() == other.to_value()
    }
}

/// As the parsed value, so both forms print alike (the decoder tests compare the two paths).
impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_value().fmt(f)
    }
}

/// A well-formed request: the envelope every action shares, and what its action carries
/// ([`Command`], its options typed).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub command: Command,
    /// Echoed verbatim (any JSON value); `None` when the key was absent.
    pub event_id: Option<Value>,
    /// Echoed only; never used for authorisation.
    pub session_id: Option<Value>,
    pub path: Option<Value>,
    /// A set's body (see [`Data`]); `None` for the actions whose data is read into the command.
    pub data: Option<Data>,
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
    /// Boxed from the start: a request is a few hundred bytes and travels through several
    /// calls and a task before it is answered. (The error stays unboxed: it is rare, and is
    /// answered at once.)
    #[allow(clippy::result_large_err)]
    pub fn parse(frame: Value) -> Result<Box<Request>, RequestError> {
        let Value::Object(mut obj) = frame else {
            return Err(RequestError::NotAnObject);
        };
        let action = match obj.remove("action") {
            Some(Value::String(s)) => Action::parse(&s).ok_or(Value::String(s)),
            other => Err(other.unwrap_or(Value::Null)),
        };
        Envelope {
            action,
            event_id: obj.remove("eventId"),
            session_id: obj.remove("sessionId"),
            path: obj.remove("path"),
            data: obj.remove("data").map(Data::Value),
            options: obj.remove("options"),
        }
        .into_request()
    }

    /// The path as a string, or a description of what is wrong with it.
    pub fn path_str(&self) -> Result<&str, String> {
        match &self.path {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err("a path is required".into()),
            Some(other) => Err(format!("path must be a string, not {}", type_name(other))),
        }
    }

    pub fn action(&self) -> Action {
        self.command.action()
    }
}

/// The fields of a request object, however it was read. Both the `Value` path ([`Request::parse`])
/// and the streaming one ([`parse_request_str_with`]) end here, so they cannot disagree on what is an
/// error.
pub(crate) struct Envelope {
    /// The known action, or what `action` held instead (`Null` when absent) for the error reply.
    pub(crate) action: Result<Action, Value>,
    pub(crate) event_id: Option<Value>,
    pub(crate) session_id: Option<Value>,
    pub(crate) path: Option<Value>,
    pub(crate) data: Option<Data>,
    pub(crate) options: Option<Value>,
}

impl Envelope {
    /// An object with none of the request's keys.
    pub(crate) fn empty() -> Envelope {
        Envelope {
            action: Err(Value::Null),
            event_id: None,
            session_id: None,
            path: None,
            data: None,
            options: None,
        }
    }

    #[allow(clippy::result_large_err)] // as Request::parse, whose result this is
    fn into_request(self) -> Result<Box<Request>, RequestError> {
        let Envelope {
            action,
            event_id,
            session_id,
            path,
            mut data,
            options,
        } = self;
        let action = match action {
            Ok(a) => a,
            Err(action) => {
                return Err(RequestError::UnknownAction {
                    action,
                    event_id,
                    session_id,
                })
            }
        };
        let options = match options {
            None | Some(Value::Null) => Map::new(),
            // Only what the action reads is kept (`Command::read`).
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
        let command = Command::read(action, options, &mut data);
        Ok(Box::new(Request {
            command,
            event_id,
            session_id,
            path,
            data,
        }))
    }
}

/// Parse one JSON text straight into a request, as `serde_json::from_str::<Value>` followed by
/// [`Request::parse`] would, but without building the envelope's map (every key of which would
/// be hashed and allocated only to be removed again). The field values are still `Value`s.
///
/// The outer `Err` is invalid JSON, with serde_json's own message: every value, including ones
/// under keys we ignore, goes through the same `deserialize_any` parse that `Value` uses, so the
/// first error (and its position, and the 128-level recursion limit) is the same.
// The same (large) result as `Request::parse`, moved once to the caller.
#[allow(clippy::result_large_err)]
///
/// `data` is first taken as raw text (see [`Data`]), by serde_json's skipping scanner, which
/// checks the grammar but not what a `Value` parse also refuses. Text that could hit one of those
/// refusals, and any frame that fails, is parsed again the `Value` way, so the answer (and error
/// text) is always that path's.
///
/// With `use_scanner` false the hand-written scanner is skipped (only for the fuzz target, which
/// compares the two; see `frame::decode_request_without_scanner`).
#[inline(always)]
pub(crate) fn parse_request_str_with(text: &str, use_scanner: bool) -> Result<Result<Box<Request>, RequestError>, serde_json::Error> {
    let value_path = || serde_json::from_str::<Value>(text).map(Request::parse);
    // The envelopes clients send are read by hand; any other shape by serde_json.
    let mut env = Envelope::empty();
    // The scanner checks `data` itself (see `scan`); serde_json's skipping reader only the grammar.
    let scanned = use_scanner && crate::scan::read_simple_envelope(text, &mut env);
    if !scanned {
        let Ok(Incoming(envelope)) = serde_json::from_str::<Incoming>(text) else {
            return value_path();
        };
        let Some(read) = envelope else {
            return Ok(Err(RequestError::NotAnObject));
        };
        env = read;
    }
    if let Some(Data::Json(raw)) = &env.data {
        // The envelope is one level of serde_json's 128.
        if !scanned && !parses_like_a_value(raw, 126) {
            return value_path();
        }
        if env.action != Ok(Action::Set) {
            env.data = Some(Data::Value(parse_checked(raw)));
        }
    }
    Ok(env.into_request())
}

/// True when JSON text that serde_json's skipping scanner accepted surely parses into a `Value`
/// too, nested no deeper than `max_depth`. What a `Value` parse refuses beyond the grammar: deeper
/// nesting, `\u` escapes that are lone surrogates, and numbers out of `f64` range. Rather than
/// decode, this answers false for any `\u` escape, exponent or very long number (all rare in
/// data), and the caller parses those the `Value` way.
fn parses_like_a_value(json: &str, max_depth: usize) -> bool {
    let bytes = json.as_bytes();
    let (mut depth, mut number_len, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                number_len += 1;
                // A plain decimal overflows f64 only past 309 digits.
                if number_len > 300 {
                    return false;
                }
                continue;
            }
            b'e' | b'E' if number_len > 0 => return false,
            b'"' => {
                // To the closing quote; only a `\u` escape needs a look.
                loop {
                    match memchr::memchr2(b'"', b'\\', bytes.get(i..).unwrap_or_default()) {
                        Some(n) if bytes[i + n] == b'"' => {
                            i += n + 1;
                            break;
                        }
                        Some(n) if bytes.get(i + n + 1) == Some(&b'u') => return false,
                        Some(n) => i += n + 2,
                        None => return true,
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        number_len = 0;
    }
    true
}

/// The error reply owed to a frame that [`crate::decode_request`] (or [`crate::decode_frame`])
/// found invalid, when it is a request object in JSON's grammar that only a full parse refuses:
/// a number out of `f64` range (say 5,000 digits), a lone surrogate escape, nesting past 128
/// levels. Such a frame is a request the client is waiting on, so it is answered with an error
/// naming the problem (`error`, the parser's message), addressed by its `eventId`.
///
/// The frame is read again with every value but `action`, `eventId` and `sessionId` skipped by
/// serde_json's scanner, which checks the grammar but neither ranges, escapes' code points nor
/// depth (and needs no recursion for depth). `None` for text that is not JSON at all (the
/// original drops it without a reply, and so do we), for anything but an object, and when the
/// `eventId` itself cannot be read (there is then no way to address a reply).
pub fn unreadable_request(text: &str, error: &str) -> Option<RequestError> {
    let Ok(Salvaged(fields)) = serde_json::from_str::<Salvaged>(text) else {
        return None;
    };
    let [action, event_id, session_id] = fields;
    let read = |raw: Option<&RawValue>| raw.map(|r| serde_json::from_str::<Value>(r.get()));
    let event_id = match read(event_id) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return None,
    };
    // Only echoed: an unreadable one is left out.
    let session_id = read(session_id).and_then(Result::ok);
    let action = match read(action) {
        Some(Ok(Value::String(s))) => Action::parse(&s).ok_or(Value::String(s)),
        Some(Ok(other)) => Err(other),
        // As a missing action: "Unknown request action: undefined".
        None | Some(Err(_)) => Err(Value::Null),
    };
    let action = match action {
        Ok(a) => a,
        // The answer a readable frame with this action gets.
        Err(action) => {
            return Some(RequestError::UnknownAction {
                action,
                event_id,
                session_id,
            })
        }
    };
    let message = if error.contains("recursion limit") {
        "message is nested too deeply (the limit is 128 levels)".to_owned()
    } else {
        format!("invalid request: {error}")
    };
    Some(RequestError::Malformed {
        action,
        event_id,
        session_id,
        message,
    })
}

/// `action`, `eventId` and `sessionId` of a request object as their JSON text (the last of each
/// when repeated); every other value skipped unparsed.
struct Salvaged<'a>([Option<&'a RawValue>; 3]);

impl<'de> Deserialize<'de> for Salvaged<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SalvageVisitor;
        impl<'de> Visitor<'de> for SalvageVisitor {
            type Value = Salvaged<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Salvaged<'de>, A::Error> {
                let mut fields = [None; 3];
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Action => 0,
                        Key::EventId => 1,
                        Key::SessionId => 2,
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    fields[slot] = Some(map.next_value::<&RawValue>()?);
                }
                Ok(Salvaged(fields))
            }
        }
        d.deserialize_map(SalvageVisitor)
    }
}

/// The request object's fields, or `None` for any other JSON value.
struct Incoming(Option<Envelope>);

impl<'de> Deserialize<'de> for Incoming {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IncomingVisitor)
    }
}

/// The top-level value: an object becomes a request; anything else is parsed (so invalid JSON
/// is still an error) and answered as not an object.
struct IncomingVisitor;

impl<'de> Visitor<'de> for IncomingVisitor {
    type Value = Incoming;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Incoming, A::Error> {
        let mut env = Envelope::empty();
        // Assignments overwrite, so a repeated key keeps its last value, as a map insert does.
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Action => env.action = map.next_value_seed(ActionSeed)?,
                Key::EventId => env.event_id = Some(map.next_value()?),
                Key::SessionId => env.session_id = Some(map.next_value()?),
                Key::Path => env.path = Some(map.next_value()?),
                Key::Data => {
                    // Only the last `data` is checked after the walk (`parses_like_a_value`); one it
                    // replaces must pass here, or a lone surrogate in it would go unnoticed. On
                    // failure the caller takes the `Value` path, which gives serde_json's error.
                    if let Some(Data::Json(replaced)) = &env.data {
                        if !parses_like_a_value(replaced, 126) {
                            return Err(de::Error::custom("a repeated `data` needs the Value parse"));
                        }
                    }
                    env.data = Some(Data::Json(Arc::from(map.next_value::<&RawValue>()?.get())));
                }
                Key::Options => env.options = Some(map.next_value_seed(OptionsSeed)?),
                Key::Other => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Incoming(Some(env)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Incoming, A::Error> {
        Skip.visit_seq(seq)?;
        Ok(Incoming(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Incoming, E> {
        Ok(Incoming(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Incoming, E> {
        Ok(Incoming(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Incoming, E> {
        Ok(Incoming(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Incoming, E> {
        Ok(Incoming(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Incoming, E> {
        Ok(Incoming(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Incoming, E> {
        Ok(Incoming(None))
    }
}

/// A key of the request object, recognised from the borrowed (or unescaped scratch) text.
enum Key {
    Action,
    EventId,
    SessionId,
    Path,
    Data,
    Options,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "action" => Key::Action,
                    "eventId" => Key::EventId,
                    "sessionId" => Key::SessionId,
                    "path" => Key::Path,
                    "data" => Key::Data,
                    "options" => Key::Options,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// `action`: a known action name is matched in place; anything else becomes the `Value` the
/// "Unknown request action" reply echoes.
struct ActionSeed;

impl<'de> DeserializeSeed<'de> for ActionSeed {
    type Value = Result<Action, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ActionSeed {
    type Value = Result<Action, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Action::parse(s).ok_or_else(|| Value::String(s.to_owned())))
    }

    // The rest build exactly the `Value` that `Value`'s own visitor would (as `OptionsSeed` does).
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        OptionsSeed.visit_unit().map(Err)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        OptionsSeed.visit_bool(b).map(Err)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        OptionsSeed.visit_i64(n).map(Err)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        OptionsSeed.visit_u64(n).map(Err)
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        OptionsSeed.visit_f64(n).map(Err)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        OptionsSeed.visit_seq(seq).map(Err)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Err)
    }
}

/// `options`: an object is read into a map without `timeout`, the client's own request timeout,
/// which the server never reads (the 2.21 client sends it with every request, so dropping it
/// spares a map per request); anything else is kept as the `Value` the error reply describes.
struct OptionsSeed;

impl<'de> DeserializeSeed<'de> for OptionsSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OptionsSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut options = Map::new();
        while let Some(key) = map.next_key::<OptionKey>()? {
            match key {
                OptionKey::Timeout => {
                    map.next_value::<Skip>()?;
                }
                OptionKey::Name(name) => {
                    let value = map.next_value()?;
                    options.insert(name, value);
                }
            }
        }
        Ok(Value::Object(options))
    }

    // The rest build exactly the `Value` that `Value`'s own visitor would.
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
    }
}

/// A key of `options`: `timeout` is recognised without allocating.
enum OptionKey {
    Timeout,
    Name(String),
}

impl<'de> Deserialize<'de> for OptionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OptionKeyVisitor;
        impl Visitor<'_> for OptionKeyVisitor {
            type Value = OptionKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OptionKey, E> {
                Ok(match s {
                    "timeout" => OptionKey::Timeout,
                    _ => OptionKey::Name(s.to_owned()),
                })
            }
        }
        d.deserialize_string(OptionKeyVisitor)
    }
}

/// Skips a value without keeping it. Not `serde::de::IgnoredAny`: serde_json answers that with a
/// separate scanner that has no recursion limit, does not range-check numbers (`1e999`) and lets
/// lone surrogates (`"\ud800"`) through, so `{"action":"get","protocol":1e999}` would be a request
/// here and invalid JSON on the `Value` path. Going through `deserialize_any` like `Value` does
/// keeps the two identical; it still allocates nothing (strings borrow from the input, or from
/// the deserializer's reused scratch buffer when they have escapes).
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
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
        assert_eq!(r.action(), Action::Set);
        assert_eq!(r.event_id, Some(json!("abc")));
        assert_eq!(r.path_str().unwrap(), "/a");
        let Command::Set(options) = &r.command else { panic!("{r:?}") };
        assert!(options.merge);
        assert!(!options.publish.no_publish);
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

    /// What a `Value` parse refuses in a frame that is otherwise a request still gets an answer.
    fn unreadable(text: &str) -> Option<RequestError> {
        let error = serde_json::from_str::<Value>(text)
            .expect_err("refused by a full parse")
            .to_string();
        unreadable_request(text, &error)
    }

    #[test]
    fn unreadable_requests_are_answered() {
        let huge = "9".repeat(5_000);
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        for (text, action, event_id, problem) in [
            (
                format!(r#"{{"action":"set","eventId":4,"path":"/a","data":{{"n":{huge}}}}}"#),
                Action::Set,
                json!(4),
                "number out of range",
            ),
            (
                format!(r#"{{"data":[-{huge}.5],"eventId":"e","action":"set"}}"#),
                Action::Set,
                json!("e"),
                "number out of range",
            ),
            (
                format!(r#"{{"action":"get","eventId":5,"path":"/a","options":{{"limit":{huge}}}}}"#),
                Action::Get,
                json!(5),
                "number out of range",
            ),
            (
                r#"{"action":"on","eventId":6,"x":{"y":1e999}}"#.to_string(),
                Action::On,
                json!(6),
                "number out of range",
            ),
            (
                r#"{"action":"set","eventId":7,"data":{"s":"\ud800"}}"#.to_string(),
                Action::Set,
                json!(7),
                "hex escape",
            ),
            (
                format!(r#"{{"action":"set","eventId":8,"data":{{"a":{}}}}}"#, deep(500)),
                Action::Set,
                json!(8),
                "nested too deeply",
            ),
            (
                format!(r#"{{"action":"set","eventId":9,"data":{}}}"#, deep(100_000)),
                Action::Set,
                json!(9),
                "nested too deeply",
            ),
            (
                format!(r#"{{"action":"login","action":"set","eventId":1,"eventId":10,"data":{huge}}}"#),
                Action::Set,
                json!(10),
                "number out of range",
            ),
        ] {
            match unreadable(&text) {
                Some(RequestError::Malformed {
                    action: a,
                    event_id: Some(e),
                    message,
                    ..
                }) => {
                    assert_eq!((a, e), (action, event_id), "{message}");
                    assert!(message.contains(problem), "{message}");
                }
                other => panic!("{}…: {other:?}", &text[..60.min(text.len())]),
            }
        }
        // A readable frame with an unknown action gets that answer; so does this one.
        match unreadable(&format!(r#"{{"action":"frob","eventId":11,"data":{huge}}}"#)) {
            Some(RequestError::UnknownAction { action, event_id, .. }) => {
                assert_eq!((action, event_id), (json!("frob"), Some(json!(11))));
            }
            other => panic!("{other:?}"),
        }
        // The sessionId is only echoed: an unreadable one is left out.
        match unreadable(&format!(r#"{{"action":"get","eventId":12,"sessionId":{huge}}}"#)) {
            Some(RequestError::Malformed { session_id, event_id, .. }) => {
                assert_eq!((session_id, event_id), (None, Some(json!(12))));
            }
            other => panic!("{other:?}"),
        }
        // No reply can be addressed, or it is no request: nothing to answer.
        for text in [
            format!(r#"{{"action":"set","eventId":{huge}}}"#),
            format!("[{huge}]"),
            format!(r#"{{"action":"set","eventId":1,"data":{huge}"#),
            format!(r#"{{"action":"set","eventId":1,"data":{huge},}}"#),
            format!(r#"{{"action":"set","eventId":1,"data":"{}"}}"#, '\u{1}'),
        ] {
            let error = serde_json::from_str::<Value>(&text).unwrap_err().to_string();
            assert_eq!(unreadable_request(&text, &error), None, "{}", &text[..40]);
        }
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
