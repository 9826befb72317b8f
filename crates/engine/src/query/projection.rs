//! `fields`: keep only the listed data fields (inclusion) or drop them (exclusion).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::QueryError;

#[derive(Debug, Clone)]
pub(crate) struct Projection {
    include: bool,
    tree: Node,
}

/// The listed dot paths as a tree: `{"a.b":1, "a.c":1}` is `a → {b, c}`.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The path ends here: the whole value is kept (inclusion) or dropped (exclusion).
    leaf: bool,
    children: HashMap<String, Node>,
}

impl Projection {
    /// `None` when the projection leaves the data as it is.
    pub(crate) fn parse(fields: &Value) -> Result<Option<Projection>, QueryError> {
        let Value::Object(map) = fields else {
            return Err(QueryError::Invalid(format!(
                "fields must be an object like {{\"field\": 1}}, got {fields}"
            )));
        };
        let mut mode: Option<bool> = None;
        let mut meta_included = false;
        let mut tree = Node::default();
        for (key, flag) in map {
            let include = match flag {
                Value::Bool(b) => *b,
                Value::Number(n) if n.as_f64() == Some(1.0) => true,
                Value::Number(n) if n.as_f64() == Some(0.0) => false,
                _ => return Err(QueryError::Invalid(format!("fields: '{key}' must be 1 or 0, got {flag}"))),
            };
            // `_meta` is the caller's business; `_id` is exempt from the keep/omit rule as in mongo.
            if key == "_meta" || key.starts_with("_meta.") || key == "_id" {
                meta_included |= include && key != "_id";
                continue;
            }
            if mode.is_some_and(|m| m != include) {
                return Err(QueryError::Invalid("Can't both keep and omit fields".into()));
            }
            mode = Some(include);
            let mut node = &mut tree;
            for seg in key.split('.') {
                node = node.children.entry(seg.to_owned()).or_default();
            }
            node.leaf = true;
        }
        Ok(match mode {
            Some(include) => Some(Projection { include, tree }),
            // Keeping only `_meta` keeps no data fields at all.
            None if meta_included => Some(Projection { include: true, tree }),
            None => None,
        })
    }

    pub(crate) fn apply(&self, data: &Map<String, Value>) -> Map<String, Value> {
        if self.include {
            include_object(data, &self.tree)
        } else {
            exclude_object(data, &self.tree)
        }
    }
}

// Both walks iterate over the data (not the field list), so the result keeps the data's key order.

fn include_object(map: &Map<String, Value>, node: &Node) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let Some(child) = node.children.get(key) else {
            continue;
        };
        let kept = if child.leaf {
            Some(value.clone())
        } else {
            include_value(value, child)
        };
        if let Some(kept) = kept {
            out.insert(key.clone(), kept);
        }
    }
    out
}

/// A value under a partially listed path: keep what the rest of the path reaches. Scalars have
/// no sub-fields, so they go; arrays keep the projected form of their object elements (mongo).
fn include_value(value: &Value, node: &Node) -> Option<Value> {
    match value {
        Value::Object(map) => Some(Value::Object(include_object(map, node))),
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(|v| include_value(v, node)).collect())),
        _ => None,
    }
}

fn exclude_object(map: &Map<String, Value>, node: &Node) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        match node.children.get(key) {
            None => {
                out.insert(key.clone(), value.clone());
            }
            Some(child) if child.leaf => {}
            Some(child) => {
                out.insert(key.clone(), exclude_value(value, child));
            }
        }
    }
    out
}

fn exclude_value(value: &Value, node: &Node) -> Value {
    match value {
        Value::Object(map) => Value::Object(exclude_object(map, node)),
        Value::Array(items) => Value::Array(items.iter().map(|v| exclude_value(v, node)).collect()),
        _ => value.clone(),
    }
}
