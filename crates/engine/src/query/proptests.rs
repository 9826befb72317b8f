//! Property tests: the operators agree with their definitions in terms of each other, and sort
//! is a stable permutation ordered by the comparator.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::compare::{compare, equal};
use super::*;
use crate::record::Record;

/// Small JSON values, so that random queries hit random data often enough.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..4).prop_map(Value::from),
        prop_oneof![Just(0.5), Just(-1.0), Just(2.0)].prop_map(Value::from),
        prop_oneof![Just(""), Just("a"), Just("b"), Just("ab")].prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..3).prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(String::from)
}

/// Field addresses, including dot paths, array indexes and metadata.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("a.b"),
        Just("a.0"),
        Just("b.c.a"),
        Just("_meta.created"),
        Just("path")
    ]
    .prop_map(String::from)
}

fn data() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), value()), 0..4).prop_map(|kv| kv.into_iter().collect())
}

fn record() -> impl Strategy<Value = Record> {
    (prop_oneof![Just("/x/1"), Just("/x/2")], data(), 0i64..3).prop_map(|(path, data, created)| Record {
        path: path.into(),
        data: data.into(),
        created,
        modified: created,
        tag: None,
    })
}

/// A random (valid) field condition: a literal or an operator object.
fn condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        value(),
        value().prop_map(|v| json!({"$eq": v})),
        value().prop_map(|v| json!({"$ne": v})),
        value().prop_map(|v| json!({"$gt": v})),
        value().prop_map(|v| json!({"$lte": v})),
        prop::collection::vec(value(), 0..3).prop_map(|v| json!({"$in": v})),
        prop::collection::vec(value(), 0..3).prop_map(|v| json!({"$all": v})),
        any::<bool>().prop_map(|b| json!({"$exists": b})),
        (0usize..3).prop_map(|n| json!({"$size": n})),
        prop_oneof![Just("^a"), Just("b$"), Just("A")].prop_map(|r| json!({"$regex": r, "$options": "i"})),
        value().prop_map(|v| json!({"$elemMatch": {"$eq": v}})),
        (key(), value()).prop_map(|(k, v)| json!({"$elemMatch": {k: v}})),
    ]
}

fn criteria() -> impl Strategy<Value = Value> {
    let clause = (field(), condition()).prop_map(|(f, c)| json!({f: c}));
    clause.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$or": v})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$and": v})),
            prop::collection::vec(inner, 1..3).prop_map(|v| json!({"$nor": v})),
        ]
    })
}

fn matches(criteria: &Value, r: &Record) -> bool {
    Query::parse(Some(criteria), None).unwrap().matches(&DocRef::from(r))
}

proptest! {
    #[test]
    fn nor_is_negation(c in criteria(), r in record()) {
        prop_assert_eq!(matches(&json!({"$nor": [c.clone()]}), &r), !matches(&c, &r));
    }

    #[test]
    fn or_and_are_any_all(a in criteria(), b in criteria(), r in record()) {
        let (ma, mb) = (matches(&a, &r), matches(&b, &r));
        prop_assert_eq!(matches(&json!({"$or": [a.clone(), b.clone()]}), &r), ma || mb);
        prop_assert_eq!(matches(&json!({"$and": [a, b]}), &r), ma && mb);
    }

    #[test]
    fn in_of_one_is_equality(f in field(), v in value(), r in record()) {
        let eq = matches(&json!({&f: {"$eq": v.clone()}}), &r);
        prop_assert_eq!(matches(&json!({&f: {"$in": [v.clone()]}}), &r), eq);
        prop_assert_eq!(matches(&json!({&f: {"$nin": [v.clone()]}}), &r), !eq);
        prop_assert_eq!(matches(&json!({&f: {"$ne": v.clone()}}), &r), !eq);
        prop_assert_eq!(matches(&json!({&f: {"$all": [v.clone()]}}), &r), eq);
        // a literal that is not an operator object means `$eq`
        if !v.as_object().is_some_and(|o| o.keys().any(|k| k.starts_with('$'))) {
            prop_assert_eq!(matches(&json!({&f: v}), &r), eq);
        }
    }

    #[test]
    fn not_negates_operator_objects(f in field(), c in condition(), r in record()) {
        if c.as_object().is_some_and(|o| !o.is_empty() && o.keys().all(|k| k.starts_with('$'))) {
            prop_assert_eq!(matches(&json!({&f: {"$not": c.clone()}}), &r), !matches(&json!({&f: c}), &r));
        }
    }

    #[test]
    fn a_record_matches_its_own_fields(r in record()) {
        // every top-level field equals itself (array values included)
        let own = Value::Object(r.data.map().clone());
        prop_assert!(matches(&own, &r));
    }

    #[test]
    fn comparator_is_a_total_order_consistent_with_equality(a in value(), b in value(), c in value()) {
        let (a, b, c) = (Some(&a), Some(&b), Some(&c));
        prop_assert_eq!(compare(a, b), compare(b, a).reverse());
        prop_assert_eq!(compare(a, b).is_eq(), equal(a.unwrap(), b.unwrap()));
        if compare(a, b).is_le() && compare(b, c).is_le() {
            prop_assert!(compare(a, c).is_le());
        }
    }

    #[test]
    fn sort_is_a_stable_ordered_permutation(vals in prop::collection::vec(prop::option::of(value()), 0..8), desc in any::<bool>()) {
        let items: Vec<Record> = vals.iter().enumerate().map(|(i, v)| {
            let mut data = Map::new();
            if let Some(v) = v { data.insert("k".into(), v.clone()); }
            Record { path: format!("/{i:02}"), data: data.into(), created: 0, modified: 0, tag: None }
        }).collect();
        let q = Query::parse(None, Some(&json!({"sort": {"k": if desc { -1 } else { 1 }}}))).unwrap();
        let mut sorted = items.clone();
        q.sort(&mut sorted, |r| DocRef::from(r));
        let mut seen: Vec<_> = sorted.iter().map(|r| r.path.clone()).collect();
        seen.sort();
        prop_assert_eq!(seen, items.iter().map(|r| r.path.clone()).collect::<Vec<_>>());
        for w in sorted.windows(2) {
            let o = compare(w[0].data.get("k"), w[1].data.get("k"));
            let o = if desc { o.reverse() } else { o };
            prop_assert!(o.is_le());
            if o.is_eq() { prop_assert!(w[0].path < w[1].path, "ties keep input order"); }
        }
    }
}
