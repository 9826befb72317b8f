//! Value equality and ordering shared by criteria and sort.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Deep JSON equality as a query means it: numbers by value (`1` equals `1.0`), objects by key set
/// and values whatever their key order, arrays element by element in order.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w))),
        _ => a == b,
    }
}

/// `$gt`-family comparison: only numbers with numbers and strings with strings are ordered;
/// anything else (mixed or other types) has no order, so the operator does not match.
pub(crate) fn ordered(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(cmp_numbers(x, y)),
        (Value::String(x), Value::String(y)) => Some(cmp_strings(x, y)),
        _ => None,
    }
}

/// Total order over "maybe missing" values, as nedb sorts:
/// missing < null < numbers < strings < booleans < arrays < objects.
/// Arrays compare element-wise then by length; objects by their (key, value) pairs in key order,
/// then by size (nedb compares only the values; comparing keys too keeps the order consistent
/// with `equal`).
pub(crate) fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        _ => return a.is_some().cmp(&b.is_some()),
    };
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => cmp_strings(x, y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(x, y)| compare(Some(x), Some(y)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| cmp_strings(p.0, q.0));
            ys.sort_by(|p, q| cmp_strings(p.0, q.0));
            xs.iter()
                .zip(&ys)
                .map(|((xk, xv), (yk, yv))| cmp_strings(xk, yk).then_with(|| compare(Some(xv), Some(yv))))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| xs.len().cmp(&ys.len()))
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Exact for integers (i64/u64), by f64 otherwise. JSON has no NaN, so `partial_cmp` always answers.
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
}

/// JavaScript string order (UTF-16 code units), the order the original's clients and its default
/// path ordering use. Same as byte order except for characters above U+FFFF vs U+E000..U+FFFF.
pub(crate) fn cmp_strings(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_is_deep_and_numeric() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert!(equal(&json!({"a": 1, "b": [1, {"c": 2}]}), &json!({"b": [1, {"c": 2.0}], "a": 1})));
        assert!(!equal(&json!([1, 2]), &json!([2, 1])));
        assert!(!equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!equal(&json!(0), &json!(false)));
        assert!(!equal(&json!(""), &json!(null)));
        assert!(!equal(&json!(u64::MAX), &json!(-1)));
    }

    #[test]
    fn ordered_only_same_kind() {
        assert_eq!(ordered(&json!(2), &json!(10)), Some(Ordering::Less));
        assert_eq!(ordered(&json!("2"), &json!("10")), Some(Ordering::Greater));
        assert_eq!(ordered(&json!(2), &json!("10")), None);
        assert_eq!(ordered(&json!(true), &json!(false)), None);
        assert_eq!(ordered(&json!(null), &json!(null)), None);
    }

    #[test]
    fn cross_type_order() {
        let ladder = [
            None,
            Some(json!(null)),
            Some(json!(-5)),
            Some(json!(2.5)),
            Some(json!("")),
            Some(json!("a")),
            Some(json!(false)),
            Some(json!(true)),
            Some(json!([])),
            Some(json!([1])),
            Some(json!([1, 2])),
            Some(json!([2])),
            Some(json!({})),
            Some(json!({"a": 1})),
            Some(json!({"a": 2})),
            Some(json!({"b": 0})),
        ];
        for (i, a) in ladder.iter().enumerate() {
            for (j, b) in ladder.iter().enumerate() {
                assert_eq!(compare(a.as_ref(), b.as_ref()), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(cmp_numbers(&Number::from(u64::MAX), &Number::from(-1)), Ordering::Greater);
        assert_eq!(cmp_numbers(&Number::from_f64(1.5).unwrap(), &Number::from(2)), Ordering::Less);
        // U+FF61 sorts after U+1F600 in UTF-16 (surrogates are 0xD83D..) but before it by code point.
        assert_eq!(cmp_strings("\u{FF61}", "\u{1F600}"), Ordering::Greater);
        assert_eq!(cmp_strings("/a", "/b"), Ordering::Less);
    }
}
