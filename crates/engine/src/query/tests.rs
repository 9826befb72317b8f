//! Unit tests of the public query API.

use serde_json::{json, Map, Value};

use super::*;
use crate::record::Record;

fn rec(path: &str, data: Value) -> Record {
    let Value::Object(data) = data else {
        panic!("test data must be an object")
    };
    Record {
        path: path.into(),
        data: data.into(),
        created: 100,
        modified: 200,
        tag: None,
    }
}

fn query(criteria: Value) -> Query {
    Query::parse(Some(&criteria), None).unwrap_or_else(|e| panic!("{criteria}: {e}"))
}

fn hit(criteria: Value, data: Value) -> bool {
    query(criteria).matches(&DocRef::from(&rec("/a/b", data)))
}

fn err(criteria: Value) -> QueryError {
    Query::parse(Some(&criteria), None).expect_err(&criteria.to_string())
}

fn opt_err(options: Value) -> QueryError {
    Query::parse(None, Some(&options)).expect_err(&options.to_string())
}

fn invalid(msg: &str) -> QueryError {
    QueryError::Invalid(msg.into())
}

// ---------- equality ----------

#[test]
fn no_criteria_matches_everything() {
    for c in [None, Some(json!(null)), Some(json!({}))] {
        let q = Query::parse(c.as_ref(), None).unwrap();
        assert!(!q.has_criteria());
        assert!(q.matches(&DocRef::from(&rec("/x", json!({})))));
    }
    assert!(query(json!({"a": 1})).has_criteria());
}

#[test]
fn falsy_values_match() {
    assert!(hit(json!({"active": false}), json!({"active": false})));
    assert!(!hit(json!({"active": false}), json!({"active": true})));
    assert!(!hit(json!({"active": false}), json!({"active": 0})));
    assert!(hit(json!({"n": 0}), json!({"n": 0})));
    assert!(hit(json!({"n": 0}), json!({"n": 0.0})));
    assert!(!hit(json!({"n": 0}), json!({"n": ""})));
    assert!(hit(json!({"s": ""}), json!({"s": ""})));
    assert!(!hit(json!({"s": ""}), json!({"s": null})));
}

#[test]
fn null_matches_null_or_missing() {
    assert!(hit(json!({"f": null}), json!({"f": null})));
    assert!(hit(json!({"f": null}), json!({})));
    assert!(!hit(json!({"f": null}), json!({"f": 0})));
    assert!(hit(json!({"a.b": null}), json!({"a": 5})));
}

#[test]
fn nested_object_equality_is_exact_and_order_insensitive() {
    assert!(hit(json!({"nested": {"x": 2}}), json!({"nested": {"x": 2}})));
    assert!(hit(json!({"nested": {"x": 2, "y": 3}}), json!({"nested": {"y": 3, "x": 2}})));
    assert!(!hit(json!({"nested": {"x": 2}}), json!({"nested": {"x": 2, "y": 3}})));
    assert!(!hit(json!({"nested": {"x": 2}}), json!({"x": 2})));
    assert!(hit(json!({"nested": {}}), json!({"nested": {}})));
    assert!(!hit(json!({"nested": {}}), json!({"nested": {"a": 1}})));
}

#[test]
fn several_fields_all_must_hold() {
    let data = json!({"genre": "horror", "year": 1980});
    assert!(hit(json!({"genre": "horror", "year": 1980}), data.clone()));
    assert!(!hit(json!({"genre": "horror", "year": 1981}), data));
}

#[test]
fn arrays_match_whole_or_any_element() {
    let data = json!({"tags": ["a", "b"], "m": [[1, 2], 3]});
    assert!(hit(json!({"tags": "a"}), data.clone()));
    assert!(hit(json!({"tags": ["a", "b"]}), data.clone()));
    assert!(!hit(json!({"tags": ["b", "a"]}), data.clone()));
    assert!(!hit(json!({"tags": "c"}), data.clone()));
    assert!(hit(json!({"m": [1, 2]}), data.clone()));
    assert!(!hit(json!({"m": 1}), data));
}

// ---------- dot paths ----------

#[test]
fn dot_paths_reach_nested_fields() {
    let data = json!({"a": {"b": {"c": 1}}, "x": 5});
    assert!(hit(json!({"a.b.c": 1}), data.clone()));
    assert!(hit(json!({"a.b": {"c": 1}}), data.clone()));
    assert!(!hit(json!({"a.b.c": 2}), data.clone()));
    assert!(!hit(json!({"x.y": 5}), data.clone()));
    assert!(hit(json!({"x.y": {"$exists": false}}), data));
}

#[test]
fn dot_paths_fan_out_through_arrays() {
    let data = json!({"items": [{"name": "x", "n": 1}, {"name": "y", "n": 5}, 7], "empty": []});
    assert!(hit(json!({"items.name": "y"}), data.clone()));
    assert!(!hit(json!({"items.name": "z"}), data.clone()));
    assert!(hit(json!({"items.n": {"$gt": 4}}), data.clone()));
    assert!(!hit(json!({"items.n": {"$gt": 5}}), data.clone()));
    // numeric segments index
    assert!(hit(json!({"items.0.name": "x"}), data.clone()));
    assert!(!hit(json!({"items.1.name": "x"}), data.clone()));
    assert!(hit(json!({"items.2": 7}), data.clone()));
    assert!(hit(json!({"items.9": {"$exists": false}}), data.clone()));
    // negation over every candidate
    assert!(!hit(json!({"items.name": {"$ne": "x"}}), data.clone()));
    assert!(hit(json!({"items.name": {"$nin": ["z"]}}), data.clone()));
    // one element lacks `name` (the scalar 7)
    assert!(hit(json!({"items.name": null}), data.clone()));
    assert!(hit(json!({"empty.x": {"$exists": false}}), data));
}

#[test]
fn nested_arrays_of_objects() {
    let data = json!({"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": [{"c": 3}]}]});
    assert!(hit(json!({"a.b.c": 3}), data.clone()));
    assert!(hit(json!({"a.b.c": {"$in": [9, 2]}}), data.clone()));
    assert!(!hit(json!({"a.b.c": 4}), data.clone()));
    assert!(hit(json!({"a.1.b.0.c": 3}), data));
}

// ---------- metadata ----------

#[test]
fn meta_fields_address_the_record() {
    let mut r = rec("/movie/1", json!({"path": "data-path", "created": 1}));
    r.created = 1000;
    r.modified = 2000;
    let doc = DocRef::from(&r);
    let m = |c: Value| query(c).matches(&doc);
    assert!(m(json!({"_meta.created": 1000})));
    assert!(m(json!({"_meta.created": {"$gt": 999, "$lt": 1001}})));
    assert!(!m(json!({"_meta.created": {"$gt": 1000}})));
    assert!(m(json!({"_meta.modified": {"$gte": 2000}})));
    assert!(m(json!({"_meta.path": "/movie/1"})));
    assert!(m(json!({"path": "/movie/1"})));
    assert!(m(json!({"_id": "/movie/1"})));
    assert!(m(json!({"path": {"$regex": "^/movie/"}})));
    assert!(!m(json!({"path": "data-path"})));
    // a data field called `created` is still reachable as a data field
    assert!(m(json!({"created": 1})));
    // untagged: no tag; unknown `_meta` keys resolve to nothing
    assert!(m(json!({"_meta.tag": {"$exists": false}})));
    assert!(m(json!({"_meta.other": {"$exists": false}})));
    assert!(m(json!({"_meta": {"$exists": false}})));
    assert!(!m(json!({"_meta.other": 1})));
}

#[test]
fn meta_tag() {
    let mut r = rec("/_TAGS/a/0123", json!({}));
    r.tag = Some("v1".into());
    let doc = DocRef::from(&r);
    assert!(query(json!({"_meta.tag": "v1"})).matches(&doc));
    assert!(!query(json!({"_meta.tag": "v2"})).matches(&doc));
}

// ---------- operators ----------

#[test]
fn eq_ne() {
    let d = json!({"a": 1, "o": {"x": 1}});
    assert!(hit(json!({"a": {"$eq": 1}}), d.clone()));
    assert!(!hit(json!({"a": {"$eq": 2}}), d.clone()));
    assert!(hit(json!({"o": {"$eq": {"x": 1}}}), d.clone()));
    assert!(hit(json!({"a": {"$ne": 2}}), d.clone()));
    assert!(!hit(json!({"a": {"$ne": 1}}), d.clone()));
    assert!(hit(json!({"missing": {"$ne": 1}}), d.clone()));
    assert!(!hit(json!({"missing": {"$ne": null}}), d.clone()));
    assert!(hit(json!({"a": {"$ne": null}}), d));
    assert!(!hit(json!({"t": {"$ne": "a"}}), json!({"t": ["a", "b"]})));
}

#[test]
fn comparisons() {
    let d = json!({"n": 5, "s": "m", "arr": [1, 10], "b": true});
    for (c, want) in [
        (json!({"n": {"$gt": 4}}), true),
        (json!({"n": {"$gt": 5}}), false),
        (json!({"n": {"$gte": 5}}), true),
        (json!({"n": {"$gte": 5.5}}), false),
        (json!({"n": {"$lt": 5.5}}), true),
        (json!({"n": {"$lt": 5}}), false),
        (json!({"n": {"$lte": 5}}), true),
        (json!({"n": {"$lte": 4}}), false),
        (json!({"n": {"$gt": 1, "$lt": 9}}), true),
        (json!({"n": {"$gt": 6, "$lt": 9}}), false),
        (json!({"s": {"$gt": "a"}}), true),
        (json!({"s": {"$gt": "z"}}), false),
        (json!({"s": {"$lte": "m"}}), true),
        // mixed types never compare
        (json!({"n": {"$gt": "1"}}), false),
        (json!({"s": {"$lt": 100}}), false),
        (json!({"b": {"$gt": false}}), false),
        (json!({"missing": {"$lt": 100}}), false),
        (json!({"n": {"$gt": null}}), false),
        // arrays: any element
        (json!({"arr": {"$gt": 5}}), true),
        (json!({"arr": {"$gt": 10}}), false),
        // different elements may satisfy different bounds, as in mongo
        (json!({"arr": {"$gt": 5, "$lt": 2}}), true),
    ] {
        assert_eq!(hit(c.clone(), d.clone()), want, "{c}");
    }
}

#[test]
fn in_nin() {
    let d = json!({"g": "horror", "t": ["a", "b"], "z": 0});
    assert!(hit(json!({"g": {"$in": ["comedy", "horror"]}}), d.clone()));
    assert!(!hit(json!({"g": {"$in": ["comedy"]}}), d.clone()));
    assert!(!hit(json!({"g": {"$in": []}}), d.clone()));
    assert!(hit(json!({"t": {"$in": ["b", "x"]}}), d.clone()));
    assert!(hit(json!({"z": {"$in": [false, 0]}}), d.clone()));
    assert!(hit(json!({"missing": {"$in": [null]}}), d.clone()));
    assert!(hit(json!({"g": {"$nin": ["comedy"]}}), d.clone()));
    assert!(!hit(json!({"g": {"$nin": ["horror"]}}), d.clone()));
    assert!(hit(json!({"g": {"$nin": []}}), d.clone()));
    assert!(!hit(json!({"t": {"$nin": ["a"]}}), d.clone()));
    assert!(hit(json!({"missing": {"$nin": [1]}}), d));
}

#[test]
fn exists() {
    let d = json!({"a": null, "b": false, "c": {"d": 0}});
    for f in ["a", "b", "c", "c.d"] {
        assert!(hit(json!({f: {"$exists": true}}), d.clone()), "{f}");
        assert!(!hit(json!({f: {"$exists": false}}), d.clone()), "{f}");
    }
    assert!(hit(json!({"x": {"$exists": false}}), d.clone()));
    assert!(!hit(json!({"x": {"$exists": true}}), d.clone()));
    assert!(hit(json!({"a": {"$exists": 1}}), d.clone()));
    assert!(hit(json!({"x": {"$exists": 0}}), d));
}

#[test]
fn size() {
    let d = json!({"t": ["a", "b"], "e": [], "s": "ab"});
    assert!(hit(json!({"t": {"$size": 2}}), d.clone()));
    assert!(!hit(json!({"t": {"$size": 1}}), d.clone()));
    assert!(hit(json!({"e": {"$size": 0}}), d.clone()));
    assert!(!hit(json!({"s": {"$size": 2}}), d.clone()));
    assert!(!hit(json!({"missing": {"$size": 0}}), d));
}

#[test]
fn all() {
    let d = json!({"t": ["a", "b", "c"], "s": "a"});
    assert!(hit(json!({"t": {"$all": ["c", "a"]}}), d.clone()));
    assert!(!hit(json!({"t": {"$all": ["a", "x"]}}), d.clone()));
    assert!(!hit(json!({"t": {"$all": []}}), d.clone()));
    assert!(hit(json!({"s": {"$all": ["a"]}}), d.clone()));
    assert!(!hit(json!({"missing": {"$all": ["a"]}}), d));
}

#[test]
fn elem_match() {
    let d = json!({"items": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "nums": [1, 5, 9], "o": {"a": 1}});
    assert!(hit(json!({"items": {"$elemMatch": {"a": 1, "b": 2}}}), d.clone()));
    // both conditions must hold on the same element
    assert!(!hit(json!({"items": {"$elemMatch": {"a": 1, "b": 4}}}), d.clone()));
    assert!(hit(json!({"items": {"$elemMatch": {"a": {"$gt": 2}}}}), d.clone()));
    assert!(hit(json!({"items": {"$elemMatch": {"$or": [{"a": 9}, {"b": 4}]}}}), d.clone()));
    assert!(hit(json!({"nums": {"$elemMatch": {"$gt": 4, "$lt": 6}}}), d.clone()));
    assert!(!hit(json!({"nums": {"$elemMatch": {"$gt": 5, "$lt": 9}}}), d.clone()));
    // not an array
    assert!(!hit(json!({"o": {"$elemMatch": {"a": 1}}}), d.clone()));
    assert!(!hit(json!({"missing": {"$elemMatch": {"a": 1}}}), d.clone()));
    // inside $elemMatch, `path` and `_meta.*` are the element's own fields
    let d2 = json!({"links": [{"path": "/x", "_meta": {"created": 1}}]});
    assert!(hit(json!({"links": {"$elemMatch": {"path": "/x"}}}), d2.clone()));
    assert!(hit(json!({"links": {"$elemMatch": {"_meta.created": 1}}}), d2));
}

#[test]
fn regex() {
    let d = json!({"name": "Hello World", "multi": "one\ntwo", "tags": ["x1", "y2"], "n": 12});
    assert!(hit(json!({"name": {"$regex": "^Hello"}}), d.clone()));
    assert!(!hit(json!({"name": {"$regex": "world"}}), d.clone()));
    assert!(hit(json!({"name": {"$regex": "world", "$options": "i"}}), d.clone()));
    assert!(!hit(json!({"multi": {"$regex": "^two"}}), d.clone()));
    assert!(hit(json!({"multi": {"$regex": "^two", "$options": "m"}}), d.clone()));
    assert!(!hit(json!({"multi": {"$regex": "one.two"}}), d.clone()));
    assert!(hit(json!({"multi": {"$regex": "one.two", "$options": "s"}}), d.clone()));
    assert!(hit(
        json!({"name": {"$regex": "hello \\s world # comment", "$options": "xi"}}),
        d.clone()
    ));
    assert!(hit(json!({"tags": {"$regex": "^y"}}), d.clone()));
    assert!(!hit(json!({"n": {"$regex": "1"}}), d.clone()));
    assert!(!hit(json!({"missing": {"$regex": ""}}), d.clone()));
    assert!(hit(json!({"name": {"$options": "i", "$regex": "HELLO"}}), d));
}

#[test]
fn not() {
    let d = json!({"n": 5, "s": "abc"});
    assert!(hit(json!({"n": {"$not": {"$gt": 6}}}), d.clone()));
    assert!(!hit(json!({"n": {"$not": {"$gt": 4}}}), d.clone()));
    // $not of a range: true when either bound fails
    assert!(hit(json!({"n": {"$not": {"$gt": 1, "$lt": 3}}}), d.clone()));
    assert!(!hit(json!({"n": {"$not": {"$gt": 1, "$lt": 9}}}), d.clone()));
    assert!(hit(json!({"s": {"$not": {"$regex": "^x"}}}), d.clone()));
    assert!(!hit(json!({"s": {"$not": {"$regex": "^A", "$options": "i"}}}), d.clone()));
    // $not matches missing fields
    assert!(hit(json!({"missing": {"$not": {"$gt": 1}}}), d.clone()));
    assert!(hit(json!({"n": {"$not": {"$not": {"$eq": 5}}}}), d));
}

// ---------- logical ----------

#[test]
fn or_and_nor() {
    let comedy = json!({"genre": "comedy", "year": 1990});
    let horror = json!({"genre": "horror", "year": 1979});
    let drama = json!({"genre": "drama", "year": 2000});
    let or = json!({"$or": [{"genre": "comedy"}, {"year": 1979}]});
    assert!(hit(or.clone(), comedy.clone()));
    assert!(hit(or.clone(), horror.clone()));
    assert!(!hit(or, drama.clone()));
    let and = json!({"$and": [{"genre": "comedy"}, {"year": {"$gt": 1980}}]});
    assert!(hit(and.clone(), comedy.clone()));
    assert!(!hit(and, horror.clone()));
    let nor = json!({"$nor": [{"genre": "comedy"}, {"year": 1979}]});
    assert!(!hit(nor.clone(), comedy.clone()));
    assert!(!hit(nor.clone(), horror.clone()));
    assert!(hit(nor, drama.clone()));
    // nesting, and logical clauses combined with field clauses
    let nested = json!({"year": {"$lt": 2000}, "$or": [{"$and": [{"genre": "horror"}, {"year": 1979}]}, {"$nor": [{"genre": {"$in": ["horror", "drama"]}}]}]});
    assert!(hit(nested.clone(), comedy));
    assert!(hit(nested.clone(), horror));
    assert!(!hit(nested, drama));
}

// ---------- errors ----------

#[test]
fn criteria_errors() {
    use QueryError::UnknownOperator as Unknown;
    assert_eq!(err(json!({"a": {"$foo": 1}})), Unknown("$foo".into()));
    assert_eq!(err(json!({"$where": "true"})), Unknown("$where".into()));
    assert_eq!(err(json!({"$not": {"a": 1}})), Unknown("$not".into()));
    assert_eq!(err(json!({"$or": [{"a": {"$bogus": 1}}]})), Unknown("$bogus".into()));
    assert_eq!(
        err(json!({"a": {"$gt": 1, "b": 2}})),
        invalid("You cannot mix operators and normal fields")
    );
    assert_eq!(err(json!({"a": {"$in": 1}})), invalid("$in needs an array"));
    assert_eq!(err(json!({"a": {"$nin": "x"}})), invalid("$nin needs an array"));
    assert_eq!(err(json!({"a": {"$all": {}}})), invalid("$all needs an array"));
    assert_eq!(err(json!({"a": {"$size": -1}})), invalid("$size needs a non-negative integer"));
    assert_eq!(err(json!({"a": {"$size": 1.5}})), invalid("$size needs a non-negative integer"));
    assert_eq!(err(json!({"a": {"$exists": "yes"}})), invalid("$exists needs true or false"));
    assert_eq!(err(json!({"a": {"$elemMatch": 1}})), invalid("$elemMatch needs an object"));
    assert_eq!(err(json!({"a": {"$elemMatch": {"$zz": 1}}})), Unknown("$zz".into()));
    assert_eq!(err(json!({"a": {"$elemMatch": {"b": {"$zz": 1}}}})), Unknown("$zz".into()));
    assert_eq!(err(json!({"a": {"$regex": 1}})), invalid("$regex needs a string pattern"));
    assert_eq!(err(json!({"a": {"$options": "i"}})), invalid("$options needs $regex"));
    assert_eq!(
        err(json!({"a": {"$regex": "x", "$options": "g"}})),
        invalid("$options: unknown flag 'g' (use i, m, s, x)")
    );
    assert_eq!(
        err(json!({"a": {"$regex": "x", "$options": 1}})),
        invalid("$options needs a string of flags (i, m, s, x)")
    );
    assert!(matches!(err(json!({"a": {"$regex": "(unclosed"}})), QueryError::Invalid(m) if m.starts_with("$regex: invalid pattern:")));
    assert!(matches!(err(json!({"a": {"$not": 5}})), QueryError::Invalid(m) if m.starts_with("$not needs an operator object")));
    assert!(matches!(err(json!({"a": {"$not": {}}})), QueryError::Invalid(m) if m.starts_with("$not needs an operator object")));
    assert!(matches!(err(json!({"a": {"$not": {"$gt": 1, "x": 1}}})), QueryError::Invalid(m) if m.contains("mix")));
    for op in ["$or", "$and", "$nor"] {
        let msg = format!("{op} needs a non-empty array of criteria objects");
        assert_eq!(err(json!({op: []})), invalid(&msg));
        assert_eq!(err(json!({op: {"a": 1}})), invalid(&msg));
        assert!(matches!(err(json!({op: [1]})), QueryError::Invalid(m) if m.starts_with("criteria must be an object")));
    }
    for bad in [json!(1), json!("a"), json!([{"a": 1}]), json!(true)] {
        assert!(matches!(err(bad), QueryError::Invalid(m) if m.starts_with("criteria must be an object")));
    }
    assert_eq!(err(json!({"a": {"$foo": 1}})).to_string(), "Unknown query operator $foo");
    assert_eq!(err(json!({"a": {"$in": 1}})).to_string(), "$in needs an array");
}

#[test]
fn literal_objects_are_not_operator_objects() {
    // `$`-keys below the first level are literal data, which stored data can never contain.
    assert!(!hit(json!({"a": {"b": {"$gt": 1}}}), json!({"a": {"b": 5}})));
    assert!(hit(json!({"a": {"$eq": {"$gt": 1}}}), json!({"a": {"$gt": 1}})));
}

// ---------- options ----------

fn opts(options: Value) -> Query {
    Query::parse(None, Some(&options)).unwrap_or_else(|e| panic!("{options}: {e}"))
}

#[test]
fn option_defaults_and_ignored_keys() {
    for o in [
        None,
        Some(json!(null)),
        Some(json!({})),
        Some(json!({"path_only": true, "whatever": [1], "fields": null, "sort": null, "limit": null})),
    ] {
        let q = Query::parse(None, o.as_ref()).unwrap();
        assert_eq!((q.skip(), q.limit(), q.count_only(), q.has_projection()), (0, None, false, false));
    }
}

#[test]
fn skip_limit_count() {
    let q = opts(json!({"skip": 2, "limit": 3, "count": true}));
    assert_eq!((q.skip(), q.limit(), q.count_only()), (2, Some(3), true));
    assert_eq!(opts(json!({"limit": 0})).limit(), None);
    assert_eq!(opts(json!({"limit": 4.0})).limit(), Some(4));
    assert!(!opts(json!({"count": false})).count_only());
}

#[test]
fn option_errors() {
    assert_eq!(
        opt_err(json!({"limit": "5"})),
        invalid("limit must be a non-negative integer, got \"5\"")
    );
    assert_eq!(
        opt_err(json!({"limit": -1})),
        invalid("limit must be a non-negative integer, got -1")
    );
    assert_eq!(
        opt_err(json!({"skip": 1.5})),
        invalid("skip must be a non-negative integer, got 1.5")
    );
    assert_eq!(
        opt_err(json!({"count": "yes"})),
        invalid("count must be true or false, got \"yes\"")
    );
    assert_eq!(opt_err(json!([1])), invalid("options must be an object, got [1]"));
    assert!(matches!(opt_err(json!({"sort": [["a", 1]]})), QueryError::Invalid(m) if m.starts_with("sort must be an object")));
    assert_eq!(
        opt_err(json!({"sort": {"a": 2}})),
        invalid("sort direction for 'a' must be 1 or -1, got 2")
    );
    assert_eq!(
        opt_err(json!({"sort": {"a": "asc"}})),
        invalid("sort direction for 'a' must be 1 or -1, got \"asc\"")
    );
    assert!(matches!(opt_err(json!({"fields": ["a"]})), QueryError::Invalid(m) if m.starts_with("fields must be an object")));
    assert_eq!(
        opt_err(json!({"fields": {"a": 1, "b": 0}})),
        invalid("Can't both keep and omit fields")
    );
    assert_eq!(
        opt_err(json!({"fields": {"a": "yes"}})),
        invalid("fields: 'a' must be 1 or 0, got \"yes\"")
    );
}

// ---------- apply: filter, sort, skip, limit ----------

fn records() -> Vec<Record> {
    let mut v = vec![
        rec("/m/1", json!({"name": "c", "year": 1990, "nested": {"r": 2}})),
        rec("/m/2", json!({"name": "a", "year": 1979, "nested": {"r": 1}})),
        rec("/m/3", json!({"name": "b", "year": 1990})),
        rec("/m/4", json!({"name": "d", "year": 2000, "nested": {"r": 3}})),
    ];
    for (i, r) in v.iter_mut().enumerate() {
        r.created = [30, 10, 40, 20][i];
    }
    v
}

fn paths(items: &[Record]) -> Vec<&str> {
    items.iter().map(|r| r.path.as_str()).collect()
}

fn run(criteria: Value, options: Value) -> Vec<Record> {
    Query::parse(Some(&criteria), Some(&options))
        .unwrap()
        .apply(records(), |r| DocRef::from(r))
}

#[test]
fn sort_single_and_multi_key() {
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"name": 1}}))),
        ["/m/2", "/m/3", "/m/1", "/m/4"]
    );
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"name": -1}}))),
        ["/m/4", "/m/1", "/m/3", "/m/2"]
    );
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"_meta.created": -1}}))),
        ["/m/3", "/m/1", "/m/4", "/m/2"]
    );
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"_meta.created": 1}}))),
        ["/m/2", "/m/4", "/m/1", "/m/3"]
    );
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"year": -1, "name": 1}}))),
        ["/m/4", "/m/3", "/m/1", "/m/2"]
    );
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"path": -1}}))),
        ["/m/4", "/m/3", "/m/2", "/m/1"]
    );
    // missing sorts first ascending
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"nested.r": 1}}))),
        ["/m/3", "/m/2", "/m/1", "/m/4"]
    );
}

#[test]
fn sort_ties_keep_incoming_order() {
    // /m/1 and /m/3 tie on year
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"year": 1}}))),
        ["/m/2", "/m/1", "/m/3", "/m/4"]
    );
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"year": -1}}))),
        ["/m/4", "/m/1", "/m/3", "/m/2"]
    );
    assert_eq!(
        paths(&run(json!({}), json!({"sort": {"nothing": -1}}))),
        ["/m/1", "/m/2", "/m/3", "/m/4"]
    );
    assert_eq!(paths(&run(json!({}), json!({}))), ["/m/1", "/m/2", "/m/3", "/m/4"]);
}

#[test]
fn sort_cross_type() {
    let values = [json!({"o": 1}), json!([1]), json!(true), json!("s"), json!(3), json!(null)];
    let mut items: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| rec(&format!("/{i}"), json!({"v": v})))
        .collect();
    items.push(rec("/missing", json!({})));
    let q = opts(json!({"sort": {"v": 1}}));
    q.sort(&mut items, |r| DocRef::from(r));
    assert_eq!(paths(&items), ["/missing", "/5", "/4", "/3", "/2", "/1", "/0"]);
}

#[test]
fn sort_by_values_fanned_out_of_arrays() {
    let mut items = vec![
        rec("/a", json!({"l": [{"n": 2}, {"n": 1}]})),
        rec("/b", json!({"l": [{"n": 1}, {"n": 5}]})),
        rec("/c", json!({"l": {"n": 0}})),
    ];
    opts(json!({"sort": {"l.n": 1}})).sort(&mut items, |r| DocRef::from(r));
    // 0 (number) < [1, 5] < [2, 1] (arrays after numbers, compared element-wise)
    assert_eq!(paths(&items), ["/c", "/b", "/a"]);
}

#[test]
fn filter_then_sort_then_skip_then_limit() {
    let opt = json!({"sort": {"name": -1}, "skip": 1, "limit": 2});
    assert_eq!(paths(&run(json!({"year": {"$gte": 1980}}), opt)), ["/m/1", "/m/3"]);
    assert_eq!(paths(&run(json!({}), json!({"skip": 3}))), ["/m/4"]);
    assert_eq!(paths(&run(json!({}), json!({"skip": 10}))), Vec::<&str>::new());
    assert_eq!(paths(&run(json!({}), json!({"limit": 1}))), ["/m/1"]);
    assert_eq!(run(json!({"year": 1990}), json!({"count": true})).len(), 2);
    assert_eq!(
        paths(&run(json!({"$or": [{"name": "a"}, {"_meta.created": 40}]}), json!({}))),
        ["/m/2", "/m/3"]
    );
}

// ---------- projection ----------

fn project(fields: Value, data: Value) -> Value {
    let Value::Object(data) = data else { panic!() };
    Value::Object(opts(json!({ "fields": fields })).project(&data))
}

#[test]
fn projection_inclusion() {
    let data = json!({"z": 1, "a": {"b": 1, "c": 2}, "m": 3, "l": [{"b": 1, "x": 2}, 4, {"x": 3}]});
    // original key order kept, not the order of `fields`
    assert_eq!(project(json!({"m": 1, "z": 1}), data.clone()).to_string(), r#"{"z":1,"m":3}"#);
    assert_eq!(project(json!({"a.b": 1}), data.clone()), json!({"a": {"b": 1}}));
    assert_eq!(
        project(json!({"a.b": true, "a.c": 1}), data.clone()),
        json!({"a": {"b": 1, "c": 2}})
    );
    assert_eq!(project(json!({"a": 1, "a.b": 1}), data.clone()), json!({"a": {"b": 1, "c": 2}}));
    assert_eq!(project(json!({"l.b": 1}), data.clone()), json!({"l": [{"b": 1}, {}]}));
    assert_eq!(project(json!({"m.x": 1}), data.clone()), json!({}));
    assert_eq!(project(json!({"nope": 1}), data.clone()), json!({}));
    // `_meta` / `_id` entries are the caller's
    assert_eq!(project(json!({"z": 1, "_meta": 1, "_id": 0}), data.clone()), json!({"z": 1}));
    // only `_meta` kept: no data fields
    assert_eq!(project(json!({"_meta": 1}), data.clone()), json!({}));
    assert_eq!(project(json!({"_meta.path": 1}), data), json!({}));
}

#[test]
fn projection_exclusion() {
    let data = json!({"z": 1, "a": {"b": 1, "c": 2}, "m": 3, "l": [{"b": 1, "x": 2}, 4]});
    assert_eq!(
        project(json!({"z": 0}), data.clone()).to_string(),
        r#"{"a":{"b":1,"c":2},"m":3,"l":[{"b":1,"x":2},4]}"#
    );
    assert_eq!(
        project(json!({"a.b": 0, "m": false}), data.clone()),
        json!({"z": 1, "a": {"c": 2}, "l": [{"b": 1, "x": 2}, 4]})
    );
    assert_eq!(
        project(json!({"l.x": 0}), data.clone()),
        json!({"z": 1, "a": {"b": 1, "c": 2}, "m": 3, "l": [{"b": 1}, 4]})
    );
    assert_eq!(project(json!({"z.q": 0}), data.clone()), data);
}

#[test]
fn projection_presence() {
    assert!(opts(json!({"fields": {"a": 1}})).has_projection());
    assert!(opts(json!({"fields": {"a": 0}})).has_projection());
    assert!(opts(json!({"fields": {"_meta": 1}})).has_projection());
    assert!(!opts(json!({"fields": {}})).has_projection());
    assert!(!opts(json!({"fields": {"_meta": 0}})).has_projection());
    assert!(!opts(json!({"fields": {"_id": 0}})).has_projection());
    // no projection: data unchanged
    let data: Map<String, Value> = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
    assert_eq!(Query::default().project(&data), data);
}
