//! The query engine (`crates/engine/src/query`): criteria and options (sort, skip, limit, count)
//! over generated documents, against a small reference evaluator written here over
//! `serde_json::Value`s, straight from the semantics in the module's documentation:
//!
//! * a key is a dot path; a numeric segment indexes an array, any other segment meeting an array
//!   continues into each of its object elements; a field found nowhere is "missing";
//! * `$eq` (and a literal) holds when some value found equals the operand (deeply, numbers by
//!   value) or is an array with such an element, and `null` also matches a missing field; `$ne`,
//!   `$nin` are the exact negations of `$eq`, `$in`;
//! * `$gt`/`$gte`/`$lt`/`$lte` compare numbers with numbers and strings with strings only, on the
//!   value or each element of an array value; `$exists` asks whether any value was found;
//! * `$and`/`$or`/`$nor` combine criteria objects;
//! * sort orders missing < null < numbers < strings < booleans < arrays < objects, stable;
//!   skip and limit (0 = none) apply after it.
//!
//! Documents and queries are built by `arbitrary` from a small vocabulary (three keys, a few
//! values) so that random criteria often select some documents and not others.
#![no_main]

use arbitrary::Arbitrary;
use happn_engine::query::{DocRef, Query};
use happn_engine::Record;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

#[derive(Arbitrary, Debug)]
enum Val {
    Null,
    Bool(bool),
    Int(i8),
    /// `n + 0.5`, and whole numbers written as floats (`2.0` equals `2`).
    Float(i8, bool),
    Str(Word),
    Arr(Vec<Val>),
    Obj(Vec<(Key, Val)>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Key {
    A,
    B,
    C,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Word {
    Empty,
    A,
    B,
    Ab,
    Upper,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FieldName {
    A,
    B,
    C,
    AB,
    A0,
    BCA,
    CA,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Eq(Val),
    Ne(Val),
    Gt(Val),
    Gte(Val),
    Lt(Val),
    Lte(Val),
    In(Vec<Val>),
    Nin(Vec<Val>),
    Exists(bool),
}

#[derive(Arbitrary, Debug)]
enum Crit {
    Literal(FieldName, Val),
    Ops(FieldName, Vec<Op>),
    And(Vec<Crit>),
    Or(Vec<Crit>),
    Nor(Vec<Crit>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    docs: Vec<Vec<(Key, Val)>>,
    criteria: Vec<Crit>,
    sort: Vec<(FieldName, bool)>,
    skip: Option<u8>,
    limit: Option<u8>,
    count: Option<bool>,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::A => "a",
            Key::B => "b",
            Key::C => "c",
        }
    }
}

impl FieldName {
    fn name(self) -> &'static str {
        match self {
            FieldName::A => "a",
            FieldName::B => "b",
            FieldName::C => "c",
            FieldName::AB => "a.b",
            FieldName::A0 => "a.0",
            FieldName::BCA => "b.c.a",
            FieldName::CA => "c.a",
        }
    }
}

/// Nesting is cut at a few levels: deeper values only slow the search down.
fn value(v: &Val, depth: usize) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => json!(b),
        Val::Int(n) => json!(n % 4),
        Val::Float(n, half) => json!(f64::from(n % 4) + if *half { 0.5 } else { 0.0 }),
        Val::Str(w) => json!(match w {
            Word::Empty => "",
            Word::A => "a",
            Word::B => "b",
            Word::Ab => "ab",
            Word::Upper => "B",
        }),
        _ if depth >= 3 => Value::Null,
        Val::Arr(items) => Value::Array(items.iter().take(4).map(|v| value(v, depth + 1)).collect()),
        Val::Obj(kv) => Value::Object(object(kv, depth + 1)),
    }
}

fn object(kv: &[(Key, Val)], depth: usize) -> Map<String, Value> {
    kv.iter().take(4).map(|(k, v)| (k.name().to_owned(), value(v, depth))).collect()
}

fn values(vs: &[Val]) -> Value {
    Value::Array(vs.iter().take(4).map(|v| value(v, 1)).collect())
}

fn criteria(crits: &[Crit], depth: usize) -> Map<String, Value> {
    let mut out = Map::new();
    for c in crits.iter().take(4) {
        let list = |cs: &[Crit]| {
            let items: Vec<Value> = if cs.is_empty() || depth >= 3 {
                // The operators need a non-empty list; `{}` matches everything.
                vec![json!({})]
            } else {
                cs.iter()
                    .take(3)
                    .map(|c| Value::Object(criteria(std::slice::from_ref(c), depth + 1)))
                    .collect()
            };
            Value::Array(items)
        };
        let (key, arg) = match c {
            Crit::Literal(f, v) => (f.name().to_owned(), value(v, 1)),
            Crit::Ops(f, ops) => {
                let mut o = Map::new();
                for op in ops.iter().take(3) {
                    let (name, arg) = match op {
                        Op::Eq(v) => ("$eq", value(v, 1)),
                        Op::Ne(v) => ("$ne", value(v, 1)),
                        Op::Gt(v) => ("$gt", value(v, 1)),
                        Op::Gte(v) => ("$gte", value(v, 1)),
                        Op::Lt(v) => ("$lt", value(v, 1)),
                        Op::Lte(v) => ("$lte", value(v, 1)),
                        Op::In(vs) => ("$in", values(vs)),
                        Op::Nin(vs) => ("$nin", values(vs)),
                        Op::Exists(b) => ("$exists", json!(b)),
                    };
                    o.insert(name.to_owned(), arg);
                }
                (f.name().to_owned(), Value::Object(o))
            }
            Crit::And(cs) => ("$and".to_owned(), list(cs)),
            Crit::Or(cs) => ("$or".to_owned(), list(cs)),
            Crit::Nor(cs) => ("$nor".to_owned(), list(cs)),
        };
        out.insert(key, arg);
    }
    out
}

// ---- the reference -------------------------------------------------------------------------

/// Every value a dot path finds in a document (`None` = missing there); never empty.
fn resolve(doc: &Map<String, Value>, field: &str) -> Vec<Option<Value>> {
    fn walk(v: &Value, segs: &[&str], out: &mut Vec<Option<Value>>) {
        let Some((seg, rest)) = segs.split_first() else {
            out.push(Some(v.clone()));
            return;
        };
        match v {
            Value::Object(m) => match m.get(*seg) {
                Some(v) => walk(v, rest, out),
                None => out.push(None),
            },
            Value::Array(items) => match seg.parse::<usize>() {
                Ok(i) => match items.get(i) {
                    Some(v) => walk(v, rest, out),
                    None => out.push(None),
                },
                Err(_) => {
                    for item in items {
                        if item.is_object() {
                            walk(item, segs, out);
                        } else {
                            out.push(None);
                        }
                    }
                }
            },
            _ => out.push(None),
        }
    }
    let segs: Vec<&str> = field.split('.').collect();
    let mut out = Vec::new();
    walk(&Value::Object(doc.clone()), &segs, &mut out);
    if out.is_empty() {
        out.push(None);
    }
    out
}

fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| deep_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w))),
        _ => a == b,
    }
}

fn ordered(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        // ASCII only here, where UTF-16 order is byte order.
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eq_holds(v: &Value, cands: &[Option<Value>]) -> bool {
    cands.iter().any(|c| match c {
        None => v.is_null(),
        Some(x) => deep_eq(x, v) || x.as_array().is_some_and(|items| items.iter().any(|e| deep_eq(e, v))),
    })
}

fn op_holds(op: &str, arg: &Value, cands: &[Option<Value>]) -> bool {
    let cmp = |want: &dyn Fn(Ordering) -> bool| {
        cands.iter().flatten().any(|x| match x {
            Value::Array(items) => items.iter().any(|e| ordered(e, arg).is_some_and(want)),
            x => ordered(x, arg).is_some_and(want),
        })
    };
    match op {
        "$eq" => eq_holds(arg, cands),
        "$ne" => !eq_holds(arg, cands),
        "$gt" => cmp(&|o| o.is_gt()),
        "$gte" => cmp(&|o| o.is_ge()),
        "$lt" => cmp(&|o| o.is_lt()),
        "$lte" => cmp(&|o| o.is_le()),
        "$in" => arg.as_array().unwrap().iter().any(|v| eq_holds(v, cands)),
        "$nin" => !arg.as_array().unwrap().iter().any(|v| eq_holds(v, cands)),
        "$exists" => cands.iter().any(Option::is_some) == arg.as_bool().unwrap(),
        other => unreachable!("{other}"),
    }
}

fn reference_matches(crit: &Map<String, Value>, doc: &Map<String, Value>) -> bool {
    let all_of = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| reference_matches(c.as_object().unwrap(), doc))
            .collect::<Vec<_>>()
    };
    crit.iter().all(|(key, arg)| match key.as_str() {
        "$and" => all_of(arg).into_iter().all(|m| m),
        "$or" => all_of(arg).into_iter().any(|m| m),
        "$nor" => !all_of(arg).into_iter().any(|m| m),
        field => {
            let cands = resolve(doc, field);
            match arg {
                Value::Object(ops) if !ops.is_empty() && ops.keys().all(|k| k.starts_with('$')) => {
                    ops.iter().all(|(op, v)| op_holds(op, v, &cands))
                }
                literal => eq_holds(literal, &cands),
            }
        }
    })
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn total_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (Some(a), Some(b)) = (a, b) else {
        return a.is_some().cmp(&b.is_some());
    };
    match (a, b) {
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => ordered(a, b).unwrap(),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(x, y)| total_order(Some(x), Some(y)))
            .find(|o| o.is_ne())
            .unwrap_or(x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            xs.iter()
                .zip(&ys)
                .map(|(p, q)| p.0.cmp(q.0).then_with(|| total_order(Some(p.1), Some(q.1))))
                .find(|o| o.is_ne())
                .unwrap_or(xs.len().cmp(&ys.len()))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The one value a document sorts by: the value found, or the array of them when a dot path
/// fans out through an array.
fn sort_value(doc: &Map<String, Value>, field: &str) -> Option<Value> {
    let mut found: Vec<Value> = resolve(doc, field).into_iter().flatten().collect();
    match found.len() {
        0 => None,
        1 => found.pop(),
        _ => Some(Value::Array(found)),
    }
}

fuzz_target!(|input: Input| {
    let docs: Vec<Map<String, Value>> = input.docs.iter().take(8).map(|kv| object(kv, 0)).collect();
    let crit = criteria(&input.criteria, 0);
    let mut options = Map::new();
    let mut sort = Map::new();
    for (f, desc) in input.sort.iter().take(3) {
        sort.insert(f.name().to_owned(), json!(if *desc { -1 } else { 1 }));
    }
    if !sort.is_empty() {
        options.insert("sort".into(), Value::Object(sort.clone()));
    }
    if let Some(n) = input.skip {
        options.insert("skip".into(), json!(n % 10));
    }
    if let Some(n) = input.limit {
        options.insert("limit".into(), json!(n % 10));
    }
    if let Some(c) = input.count {
        options.insert("count".into(), json!(c));
    }
    let crit_value = Value::Object(crit.clone());
    let options_value = Value::Object(options);
    let query = match Query::parse(Some(&crit_value), Some(&options_value)) {
        Ok(q) => q,
        Err(e) => panic!("a valid query was refused: {e}\ncriteria {crit_value}\noptions {options_value}"),
    };

    let records: Vec<Record> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| Record {
            path: format!("/q/{i}"),
            data: d.clone().into(),
            created: 0,
            modified: 0,
            tag: None,
        })
        .collect();
    for (r, doc) in records.iter().zip(&docs) {
        assert_eq!(
            query.matches(&DocRef::from(r)),
            reference_matches(&crit, doc),
            "criteria {crit_value} on {}",
            Value::Object(doc.clone())
        );
    }

    let got: Vec<usize> = query
        .apply(records.clone(), |r| DocRef::from(r))
        .iter()
        .map(|r| r.path[3..].parse().unwrap())
        .collect();
    let mut expected: Vec<usize> = (0..docs.len()).filter(|&i| reference_matches(&crit, &docs[i])).collect();
    expected.sort_by(|&a, &b| {
        sort.iter()
            .map(|(field, dir)| {
                let o = total_order(sort_value(&docs[a], field).as_ref(), sort_value(&docs[b], field).as_ref());
                if dir == &json!(-1) {
                    o.reverse()
                } else {
                    o
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let skip = input.skip.map_or(0, |n| (n % 10) as usize);
    let limit = input.limit.map_or(0, |n| (n % 10) as usize);
    let expected: Vec<usize> = expected
        .into_iter()
        .skip(skip)
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect();
    assert_eq!(got, expected, "criteria {crit_value}, options {options_value}");
    assert_eq!(query.count_only(), input.count == Some(true));
    assert_eq!(query.skip(), skip);
    assert_eq!(query.limit(), Some(limit).filter(|&n| n > 0));
});
