//! A document body: always a JSON object, kept as its JSON text.
//!
//! Why text first: most of what happens to a body needs nothing but its text. A set stores it,
//! replies with it and publishes it; a get replies with it; the durable store writes it. Parsing
//! it into a `Map` (an ordered hash map per object, a `String` per key) and writing it out again
//! was a third of the server's work per plain set. So a body keeps the text (shared: cloning a
//! body, as every get does, copies no document), and the parsed object is made only when
//! something reads fields (a query, a merge, the security directory).
//!
//! The parsed object is cached in the one `Body` value that parsed it, not shared with its
//! clones: a query over a million stored records parses each in its own copy and drops it with
//! the result, rather than leaving a parsed twin of every document in the store.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

pub struct Body {
    /// JSON text of an object. Not necessarily compact: a client's text is kept as it came.
    json: Arc<str>,
    map: OnceLock<Box<Map<String, Value>>>,
}

impl Body {
    /// A body from a parsed object (its text is written now: every body has one).
    pub fn new(map: Map<String, Value>) -> Body {
        let json = serde_json::to_string(&map).expect("JSON values serialise");
        Body {
            json: json.into(),
            map: OnceLock::from(Box::new(map)),
        }
    }

    /// `{}`.
    pub fn empty() -> Body {
        Body::new(Map::new())
    }

    /// A body from text the caller has already checked is one JSON object which `serde_json`
    /// parses (e.g. with [`Body::from_json`], or a client body checked by the set path).
    pub(crate) fn from_checked_json(json: &str) -> Body {
        Body::from_checked_text(json.into())
    }

    /// [`Body::from_checked_json`], keeping the caller's allocation.
    pub(crate) fn from_checked_text(json: Arc<str>) -> Body {
        Body {
            json,
            map: OnceLock::new(),
        }
    }

    /// Drop the parsed object, if any: a store keeps only text (see the module comment).
    pub fn forget_parsed(&mut self) {
        self.map.take();
    }

    /// A body from JSON text that must be one object (a store reading back what it wrote). It is
    /// parsed once to prove it (serde_json's cheaper skipping scan lets through what a parse
    /// refuses, such as lone surrogate escapes), and the object is then dropped: stores read
    /// bodies back when they open, and most are never needed as objects.
    pub fn from_json(json: &str) -> Result<Body, String> {
        serde_json::from_str::<Map<String, Value>>(json).map_err(|e| e.to_string())?;
        Ok(Body::from_checked_json(json))
    }

    /// The body as JSON text (an object).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The body as an object, parsed on first use of this value.
    pub fn map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| Box::new(parse(&self.json)))
    }

    /// The object, without a parse when this value already has it.
    pub fn into_map(self) -> Map<String, Value> {
        match self.map.into_inner() {
            Some(map) => *map,
            None => parse(&self.json),
        }
    }
}

/// Shares the text; the parsed object, if any, stays with the original.
impl Clone for Body {
    fn clone(&self) -> Body {
        Body {
            json: self.json.clone(),
            map: OnceLock::new(),
        }
    }
}

/// The deepest nesting serde_json parses into a `Value` (its limit of 128 counts one more).
pub(crate) const MAX_DEPTH: usize = 127;

fn parse(json: &str) -> Map<String, Value> {
    // Every constructor guarantees an object that parses (see `from_checked_json`).
    serde_json::from_str(json).expect("a body is a valid JSON object")
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl From<Map<String, Value>> for Body {
    fn from(map: Map<String, Value>) -> Body {
        Body::new(map)
    }
}

impl Deref for Body {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        self.map()
    }
}

impl PartialEq for Body {
    /// Equal objects, whatever their text (`{"a":1}` and `{ "a": 1 }` are the same body).
    fn eq(&self, other: &Body) -> bool {
        self.json() == other.json() || self.map() == other.map()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        Map::deserialize(d).map(Body::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_first_object_on_demand() {
        let b = Body::from_json(r#"{"b": 1, "a": [true, {"c": "x\"}"}]}"#).unwrap();
        assert_eq!(b.json(), r#"{"b": 1, "a": [true, {"c": "x\"}"}]}"#, "the text is kept as it came");
        assert!(b.map.get().is_none(), "nothing parsed yet");
        assert_eq!(Value::Object(b.map().clone()), json!({"b":1,"a":[true,{"c":"x\"}"}]}));
        assert_eq!(b.keys().collect::<Vec<_>>(), ["b", "a"], "key order kept");
        assert_eq!(b, Body::new(b.map().clone()), "equal as objects");
        let copy = b.clone();
        assert!(b.map.get().is_some() && copy.map.get().is_none(), "a copy shares only the text");
        assert!(Arc::ptr_eq(&b.json, &copy.json));
    }

    #[test]
    fn only_objects_that_parse_are_bodies() {
        assert!(Body::from_json("[1]").is_err());
        assert!(Body::from_json("1").is_err());
        assert!(Body::from_json("{").is_err());
        assert!(Body::from_json(r#"{"a":1}x"#).is_err());
        let deep = |n: usize| format!("{}{}", "[".repeat(n - 1), "]".repeat(n - 1));
        let deepest = Body::from_json(&format!(r#"{{"a":{}}}"#, deep(MAX_DEPTH))).unwrap();
        assert_eq!(deepest.map().len(), 1, "as deep as serde_json parses");
        assert!(Body::from_json(&format!(r#"{{"a":{}}}"#, deep(MAX_DEPTH + 1))).is_err());
    }

    #[test]
    fn into_map_takes_or_copies() {
        let b = Body::new(json!({"x": 1}).as_object().unwrap().clone());
        let shared = b.clone();
        assert_eq!(b.into_map()["x"], 1);
        assert_eq!(shared.into_map()["x"], 1);
        assert_eq!(Body::default().json(), "{}");
    }
}
