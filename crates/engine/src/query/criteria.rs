//! Criteria: compiled once at parse time (so every mistake is reported before any record is
//! read), then evaluated per record with mongo semantics.

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::compare::{equal, ordered};
use super::field::{Candidate, Field, Root};
use super::QueryError;

/// A criteria object: every clause must hold (an empty object matches everything).
#[derive(Debug, Clone, Default)]
pub(crate) struct Criteria(Vec<Clause>);

#[derive(Debug, Clone)]
enum Clause {
    /// `field: value` or `field: {$op: …, …}`: every condition must hold.
    Field(Field, Vec<Cond>),
    And(Vec<Criteria>),
    Or(Vec<Criteria>),
    Nor(Vec<Criteria>),
}

#[derive(Debug, Clone)]
enum Cond {
    Eq(Value),
    Ne(Value),
    Cmp(Ordering, bool, Value), // wanted ordering of field vs value, and whether Equal also passes
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Size(usize),
    All(Vec<Value>),
    ElemMatch(ElemMatch),
    Regex(Regex),
    Not(Vec<Cond>),
}

#[derive(Debug, Clone)]
enum ElemMatch {
    /// `{$elemMatch: {$gt: 1}}`: conditions on the element itself (arrays of scalars).
    Ops(Vec<Cond>),
    /// `{$elemMatch: {a: 1, b: {$gt: 2}}}`: criteria on the fields of object elements.
    Criteria(Criteria),
}

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::Invalid(msg.into())
}

impl Criteria {
    /// `meta`: whether `_meta.*`/`path` keys address record metadata (false inside `$elemMatch`).
    pub(crate) fn parse(value: &Value, meta: bool) -> Result<Criteria, QueryError> {
        let Value::Object(map) = value else {
            return Err(invalid(format!("criteria must be an object, got {value}")));
        };
        let mut clauses = Vec::with_capacity(map.len());
        for (key, arg) in map {
            clauses.push(match key.as_str() {
                "$and" => Clause::And(parse_list(key, arg, meta)?),
                "$or" => Clause::Or(parse_list(key, arg, meta)?),
                "$nor" => Clause::Nor(parse_list(key, arg, meta)?),
                k if k.starts_with('$') => return Err(QueryError::UnknownOperator(k.to_owned())),
                k => Clause::Field(Field::parse(k, meta), parse_field_value(arg)?),
            });
        }
        Ok(Criteria(clauses))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any clause, at any depth (inside `$and`/`$or`/`$nor`, `$not` and `$elemMatch`
    /// too), looks at a data field whose first segment is `name`.
    pub(crate) fn names(&self, name: &str) -> bool {
        self.0.iter().any(|clause| match clause {
            Clause::Field(field, conds) => field.starts_with(name) || conds.iter().any(|c| c.names(name)),
            Clause::And(list) | Clause::Or(list) | Clause::Nor(list) => list.iter().any(|c| c.names(name)),
        })
    }

    pub(crate) fn matches(&self, root: Root<'_>) -> bool {
        self.0.iter().all(|clause| match clause {
            Clause::Field(field, conds) => {
                let cands = field.resolve(root);
                conds.iter().all(|c| c.matches(&cands))
            }
            Clause::And(list) => list.iter().all(|c| c.matches(root)),
            Clause::Or(list) => list.iter().any(|c| c.matches(root)),
            Clause::Nor(list) => !list.iter().any(|c| c.matches(root)),
        })
    }
}

fn parse_list(op: &str, arg: &Value, meta: bool) -> Result<Vec<Criteria>, QueryError> {
    match arg {
        Value::Array(items) if !items.is_empty() => items.iter().map(|c| Criteria::parse(c, meta)).collect(),
        _ => Err(invalid(format!("{op} needs a non-empty array of criteria objects"))),
    }
}

/// The operators of `{$op: …}`, or `None` for a literal value. An object is an operator object
/// when all its keys start with `$`; mixing the two kinds is ambiguous, so it is refused.
fn operator_object(value: &Value) -> Result<Option<&Map<String, Value>>, QueryError> {
    let Value::Object(map) = value else {
        return Ok(None);
    };
    let ops = map.keys().filter(|k| k.starts_with('$')).count();
    match ops {
        0 => Ok(None),
        n if n == map.len() => Ok(Some(map)),
        _ => Err(invalid("You cannot mix operators and normal fields")),
    }
}

fn parse_field_value(arg: &Value) -> Result<Vec<Cond>, QueryError> {
    match operator_object(arg)? {
        Some(ops) => parse_ops(ops),
        None => Ok(vec![Cond::Eq(arg.clone())]),
    }
}

fn parse_ops(ops: &Map<String, Value>) -> Result<Vec<Cond>, QueryError> {
    let mut conds = Vec::with_capacity(ops.len());
    for (op, arg) in ops {
        conds.push(match op.as_str() {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" => Cond::Cmp(Ordering::Greater, false, arg.clone()),
            "$gte" => Cond::Cmp(Ordering::Greater, true, arg.clone()),
            "$lt" => Cond::Cmp(Ordering::Less, false, arg.clone()),
            "$lte" => Cond::Cmp(Ordering::Less, true, arg.clone()),
            "$in" => Cond::In(array_arg(op, arg)?),
            "$nin" => Cond::Nin(array_arg(op, arg)?),
            "$all" => Cond::All(array_arg(op, arg)?),
            "$exists" => Cond::Exists(match arg {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::Null => false,
                _ => return Err(invalid("$exists needs true or false")),
            }),
            "$size" => match super::non_negative_int(arg) {
                Some(n) => Cond::Size(n),
                None => return Err(invalid("$size needs a non-negative integer")),
            },
            "$elemMatch" => Cond::ElemMatch(parse_elem_match(arg)?),
            "$regex" => Cond::Regex(parse_regex(arg, ops.get("$options"))?),
            // Consumed by `$regex` above; alone it means nothing.
            "$options" if ops.contains_key("$regex") => continue,
            "$options" => return Err(invalid("$options needs $regex")),
            "$not" => match operator_object(arg)? {
                Some(ops) => Cond::Not(parse_ops(ops)?),
                None => return Err(invalid("$not needs an operator object, e.g. {\"$not\": {\"$gt\": 1}}")),
            },
            _ => return Err(QueryError::UnknownOperator(op.clone())),
        });
    }
    Ok(conds)
}

/// `$elemMatch` takes criteria on object elements, or (all keys operators) conditions on the
/// elements themselves. `$and`/`$or`/`$nor` are criteria keys, so `{$or: […]}` is criteria.
fn parse_elem_match(arg: &Value) -> Result<ElemMatch, QueryError> {
    let logical = |k: &String| matches!(k.as_str(), "$and" | "$or" | "$nor");
    match arg {
        Value::Object(map) if map.keys().any(logical) => Ok(ElemMatch::Criteria(Criteria::parse(arg, false)?)),
        Value::Object(_) => match operator_object(arg)? {
            Some(ops) => Ok(ElemMatch::Ops(parse_ops(ops)?)),
            None => Ok(ElemMatch::Criteria(Criteria::parse(arg, false)?)),
        },
        _ => Err(invalid("$elemMatch needs an object")),
    }
}

fn array_arg(op: &str, arg: &Value) -> Result<Vec<Value>, QueryError> {
    match arg {
        Value::Array(items) => Ok(items.clone()),
        _ => Err(invalid(format!("{op} needs an array"))),
    }
}

/// JSON has no regex literal, so a pattern is a string plus mongo's `$options` letters.
fn parse_regex(pattern: &Value, options: Option<&Value>) -> Result<Regex, QueryError> {
    let Value::String(pattern) = pattern else {
        return Err(invalid("$regex needs a string pattern"));
    };
    let mut builder = RegexBuilder::new(pattern);
    let flags = match options {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("$options needs a string of flags (i, m, s, x)")),
    };
    for flag in flags.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'm' => builder.multi_line(true),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            other => return Err(invalid(format!("$options: unknown flag '{other}' (use i, m, s, x)"))),
        };
    }
    builder.build().map_err(|e| invalid(format!("$regex: invalid pattern: {e}")))
}

impl Cond {
    fn names(&self, name: &str) -> bool {
        match self {
            Cond::ElemMatch(ElemMatch::Criteria(c)) => c.names(name),
            Cond::Not(conds) => conds.iter().any(|c| c.names(name)),
            _ => false,
        }
    }

    /// Whether the condition holds for a field with these candidate values. Positive operators
    /// hold when any candidate satisfies them; `$ne`, `$nin` and `$not` are the exact negations
    /// of `$eq`, `$in` and their operand, so they also hold for missing fields.
    fn matches(&self, cands: &[Candidate<'_>]) -> bool {
        let any = |f: &dyn Fn(&Candidate<'_>) -> bool| cands.iter().any(f);
        let eq = |v: &Value| any(&|c| equals(c, v));
        match self {
            Cond::Eq(v) => eq(v),
            Cond::Ne(v) => !eq(v),
            Cond::In(vs) => vs.iter().any(eq),
            Cond::Nin(vs) => !vs.iter().any(eq),
            // `$all: []` matches nothing, as in mongo.
            Cond::All(vs) => !vs.is_empty() && vs.iter().all(eq),
            Cond::Cmp(want, or_equal, v) => {
                any(&|c| value_or_elements(c, &|x| ordered(x, v).is_some_and(|o| o == *want || (*or_equal && o.is_eq()))))
            }
            Cond::Regex(re) => any(&|c| value_or_elements(c, &|x| matches!(x, Value::String(s) if re.is_match(s)))),
            Cond::Exists(wanted) => any(&|c| c.is_some()) == *wanted,
            Cond::Size(n) => any(&|c| matches!(c.as_deref(), Some(Value::Array(a)) if a.len() == *n)),
            Cond::ElemMatch(em) => any(&|c| match c.as_deref() {
                Some(Value::Array(items)) => items.iter().any(|item| em.matches(item)),
                _ => false,
            }),
            Cond::Not(conds) => !conds.iter().all(|c| c.matches(cands)),
        }
    }
}

impl ElemMatch {
    fn matches(&self, item: &Value) -> bool {
        match self {
            ElemMatch::Ops(conds) => {
                let cands = [Some(Cow::Borrowed(item))];
                conds.iter().all(|c| c.matches(&cands))
            }
            ElemMatch::Criteria(criteria) => match item {
                Value::Object(map) => criteria.matches(Root::Object(map)),
                _ => false,
            },
        }
    }
}

/// Equality of one candidate with a query value: `null` also matches a missing field, and an
/// array field matches when the whole array or any of its elements equals the value.
fn equals(cand: &Candidate<'_>, v: &Value) -> bool {
    match cand.as_deref() {
        None => v.is_null(),
        Some(x) => equal(x, v) || matches!(x, Value::Array(items) if items.iter().any(|e| equal(e, v))),
    }
}

/// Applies a scalar test to a candidate, or to each element when the candidate is an array.
fn value_or_elements(cand: &Candidate<'_>, test: &dyn Fn(&Value) -> bool) -> bool {
    match cand.as_deref() {
        None => false,
        Some(Value::Array(items)) => items.iter().any(test),
        Some(x) => test(x),
    }
}
