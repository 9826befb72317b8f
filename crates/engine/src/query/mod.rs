//! Search queries for `get`: criteria, sort, projection, skip/limit/count.
//!
//! The original rewrites queries before handing them to nedb and so breaks `$or`, `false`/`0`
//! equality and nested-object equality (semantics §4.10). happn-rs runs them as written, with
//! mongo semantics (decisions.md, "Queries mean what they say"):
//! * a key is a dot path into the record's data, except `_meta.created`, `_meta.modified`,
//!   `_meta.path`, `_meta.tag` and a bare `path`/`_id`, which address the record's metadata;
//! * a dot path continues into every element of an array it meets, and a condition holds when
//!   any value found satisfies it;
//! * everything is validated in [`Query::parse`], so a bad query fails before reading any record.

mod compare;
mod criteria;
mod field;
mod projection;
mod sort;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use criteria::Criteria;
use field::Root;
use projection::Projection;
use sort::SortKey;

/// What a query sees of a record.
#[derive(Debug, Clone, Copy)]
pub struct DocRef<'a> {
    pub path: &'a str,
    pub data: &'a Map<String, Value>,
    pub created: i64,
    pub modified: i64,
    pub tag: Option<&'a str>,
}

impl<'a> From<&'a crate::record::Record> for DocRef<'a> {
    fn from(r: &'a crate::record::Record) -> Self {
        DocRef {
            path: &r.path,
            data: &r.data,
            created: r.created,
            modified: r.modified,
            tag: r.tag.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("Unknown query operator {0}")]
    UnknownOperator(String),
    #[error("{0}")]
    Invalid(String),
}

/// A parsed `get` query. `Default` is the query that matches everything, unsorted and unlimited.
#[derive(Debug, Clone, Default)]
pub struct Query {
    criteria: Criteria,
    sort: Vec<SortKey>,
    projection: Option<Projection>,
    skip: usize,
    limit: Option<usize>,
    count: bool,
}

impl Query {
    /// `criteria` is the request's `options.criteria`, `options` its `options.options`; either
    /// may be absent or `null`. Recognised options: `fields`, `sort`, `skip`, `limit`, `count`
    /// (`path_only` is the caller's; other keys are ignored, as the original ignores them).
    pub fn parse(criteria: Option<&Value>, options: Option<&Value>) -> Result<Query, QueryError> {
        let mut query = Query::default();
        if let Some(c) = criteria.filter(|c| !c.is_null()) {
            query.criteria = Criteria::parse(c, true)?;
        }
        let options = match options {
            None | Some(Value::Null) => return Ok(query),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(QueryError::Invalid(format!("options must be an object, got {other}"))),
        };
        let get = |key: &str| options.get(key).filter(|v| !v.is_null());
        if let Some(fields) = get("fields") {
            query.projection = Projection::parse(fields)?;
        }
        if let Some(s) = get("sort") {
            query.sort = sort::parse(s)?;
        }
        if let Some(skip) = get("skip") {
            query.skip = count_option("skip", skip)?;
        }
        if let Some(limit) = get("limit") {
            // 0 means "no limit", as in mongo.
            query.limit = Some(count_option("limit", limit)?).filter(|&n| n > 0);
        }
        if let Some(count) = get("count") {
            query.count = count
                .as_bool()
                .ok_or_else(|| QueryError::Invalid(format!("count must be true or false, got {count}")))?;
        }
        Ok(query)
    }

    pub fn has_criteria(&self) -> bool {
        !self.criteria.is_empty()
    }

    /// Whether the criteria or the sort keys look at a data field whose first segment is one of
    /// `fields` (at any depth of the criteria). Used to keep records with secret fields out of
    /// queries that name them (see `crate::visibility`).
    pub fn names_any(&self, fields: &[&str]) -> bool {
        fields.iter().any(|f| self.criteria.names(f) || sort::names(&self.sort, f))
    }

    /// Whether the record satisfies the criteria (always, when there are none).
    pub fn matches(&self, doc: &DocRef) -> bool {
        self.criteria.matches(Root::Doc(doc))
    }

    /// Sorts in place by the sort keys. The sort is stable, so ties (and everything, when there
    /// are no sort keys) keep the incoming order, which is ascending path order.
    pub fn sort<T>(&self, items: &mut [T], doc: impl Fn(&T) -> DocRef<'_>) {
        if !self.sort.is_empty() {
            items.sort_by(|a, b| sort::compare_docs(&self.sort, &doc(a), &doc(b)));
        }
    }

    pub fn skip(&self) -> usize {
        self.skip
    }

    /// `None` = no limit (also what `limit: 0` means).
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// `count: true`: the caller answers with the number of results instead of the results.
    pub fn count_only(&self) -> bool {
        self.count
    }

    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// Applies `fields` to a record's data; without a projection the data is returned as is.
    /// The result keeps the data's key order. `_meta` entries of `fields` are left to the caller.
    pub fn project(&self, data: &Map<String, Value>) -> Map<String, Value> {
        match &self.projection {
            Some(p) => p.apply(data),
            None => data.clone(),
        }
    }

    /// Filter, sort, skip, limit: the result list of a `get` (before projection). With
    /// `count_only`, its length is the count.
    pub fn apply<T>(&self, items: Vec<T>, doc: impl Fn(&T) -> DocRef<'_>) -> Vec<T> {
        let mut items: Vec<T> = items.into_iter().filter(|t| self.matches(&doc(t))).collect();
        self.sort(&mut items, &doc);
        items.into_iter().skip(self.skip).take(self.limit.unwrap_or(usize::MAX)).collect()
    }
}

/// A non-negative integer (`2.0` is accepted: some clients send whole numbers as floats).
pub(crate) fn non_negative_int(v: &Value) -> Option<usize> {
    if let Some(n) = v.as_u64() {
        return usize::try_from(n).ok();
    }
    let f = v.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f <= usize::MAX as f64).then_some(f as usize)
}

fn count_option(name: &str, v: &Value) -> Result<usize, QueryError> {
    non_negative_int(v).ok_or_else(|| QueryError::Invalid(format!("{name} must be a non-negative integer, got {v}")))
}
