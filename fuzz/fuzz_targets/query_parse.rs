//! `Query::parse` on any JSON a client can send as `options.criteria` and `options.options`: it
//! answers a query or an error, never panics, and a query it accepts runs over a few documents
//! (criteria, sort, skip/limit, projection) without a panic either. `$regex` patterns come from
//! the client too, so they are compiled here as the server compiles them.
//!
//! Input: the criteria JSON, a line feed, the options JSON.
#![no_main]

use happn_engine::query::{DocRef, Query};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

fn documents() -> &'static [(String, Map<String, Value>)] {
    static DOCS: OnceLock<Vec<(String, Map<String, Value>)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        [
            json!({}),
            json!({"a": 1, "b": "x", "c": [1, 2, {"d": null}]}),
            json!({"a": {"b": [{"c": 1}, {"c": "2"}], "e": true}, "tags": ["t", "u"], "n": -1.5}),
            json!({"a": [[1], [2, [3]]], "b": {"$x": 1}, "é": "\u{1F600}", "": 0}),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("/f/{i}"), v.as_object().unwrap().clone()))
        .collect()
    })
}

fn doc_ref(i: &usize) -> DocRef<'_> {
    let (path, data) = &documents()[*i];
    DocRef {
        path,
        data,
        created: 1,
        modified: 2,
        tag: Some("t"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (criteria, options) = text.split_once('\n').unwrap_or((text, ""));
    let criteria: Option<Value> = serde_json::from_str(criteria).ok();
    let options: Option<Value> = serde_json::from_str(options).ok();
    let Ok(query) = Query::parse(criteria.as_ref(), options.as_ref()) else {
        return;
    };
    let docs = documents();
    let results = query.apply((0..docs.len()).collect(), doc_ref);
    assert!(results.len() <= docs.len());
    for i in results {
        assert!(query.matches(&doc_ref(&i)));
        let _ = query.project(&docs[i].1);
    }
});
