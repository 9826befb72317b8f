//! Field addressing: which value(s) of a record a criteria or sort key looks at.
//!
//! Keys are dot paths into the record's `data`, except a handful that name the record's
//! metadata (`_meta.created`, `_meta.modified`, `_meta.path`, `_meta.tag`, bare `path` / `_id`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::DocRef;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    Path,
    Created,
    Modified,
    Tag,
    /// Some other `_meta…` key: the record has no such value, so it is always missing.
    Nothing,
    /// A dot path into the data (or, inside `$elemMatch`, into the array element).
    Data(Vec<String>),
}

/// One place where a field was looked for: `None` = absent there.
pub(crate) type Candidate<'v> = Option<Cow<'v, Value>>;

/// What a field is resolved against: a whole record, or an array element inside `$elemMatch`.
#[derive(Clone, Copy)]
pub(crate) enum Root<'v> {
    Doc(&'v DocRef<'v>),
    Object(&'v Map<String, Value>),
}

impl Field {
    /// A data field whose dot path starts with `segment` (`password`, `password.x`).
    pub(crate) fn starts_with(&self, segment: &str) -> bool {
        matches!(self, Field::Data(segs) if segs.first().is_some_and(|s| s == segment))
    }

    /// `meta` is false inside `$elemMatch`, where every key addresses the element, not the record.
    pub(crate) fn parse(key: &str, meta: bool) -> Field {
        if meta {
            match key {
                "path" | "_id" | "_meta.path" | "_meta._id" => return Field::Path,
                "_meta.created" => return Field::Created,
                "_meta.modified" => return Field::Modified,
                "_meta.tag" => return Field::Tag,
                k if k == "_meta" || k.starts_with("_meta.") => return Field::Nothing,
                _ => {}
            }
        }
        Field::Data(key.split('.').map(str::to_owned).collect())
    }

    /// Every candidate value of the field (mongo/nedb style: a dot path that meets an array
    /// continues into each element, so one field can have several values). Never empty: a field
    /// found nowhere yields a single `None`, so "missing" is always visible to `$exists`/`null`.
    pub(crate) fn resolve<'v>(&self, root: Root<'v>) -> Vec<Candidate<'v>> {
        let owned = |v: Value| vec![Some(Cow::Owned(v))];
        match (self, root) {
            (Field::Data(segs), Root::Doc(doc)) => walk_object(doc.data, segs),
            (Field::Data(segs), Root::Object(map)) => walk_object(map, segs),
            (Field::Path, Root::Doc(doc)) => owned(Value::from(doc.path)),
            (Field::Created, Root::Doc(doc)) => owned(Value::from(doc.created)),
            (Field::Modified, Root::Doc(doc)) => owned(Value::from(doc.modified)),
            (Field::Tag, Root::Doc(DocRef { tag: Some(tag), .. })) => owned(Value::from(*tag)),
            _ => vec![None],
        }
    }
}

fn walk_object<'v>(map: &'v Map<String, Value>, segs: &[String]) -> Vec<Candidate<'v>> {
    let mut out = Vec::new();
    match segs.split_first() {
        Some((first, rest)) => match map.get(first) {
            Some(v) => walk(v, rest, &mut out),
            None => out.push(None),
        },
        // An empty key list never happens (`"".split('.')` gives one empty segment).
        None => out.push(None),
    }
    if out.is_empty() {
        // e.g. `a.b` where `a` is an empty array: the field is simply missing.
        out.push(None);
    }
    out
}

fn walk<'v>(value: &'v Value, segs: &[String], out: &mut Vec<Candidate<'v>>) {
    let Some((seg, rest)) = segs.split_first() else {
        out.push(Some(Cow::Borrowed(value)));
        return;
    };
    match value {
        Value::Object(map) => match map.get(seg) {
            Some(v) => walk(v, rest, out),
            None => out.push(None),
        },
        Value::Array(items) => {
            // A numeric segment indexes into the array (`tags.0`) …
            if let Ok(i) = seg.parse::<usize>() {
                match items.get(i) {
                    Some(v) => walk(v, rest, out),
                    None => out.push(None),
                }
                return;
            }
            // … any other segment looks inside every object element (`items.name`).
            for item in items {
                match item {
                    Value::Object(_) => walk(item, segs, out),
                    _ => out.push(None),
                }
            }
        }
        _ => out.push(None),
    }
}
