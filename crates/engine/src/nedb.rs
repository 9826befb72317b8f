//! The original's database file: nedb's append-only JSON lines (semantics.md §11). Used by
//! `happn-rs import` / `export` to move databases between happn 2.x and happn-rs.
//!
//! Reading replays the log: the last version of each `_id` wins, `{"$$deleted":true}` lines
//! delete, `$$indexCreated` lines are skipped, `{"$$date": ms}` values become numbers, and the
//! `\u002e` escape the original uses for dots in group permission keys is undone. Writing emits
//! one compacted line per record in path order with the original's key order, escaping dots in
//! permission keys again so the original server can load the file.

use crate::record::Record;
use crate::security::GROUP_PREFIX;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NedbError {
    #[error("{bad} of {total} lines are not valid nedb records (more than 10%); first bad line {line}: {reason}")]
    TooManyCorrupt {
        bad: usize,
        total: usize,
        line: usize,
        reason: String,
    },
}

/// What an import found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<Record>,
    /// Lines that could not be read (tolerated up to 10%, like nedb).
    pub skipped: usize,
}

const ESCAPED_DOT: &str = "\\u002e";

pub fn parse(text: &str) -> Result<Loaded, NedbError> {
    parse_with_progress(text, |_| {})
}

/// Lines between two calls of [`parse_with_progress`]'s callback.
pub const PROGRESS_LINES: usize = 10_000;

/// [`parse`], calling `progress(n)` after every [`PROGRESS_LINES`] lines (and once for the rest
/// at the end) with the number of lines read since the last call: `happn-rs import` shows it.
pub fn parse_with_progress(text: &str, mut progress: impl FnMut(u64)) -> Result<Loaded, NedbError> {
    let mut docs: BTreeMap<String, Record> = BTreeMap::new();
    let mut total = 0usize;
    let mut bad: Vec<(usize, String)> = Vec::new();
    let mut since = 0usize;
    for (n, line) in text.lines().enumerate() {
        since += 1;
        if since == PROGRESS_LINES {
            progress(since as u64);
            since = 0;
        }
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        match parse_line(line) {
            Ok(Line::Skip) => {}
            Ok(Line::Delete(id)) => {
                docs.remove(&id);
            }
            Ok(Line::Doc(r)) => {
                docs.insert(r.path.clone(), r);
            }
            Err(reason) => bad.push((n + 1, reason)),
        }
    }
    if since > 0 {
        progress(since as u64);
    }
    if !bad.is_empty() && bad.len() * 10 > total {
        let (line, reason) = bad.swap_remove(0);
        return Err(NedbError::TooManyCorrupt {
            bad: bad.len() + 1,
            total,
            line,
            reason,
        });
    }
    Ok(Loaded {
        records: docs.into_values().collect(),
        skipped: bad.len(),
    })
}

enum Line {
    Doc(Record),
    Delete(String),
    Skip,
}

fn parse_line(line: &str) -> Result<Line, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut o) = v else {
        return Err("not a JSON object".into());
    };
    if o.contains_key("$$indexCreated") {
        return Ok(Line::Skip);
    }
    let id = match o.get("_id") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("no string _id".into()),
    };
    if o.get("$$deleted") == Some(&Value::Bool(true)) {
        return Ok(Line::Delete(id));
    }
    let path = match o.get("path") {
        Some(Value::String(p)) => p.clone(),
        _ => id.clone(),
    };
    let created = millis(o.get("created"));
    let modified = millis(o.get("modified")).or(created);
    let tag = match o.remove("_tag") {
        Some(Value::String(t)) => Some(t),
        _ => None,
    };
    let mut data = match undate(o.remove("data").unwrap_or(Value::Object(Map::new()))) {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    if path.starts_with(GROUP_PREFIX) {
        unescape_permissions(&mut data);
    }
    let now = crate::record::now_millis();
    Ok(Line::Doc(Record {
        path,
        data: data.into(),
        created: created.unwrap_or(now),
        modified: modified.unwrap_or(now),
        tag,
    }))
}

fn millis(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::Object(o) => o.get("$$date").and_then(|d| d.as_i64().or_else(|| d.as_f64().map(|f| f as i64))),
        _ => None,
    }
}

/// `{"$$date": ms}` (nedb's Date encoding) becomes the number of milliseconds. What it wraps is
/// read the same way, so nothing decoded still looks encoded: otherwise `{"$$date":{"$$date":1}}`
/// would import as `{"$$date":1}`, export as such, and import again as `1` (found by the
/// `nedb_import` fuzz target's round trip).
fn undate(v: Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("$$date") => {
            undate(o.into_iter().next().map_or(Value::Null, |(_, inner)| inner))
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, undate(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(undate).collect()),
        other => other,
    }
}

fn map_permission_keys(data: &mut Map<String, Value>, f: impl Fn(&str) -> String) {
    if let Some(Value::Object(perms)) = data.get_mut("permissions") {
        let old = std::mem::take(perms);
        *perms = old.into_iter().map(|(k, v)| (f(&k), v)).collect();
    }
}

fn unescape_permissions(data: &mut Map<String, Value>) {
    map_permission_keys(data, |k| k.replace(ESCAPED_DOT, "."));
}

/// One nedb line for `record`, in the key order happn writes.
pub fn line(record: &Record) -> String {
    let mut data = record.data.map().clone();
    if record.path.starts_with(GROUP_PREFIX) {
        map_permission_keys(&mut data, |k| k.replace('.', ESCAPED_DOT));
    }
    let mut o = Map::new();
    if let Some(tag) = &record.tag {
        o.insert("data".into(), Value::Object(data));
        o.insert("_tag".into(), Value::String(tag.clone()));
        o.insert("_id".into(), Value::String(record.path.clone()));
    } else {
        o.insert("_id".into(), Value::String(record.path.clone()));
        o.insert("data".into(), Value::Object(data));
    }
    o.insert("path".into(), Value::String(record.path.clone()));
    o.insert("created".into(), record.created.into());
    o.insert("modified".into(), record.modified.into());
    Value::Object(o).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = r#"{"_id":"/p/1","data":{"a":1},"path":"/p/1","created":1795687002118,"modified":1795687002118}
{"_id":"/p/1","data":{"a":2},"path":"/p/1","created":1795687002118,"modified":1795687002274}
{"data":{"data":{"a":2},"_meta":{"path":"/p/1"},"created":1795687002118,"modified":1795687002300,"_id":"/p/1"},"_tag":"T1","_id":"/_TAGS/p/1/0123456789abcdef0123456789abcdef","path":"/_TAGS/p/1/0123456789abcdef0123456789abcdef","created":1795687002300,"modified":1795687002300}
{"_id":"/gone","data":{},"path":"/gone","created":1,"modified":1}
{"$$deleted":true,"_id":"/gone"}
{"$$indexCreated":{"fieldName":"x"}}
{"_id":"/_SYSTEM/_SECURITY/_GROUP/g","data":{"name":"g","permissions":{"/a\\u002eb/*":{"actions":["get"]}}},"path":"/_SYSTEM/_SECURITY/_GROUP/g","created":1,"modified":2}
{"_id":"/d","data":{"when":{"$$date":5}},"path":"/d","created":{"$$date":7},"modified":{"$$date":8}}
"#;

    #[test]
    fn replays_the_log() {
        let l = parse(FILE).unwrap();
        let paths: Vec<&str> = l.records.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/_SYSTEM/_SECURITY/_GROUP/g",
                "/_TAGS/p/1/0123456789abcdef0123456789abcdef",
                "/d",
                "/p/1"
            ]
        );
        let p1 = &l.records[3];
        assert_eq!(Value::Object(p1.data.map().clone()), json!({"a":2}));
        assert_eq!((p1.created, p1.modified), (1795687002118, 1795687002274));
        assert_eq!(l.records[1].tag.as_deref(), Some("T1"));
        assert!(l.records[0].data["permissions"].get("/a.b/*").is_some(), "dot escape undone");
        assert_eq!(l.records[2].data["when"], json!(5));
        assert_eq!((l.records[2].created, l.records[2].modified), (7, 8));
    }

    #[test]
    fn round_trips() {
        let l = parse(FILE).unwrap();
        let text: String = l.records.iter().map(|r| line(r) + "\n").collect();
        assert!(text.contains(r#""/a\\u002eb/*""#), "dots escaped again for the original");
        assert!(text.starts_with(r#"{"_id":"/_SYSTEM/_SECURITY/_GROUP/g","data":"#));
        assert!(text.contains(r#"{"data":{"data":{"a":2}"#) && text.contains(r#""_tag":"T1","_id":"/_TAGS/p/1/"#));
        let again = parse(&text).unwrap();
        assert_eq!(again.records, l.records);
    }

    #[test]
    fn nested_dates_are_read_through_and_round_trip() {
        let text = r#"{"_id":"/x","data":{"a":{"$$date":{"$$date":1}},"b":[{"$$date":{"$$date":{"$$date":2}}}]},"created":3}"#;
        let l = parse(text).unwrap();
        assert_eq!(Value::Object(l.records[0].data.map().clone()), json!({"a": 1, "b": [2]}));
        let again = parse(&line(&l.records[0])).unwrap();
        assert_eq!(again.records, l.records);
    }

    #[test]
    fn progress_counts_every_line() {
        let lines = PROGRESS_LINES * 2 + 7;
        let text: String = (0..lines)
            .map(|i| format!("{{\"_id\":\"/k/{i}\",\"data\":{{}},\"created\":1}}\n"))
            .collect();
        let mut calls = Vec::new();
        let l = parse_with_progress(&text, |n| calls.push(n)).unwrap();
        assert_eq!(l.records.len(), lines);
        assert_eq!(calls, [PROGRESS_LINES as u64, PROGRESS_LINES as u64, 7]);
    }

    #[test]
    fn tolerates_a_little_corruption_only() {
        let mut text = String::new();
        for i in 0..20 {
            text.push_str(&format!(
                "{{\"_id\":\"/k/{i}\",\"data\":{{}},\"path\":\"/k/{i}\",\"created\":1,\"modified\":1}}\n"
            ));
        }
        text.push_str("{broken\n");
        let l = parse(&text).unwrap();
        assert_eq!((l.records.len(), l.skipped), (20, 1));
        text.push_str("garbage\ngarbage\n");
        assert!(matches!(parse(&text), Err(NedbError::TooManyCorrupt { .. })));
    }
}
