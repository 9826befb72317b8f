//! What a request asks for, typed per action: each action's options (and, for `login` and
//! `request-nonce`, its data) read once, when the request is decoded, from the `options` map the
//! envelope parsers produce (as mini-redis's `Command::from_frame`). The server matches on
//! [`Command`] and never reads an option by name.
//!
//! Reading is lenient where the original is: options are JS values, so flags are JS-truthy, and
//! keys an action does not use are ignored. A value of the wrong type that the original would
//! refuse is kept as such ([`Tag::NotAString`]) rather than refused here, because the original
//! reports it only after the session is authorised and the path checked; the server asks for
//! the error text ([`SetOptions::tag`]) at that point.

use crate::request::{truthy, type_name, Action, Data};
use serde_json::{Map, Value};

/// A request's action and what it carries beyond the envelope (eventId, sessionId, path, a
/// set's data).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Describe,
    /// `data`, when it is an object: the credentials and the session's `info`.
    Login {
        data: Option<Map<String, Value>>,
    },
    /// `data.publicKey` (empty when absent or not a string).
    RequestNonce {
        public_key: String,
    },
    Get(GetOptions),
    Set(SetOptions),
    Remove(PublishOptions),
    On(OnOptions),
    Off(OffOptions),
    RevokeSession,
}

impl Command {
    /// Read `action`'s options from the request's `options` object (empty when absent) and, for
    /// the actions whose data is typed here, take `data`.
    pub(crate) fn read(action: Action, mut options: Map<String, Value>, data: &mut Option<Data>) -> Command {
        match action {
            Action::Describe => Command::Describe,
            Action::Login => Command::Login {
                data: match data.take().map(Data::into_value) {
                    Some(Value::Object(m)) => Some(m),
                    _ => None,
                },
            },
            Action::RequestNonce => {
                let data = data.take().map(Data::into_value);
                let public_key = data.as_ref().and_then(|d| d.get("publicKey")).and_then(Value::as_str);
                Command::RequestNonce {
                    public_key: public_key.unwrap_or("").to_owned(),
                }
            }
            Action::Get => Command::Get(GetOptions::read(&mut options)),
            Action::Set => Command::Set(SetOptions::read(&mut options)),
            Action::Remove => Command::Remove(PublishOptions::read(&options)),
            Action::On => Command::On(OnOptions {
                ref_count: ref_count(&options),
                initial_callback: flag(&options, "initialCallback"),
                initial_emit: flag(&options, "initialEmit"),
            }),
            Action::Off => Command::Off(OffOptions {
                ref_count: ref_count(&options),
            }),
            Action::RevokeSession => Command::RevokeSession,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Command::Describe => Action::Describe,
            Command::Login { .. } => Action::Login,
            Command::RequestNonce { .. } => Action::RequestNonce,
            Command::Get(_) => Action::Get,
            Command::Set(_) => Action::Set,
            Command::Remove(_) => Action::Remove,
            Command::On(_) => Action::On,
            Command::Off(_) => Action::Off,
            Command::RevokeSession => Action::RevokeSession,
        }
    }
}

/// An option interpreted the way JS does: present and truthy.
fn flag(options: &Map<String, Value>, key: &str) -> bool {
    options.get(key).is_some_and(truthy)
}

/// `refCount`: a number (a fraction is cut towards zero), anything else 0.
fn ref_count(options: &Map<String, Value>) -> i64 {
    match options.get("refCount") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
        _ => 0,
    }
}

/// What decides who hears of a `set` or `remove`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishOptions {
    /// `noPublish`: answered, not published.
    pub no_publish: bool,
    /// `targetClients`: only these session ids hear of it (the strings of the array; `None`
    /// when it is not an array).
    pub target_clients: Option<Vec<String>>,
    /// `noCluster`: sessions that logged in with an `info.clusterName` do not hear of it.
    pub no_cluster: bool,
}

impl PublishOptions {
    fn read(options: &Map<String, Value>) -> PublishOptions {
        PublishOptions {
            no_publish: flag(options, "noPublish"),
            target_clients: options
                .get("targetClients")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
            no_cluster: flag(options, "noCluster"),
        }
    }

    /// Whether a session with this id (and cluster membership) hears of the write.
    pub fn reaches(&self, session_id: &str, cluster_member: bool) -> bool {
        !(self.no_cluster && cluster_member) && self.target_clients.as_ref().is_none_or(|t| t.iter().any(|s| s == session_id))
    }
}

/// `options.tag` of a set.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Tag {
    /// Absent, or a falsy value that is not a string (`null`, `false`, `0`).
    #[default]
    None,
    /// A string (even an empty one): the set also stores a tagged copy.
    Name(String),
    /// A truthy value that is not a string: the set is refused (type name for the message).
    NotAString(&'static str),
}

/// `set`'s options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetOptions {
    pub merge: bool,
    pub tag: Tag,
    /// `set_type: "sibling"`: the path gets a unique suffix.
    pub sibling: bool,
    /// `set_type` is truthy at all (security records refuse any).
    pub set_type: bool,
    /// `noStore`: published and answered, never stored.
    pub no_store: bool,
    pub publish: PublishOptions,
}

impl SetOptions {
    fn read(options: &mut Map<String, Value>) -> SetOptions {
        let tag = match options.shift_remove("tag") {
            None | Some(Value::Null) => Tag::None,
            Some(Value::String(s)) => Tag::Name(s),
            Some(other) if !truthy(&other) => Tag::None,
            Some(other) => Tag::NotAString(type_name(&other)),
        };
        let set_type = options.get("set_type");
        SetOptions {
            merge: flag(options, "merge"),
            tag,
            sibling: set_type.and_then(Value::as_str) == Some("sibling"),
            set_type: set_type.is_some_and(truthy),
            no_store: flag(options, "noStore"),
            publish: PublishOptions::read(options),
        }
    }

    /// The tag a data set stores, or the error the original answers for a tag that is no string.
    pub fn tag(&self) -> Result<Option<&str>, String> {
        match &self.tag {
            Tag::None => Ok(None),
            Tag::Name(s) => Ok(Some(s)),
            Tag::NotAString(type_name) => Err(format!("options.tag must be a string, not {type_name}")),
        }
    }

    /// The first option given (truthy) that a security record cannot take.
    pub fn unsupported_on_security_records(&self) -> Option<&'static str> {
        let tag = match &self.tag {
            Tag::None => false,
            Tag::Name(s) => !s.is_empty(),
            Tag::NotAString(_) => true,
        };
        [("tag", tag), ("set_type", self.set_type), ("noStore", self.no_store)]
            .into_iter()
            .find_map(|(name, given)| given.then_some(name))
    }
}

/// `get`'s options: the query parts are read by the engine's query parser, whose messages the
/// replies carry, so they stay JSON here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetOptions {
    /// `options.criteria` (`None` when absent or null).
    pub criteria: Option<Value>,
    /// `options.options`: fields, sort, skip, limit, count (`None` when absent or null).
    pub query: Option<Value>,
    /// `options.options.path_only`: answer with paths only.
    pub path_only: bool,
}

impl GetOptions {
    fn read(options: &mut Map<String, Value>) -> GetOptions {
        let criteria = options.shift_remove("criteria").filter(|c| !c.is_null());
        let query = options.shift_remove("options").filter(|o| !o.is_null());
        let path_only = query.as_ref().and_then(|o| o.get("path_only")).is_some_and(truthy);
        GetOptions {
            criteria,
            query,
            path_only,
        }
    }
}

/// `on`'s options. (The 2.21 client's `data.event_type` and `data.count` are not read: the event
/// type is in the channel, and the count is the client's to keep.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnOptions {
    /// How many listeners the client has on this channel (an `off` with the same count removes it).
    pub ref_count: i64,
    /// Answer with the current values as the reply's data (and a top-level `initialValues`).
    pub initial_callback: bool,
    /// Answer, then send the current values as events carrying the `on`'s eventId.
    pub initial_emit: bool,
}

/// `off`'s options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffOptions {
    pub ref_count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(action: Action, options: Value) -> Command {
        let Value::Object(m) = options else { panic!() };
        Command::read(action, m, &mut None)
    }

    #[test]
    fn set_options() {
        let Command::Set(o) = read(
            Action::Set,
            json!({"merge": 1, "tag": "t", "set_type": "sibling", "noPublish": true, "targetClients": ["a", 3, "b"]}),
        ) else {
            panic!()
        };
        assert!(o.merge && o.sibling && o.set_type && !o.no_store && o.publish.no_publish);
        assert_eq!(o.tag(), Ok(Some("t")));
        assert_eq!(o.publish.target_clients, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(o.publish.reaches("a", false) && !o.publish.reaches("c", false));
        assert_eq!(o.unsupported_on_security_records(), Some("tag"));

        for (tag, expected) in [
            (json!(null), Ok(None)),
            (json!(0), Ok(None)),
            (json!(false), Ok(None)),
            (json!(""), Ok(Some(""))),
            (json!(5), Err("options.tag must be a string, not a number".to_string())),
            (json!({}), Err("options.tag must be a string, not an object".to_string())),
        ] {
            let Command::Set(o) = read(Action::Set, json!({ "tag": tag })) else {
                panic!()
            };
            assert_eq!(o.tag(), expected, "{tag}");
        }
        let Command::Set(o) = read(Action::Set, json!({"tag": "", "set_type": "x", "noCluster": 1})) else {
            panic!()
        };
        assert!(!o.sibling && o.publish.no_cluster && !o.publish.reaches("a", true));
        assert_eq!(o.unsupported_on_security_records(), Some("set_type"));
        let Command::Set(o) = read(Action::Set, json!({"noStore": true})) else {
            panic!()
        };
        assert_eq!(o.unsupported_on_security_records(), Some("noStore"));
    }

    #[test]
    fn get_on_off_options() {
        let Command::Get(g) = read(
            Action::Get,
            json!({"criteria": {"a": 1}, "options": {"path_only": true, "limit": 2}}),
        ) else {
            panic!()
        };
        assert_eq!(g.criteria, Some(json!({"a": 1})));
        assert!(g.path_only);
        let Command::Get(g) = read(Action::Get, json!({"criteria": null, "options": 7})) else {
            panic!()
        };
        assert_eq!((g.criteria, g.query, g.path_only), (None, Some(json!(7)), false));
        let Command::On(o) = read(Action::On, json!({"refCount": 2.9, "initialEmit": 1})) else {
            panic!()
        };
        assert_eq!(
            o,
            OnOptions {
                ref_count: 2,
                initial_callback: false,
                initial_emit: true
            }
        );
        assert_eq!(
            read(Action::Off, json!({"refCount": "2"})),
            Command::Off(OffOptions { ref_count: 0 })
        );
    }

    #[test]
    fn login_and_nonce_data() {
        let mut data = Some(Data::Value(json!({"username": "u", "info": {}})));
        let login = Command::read(Action::Login, Map::new(), &mut data);
        assert!(matches!(login, Command::Login { data: Some(m) } if m["username"] == "u"));
        let login = Command::read(Action::Login, Map::new(), &mut Some(Data::Value(json!("x"))));
        assert_eq!(login, Command::Login { data: None });
        let nonce = Command::read(Action::RequestNonce, Map::new(), &mut Some(Data::Value(json!({"publicKey": 4}))));
        assert_eq!(nonce, Command::RequestNonce { public_key: String::new() });
    }
}
