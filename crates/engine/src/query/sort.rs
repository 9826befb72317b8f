//! `sort: {field: 1 | -1, …}`: several keys, compared in the order given.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::compare::compare;
use super::field::{Field, Root};
use super::{DocRef, QueryError};

#[derive(Debug, Clone)]
pub(crate) struct SortKey {
    field: Field,
    descending: bool,
}

pub(crate) fn parse(sort: &Value) -> Result<Vec<SortKey>, QueryError> {
    let Value::Object(map) = sort else {
        return Err(QueryError::Invalid(format!(
            "sort must be an object like {{\"field\": 1}}, got {sort}"
        )));
    };
    map.iter()
        .map(|(key, dir)| {
            let descending = match dir.as_f64() {
                Some(1.0) => false,
                Some(-1.0) => true,
                _ => {
                    return Err(QueryError::Invalid(format!(
                        "sort direction for '{key}' must be 1 or -1, got {dir}"
                    )))
                }
            };
            Ok(SortKey {
                field: Field::parse(key, true),
                descending,
            })
        })
        .collect()
}

/// Whether a sort key looks at a data field whose first segment is `name`.
pub(crate) fn names(keys: &[SortKey], name: &str) -> bool {
    keys.iter().any(|k| k.field.starts_with(name))
}

pub(crate) fn compare_docs(keys: &[SortKey], a: &DocRef<'_>, b: &DocRef<'_>) -> Ordering {
    for key in keys {
        let order = compare(sort_value(&key.field, a).as_deref(), sort_value(&key.field, b).as_deref());
        let order = if key.descending { order.reverse() } else { order };
        if order.is_ne() {
            return order;
        }
    }
    Ordering::Equal
}

/// The single value a record sorts by. As in nedb, a dot path that fans out through an array
/// sorts by the array of the values found.
fn sort_value<'v>(field: &Field, doc: &'v DocRef<'v>) -> Option<Cow<'v, Value>> {
    let mut found: Vec<_> = field.resolve(Root::Doc(doc)).into_iter().flatten().collect();
    match found.len() {
        0 => None,
        1 => found.pop(),
        _ => Some(Cow::Owned(Value::Array(found.into_iter().map(Cow::into_owned).collect()))),
    }
}
