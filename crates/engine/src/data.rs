//! Document semantics over a [`Store`]: set (plain, merge, tag, sibling, noStore), get (exact,
//! wildcard, query) and remove, exactly as the original shapes them (semantics.md §4,
//! decisions.md).

use crate::body::{self, Body};
use crate::error::DataError;
use crate::path::Pattern;
use crate::pubsub::EventKind;
use crate::query::{DocRef, Query};
use crate::record::{now_millis, Millis, Record};
use crate::storage::events::{Event, EventId, EventLog, Filled, Update};
use crate::storage::{Store, WriteBatch};
use crate::visibility;
use futures_util::lock::Mutex;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Where tag snapshots live: `/_TAGS` + path + `/` + 32 hex chars (plain concatenation, many
/// `tag/x` gives `/_TAGStag/x/…`, as the original does).
pub const TAGS_PREFIX: &str = "/_TAGS";

#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    pub merge: bool,
    pub tag: Option<String>,
    pub sibling: bool,
    pub no_store: bool,
}

/// A set's `data`, as the request carried it: parsed, or still the client's JSON text (which
/// the plain set path stores without parsing when it can, see [`body_from_json`]).
#[derive(Debug)]
pub enum SetData {
    Value(Value),
    /// Text the request parser checked parses as a `Value`.
    Json(Arc<str>),
}

impl From<Value> for SetData {
    fn from(v: Value) -> SetData {
        SetData::Value(v)
    }
}

impl SetData {
    fn is_null(&self) -> bool {
        match self {
            SetData::Value(v) => v.is_null(),
            SetData::Json(json) => &**json == "null",
        }
    }
}

/// The result of a set: what the reply (and the event) carry, the stored body's text shared by
/// the reply and every event.
#[derive(Debug, Clone)]
pub struct Written {
    /// Where the record went when that is not the path the set named (a tag: the snapshot
    /// under `/_TAGS`; a sibling: the new path). `None` for the named path, which the caller
    /// has: a plain set copies no path for its reply. See [`Written::path`].
    pub moved_to: Option<String>,
    pub created: Millis,
    pub modified: Millis,
    pub tag: Option<String>,
    /// The stored body (for a tag: the snapshot).
    pub body: Body,
    /// False for `noStore`: nothing was persisted and the reply has no timestamps.
    pub stored: bool,
}

impl Written {
    /// What was written to the path the set named.
    fn at_named_path(record: &Record, stored: bool) -> Written {
        Written {
            moved_to: None,
            created: record.created,
            modified: record.modified,
            tag: record.tag.clone(),
            body: record.data.clone(),
            stored,
        }
    }

    /// A plain set's `body`, stored at the named path with the `(created, modified)` the store
    /// kept.
    fn replaced(body: Body, (created, modified): (Millis, Millis)) -> Written {
        Written {
            moved_to: None,
            created,
            modified,
            tag: None,
            body,
            stored: true,
        }
    }

    /// What was written to a path of its own (`record.path`).
    fn moved(record: &Record, stored: bool) -> Written {
        Written {
            moved_to: Some(record.path.clone()),
            ..Written::at_named_path(record, stored)
        }
    }

    /// Where the record went, given the path the set named.
    pub fn path<'a>(&'a self, named: &'a str) -> &'a str {
        self.moved_to.as_deref().unwrap_or(named)
    }

    /// The stored body as JSON text.
    pub fn data_json(&self) -> &str {
        self.body.json()
    }
}

#[derive(Debug)]
pub enum Found {
    /// Exact path, no query: the record or nothing.
    One(Option<Record>),
    /// Wildcard path or query: the matching records after filter, sort, skip and limit.
    Many(Vec<Record>),
    /// `count: true`.
    Count(usize),
}

/// Lock stripes for read-modify-write (merge, tag, created-preserving set) on the same path.
/// A stripe is held until the store has the write (with a durable store: until its fsync), so
/// there are many of them: writes to different paths rarely wait for each other's commit.
const STRIPES: usize = 4096;

pub struct DataService {
    store: Arc<dyn Store>,
    stripes: Vec<Mutex<()>>,
}

impl DataService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        DataService {
            store,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether writes complete inline ([`crate::storage::InlineWrites`]): nothing to overlap, so a
    /// connection need not pipeline them.
    pub fn writes_inline(&self) -> bool {
        self.store.inline().is_some()
    }

    fn stripe(&self, path: &str) -> &Mutex<()> {
        // Any fixed, fast hash spreads paths over the stripes; no need for a keyed one.
        let h = ahash::RandomState::with_seeds(0x68617070, 0x6e2d7273, 0x73747269, 0x70657321).hash_one(path);
        &self.stripes[(h as usize) % STRIPES]
    }

    pub async fn set(&self, path: &str, data: Option<SetData>, opts: &SetOptions) -> Result<Written, DataError> {
        if let Some(tag) = &opts.tag {
            if data.as_ref().is_some_and(|d| !d.is_null()) {
                return Err(DataError::TagWithData);
            }
            // Boxed, as the store path below: the future of a set is allocated per request, so
            // it is kept to the size of the common case.
            return Box::pin(self.tag(path, tag)).await;
        }
        let body = match data {
            Some(SetData::Json(json)) => body_from_json(json)?,
            Some(SetData::Value(v)) => Body::new(format_set_data(Some(v))?),
            None => Body::empty(),
        };
        if opts.no_store {
            return Ok(Written::at_named_path(&Record::new(path, body, 0), false));
        }
        if opts.sibling {
            let sibling = format!("{}{}{}", path, if path.ends_with('/') { "" } else { "/" }, unique_id());
            let record = Record::new(sibling, body, now_millis());
            let written = Written::moved(&record, true);
            self.store.write(WriteBatch::put(record)).await?;
            return Ok(written);
        }
        if let Some(inline) = self.store.inline() {
            // Every write below is one step under the store's own lock, so no stripe is needed
            // (and no boxed store future is made).
            if !opts.merge {
                let stamps = inline.replace_now(path, body.clone(), now_millis());
                return Ok(Written::replaced(body, stamps));
            }
            let now = now_millis();
            let mut body = Some(body);
            let mut written = None;
            inline.update_now(path, &mut |old| {
                let record = merged(path, body.take().unwrap_or_default(), old, now);
                written = Some(Written::at_named_path(&record, true));
                vec![record]
            });
            return Ok(written.expect("update_now calls its update once"));
        }
        Box::pin(self.set_in_store(path, body, opts.merge)).await
    }

    /// A set or merge of `body` at `path` in a store whose writes take time (a durable one).
    async fn set_in_store(&self, path: &str, body: Body, merge: bool) -> Result<Written, DataError> {
        // The path's lock: a merge reads then writes, and nothing may land in between.
        let _guard = self.stripe(path).lock().await;
        if !merge {
            // A plain set replaces the body: only the old `created` survives, which the store
            // carries over itself.
            let stamps = self.store.replace(path, body.clone(), now_millis()).await?;
            return Ok(Written::replaced(body, stamps));
        }
        let now = now_millis();
        let old = self.store.get(path).await?;
        let record = merged(path, body, old.as_ref(), now);
        let written = Written::at_named_path(&record, true);
        self.store.write(WriteBatch::put(record)).await?;
        Ok(written)
    }

    /// Snapshot the record at `path` under `/_TAGS…`, bumping the source's `modified` (and
    /// creating an empty source record if there is none), as the original does.
    async fn tag(&self, path: &str, tag: &str) -> Result<Written, DataError> {
        if let Some(inline) = self.store.inline() {
            let now = now_millis();
            let mut written = None;
            inline.update_now(path, &mut |old| {
                let (source, snapshot) = tagged(path, tag, old, now);
                written = Some(Written::moved(&snapshot, true));
                vec![source, snapshot]
            });
            return Ok(written.expect("update_now calls its update once"));
        }
        let _guard = self.stripe(path).lock().await;
        let now = now_millis();
        let existing = self.store.get(path).await?;
        let (source, snapshot) = tagged(path, tag, existing.as_ref(), now);
        let written = Written::moved(&snapshot, true);
        self.store
            .write(WriteBatch {
                puts: vec![source, snapshot],
                removes: vec![],
            })
            .await?;
        Ok(written)
    }

    /// A client's read by exact path, wildcard or query. `force_many` is true when the caller
    /// needs an array reply even for an exact path (criteria present, `path_only`).
    ///
    /// Records pass [`visibility`] before the query sees them: hidden ones never match, sort or
    /// count, and secret fields are gone before criteria, sort and projection run.
    pub async fn get(&self, path: &str, query: &Query, force_many: bool) -> Result<Found, DataError> {
        let pattern = Pattern::new(path);
        if !pattern.is_wildcard() && !force_many && !query.count_only() {
            let found = match self.store.inline() {
                Some(inline) => inline.get_now(path),
                None => self.store.get(path).await?,
            };
            return Ok(Found::One(found.and_then(visibility::client_view)));
        }
        let records = self.store.find(&pattern).await?;
        let mut hits: Vec<Record> = records
            .into_iter()
            .filter_map(|r| visibility::query_view(r, query))
            .filter(|r| query.matches(&DocRef::from(r)))
            .collect();
        if query.count_only() {
            return Ok(Found::Count(hits.len()));
        }
        query.sort(&mut hits, |r| DocRef::from(r));
        let skip = query.skip().min(hits.len());
        hits.drain(..skip);
        if let Some(limit) = query.limit() {
            hits.truncate(limit);
        }
        Ok(Found::Many(hits))
    }

    /// Remove the record at `path`, or every record a wildcard matches; returns the count.
    pub async fn remove(&self, path: &str) -> Result<usize, DataError> {
        Ok(self.store.remove_matching(&Pattern::new(path)).await?.len())
    }

    /// Like [`DataService::remove`], but records for which `protected` holds are left alone (a
    /// client's `remove *` must not wipe the security directory).
    pub async fn remove_unprotected(&self, path: &str, protected: impl Fn(&str) -> bool) -> Result<usize, DataError> {
        let pattern = Pattern::new(path);
        if !pattern.is_wildcard() {
            if protected(path) {
                return Ok(0);
            }
            return self.remove(path).await;
        }
        let doomed: Vec<String> = self
            .store
            .find(&pattern)
            .await?
            .into_iter()
            .map(|r| r.path)
            .filter(|p| !protected(p))
            .collect();
        let n = doomed.len();
        if n > 0 {
            self.store
                .write(WriteBatch {
                    puts: vec![],
                    removes: doomed,
                })
                .await?;
        }
        Ok(n)
    }

    /// The event log of a cluster store, if this service writes to one.
    pub fn event_log(&self) -> Option<&dyn EventLog> {
        self.store.event_log()
    }

    /// [`DataService::set`] whose event (`publish`: who hears of it, as the server encodes it)
    /// is logged with the write, on a store with an event log; the event's id comes back.
    /// Without `publish` or a log this is a plain `set`. Every node, this one included, delivers
    /// the event from the log.
    pub async fn set_logged(
        &self,
        path: &str,
        data: Option<SetData>,
        opts: &SetOptions,
        publish: Option<String>,
    ) -> Result<(Written, Option<EventId>), DataError> {
        let (Some(log), Some(publish)) = (self.store.event_log(), publish) else {
            return Ok((self.set(path, data, opts).await?, None));
        };
        if let Some(tag) = &opts.tag {
            if data.as_ref().is_some_and(|d| !d.is_null()) {
                return Err(DataError::TagWithData);
            }
            // Read, snapshot and bump the source in one transaction, the record locked: another
            // node's write to it waits.
            let (named, tag) = (path.to_string(), tag.clone());
            let update: Update = Box::new(move |old| {
                let (source, snapshot) = tagged(&named, &tag, old, now_millis());
                vec![source, snapshot]
            });
            let (snapshot, id) = log.update_logged(path, update, update_event(path, publish)).await?;
            return Ok((Written::moved(&snapshot, true), Some(id)));
        }
        let body = match data {
            Some(SetData::Json(json)) => body_from_json(json)?,
            Some(SetData::Value(v)) => Body::new(format_set_data(Some(v))?),
            None => Body::empty(),
        };
        if opts.no_store {
            let written = Written::at_named_path(&Record::new(path, body, 0), false);
            let id = log.append(set_event(path, &written, publish)).await?;
            return Ok((written, Some(id)));
        }
        if opts.sibling {
            let sibling = format!("{}{}{}", path, if path.ends_with('/') { "" } else { "/" }, unique_id());
            let record = Record::new(sibling, body, now_millis());
            let written = Written::moved(&record, true);
            let id = log
                .write_logged(WriteBatch::put(record), set_event(path, &written, publish))
                .await?;
            return Ok((written, Some(id)));
        }
        if !opts.merge {
            // One statement keeps the old `created`: no stripe needed.
            let mut event = set_event(path, &Written::replaced(body.clone(), (0, 0)), publish);
            // The stamps are the store's to decide (it keeps the old `created`).
            (event.created, event.modified) = (None, None);
            let (stamps, id) = log.replace_logged(path, body.clone(), now_millis(), event).await?;
            return Ok((Written::replaced(body, stamps), Some(id)));
        }
        // A merge reads then writes: in one transaction with the record locked, so merges
        // through different nodes never lose each other's keys.
        let named = path.to_string();
        let update: Update = Box::new(move |old| vec![merged(&named, body.clone(), old, now_millis())]);
        let (record, id) = log.update_logged(path, update, update_event(path, publish)).await?;
        Ok((Written::at_named_path(&record, true), Some(id)))
    }

    /// [`DataService::remove_unprotected`] whose event (`{"removed":n}` at `path`, time `now`)
    /// is logged with the removal on a store with an event log; the count and the event's id
    /// come back. Without `publish` or a log this is a plain remove.
    pub async fn remove_logged(
        &self,
        path: &str,
        now: Millis,
        protected: impl Fn(&str) -> bool,
        publish: Option<String>,
    ) -> Result<(usize, Option<EventId>), DataError> {
        let (Some(log), Some(publish)) = (self.store.event_log(), publish) else {
            return Ok((self.remove_unprotected(path, protected).await?, None));
        };
        let event = Event {
            modified: Some(now),
            ..Event::pending(EventKind::Remove, path, publish)
        };
        let pattern = Pattern::new(path);
        if !pattern.is_wildcard() && !protected(path) {
            let (removed, id) = log.remove_matching_logged(&pattern, event).await?;
            return Ok((removed.len(), Some(id)));
        }
        let doomed: Vec<String> = if pattern.is_wildcard() {
            self.store
                .find(&pattern)
                .await?
                .into_iter()
                .map(|r| r.path)
                .filter(|p| !protected(p))
                .collect()
        } else {
            Vec::new()
        };
        let n = doomed.len();
        let mut event = event;
        event.fill(Filled::Removed(n));
        let id = if n == 0 {
            log.append(event).await?
        } else {
            let batch = WriteBatch {
                puts: vec![],
                removes: doomed,
            };
            log.write_logged(batch, event).await?
        };
        Ok((n, Some(id)))
    }

    /// Write a record as is (bootstrap of system records).
    pub async fn put_record(&self, record: Record) -> Result<(), DataError> {
        Ok(self.store.write(WriteBatch::put(record)).await?)
    }

    pub async fn get_record(&self, path: &str) -> Result<Option<Record>, DataError> {
        Ok(self.store.get(path).await?)
    }
}

/// The event of a read-modify-write set of `path`, filled in by the store from what it wrote.
fn update_event(path: &str, publish: String) -> Event {
    Event::pending(EventKind::Set, path, publish)
}

/// The event of a set that wrote `written` (named `path`), for the log.
fn set_event(path: &str, written: &Written, publish: String) -> Event {
    Event {
        kind: EventKind::Set,
        path: path.to_string(),
        moved_to: written.moved_to.clone(),
        data: Some(written.data_json().to_string()),
        created: written.stored.then_some(written.created),
        modified: written.stored.then_some(written.modified),
        tag: written.tag.clone(),
        publish,
    }
}

fn meta_path(path: &str) -> Value {
    let mut m = Map::new();
    m.insert("path".into(), Value::String(path.to_string()));
    Value::Object(m)
}

/// 32 lowercase hex chars (a v4 uuid without dashes), as the original uses for tags and siblings.
pub fn unique_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The original's `formatSetData`: objects are stored as they are (minus a top-level `_meta`),
/// anything else is wrapped as `{"value": …}`; a missing body is `{}`. Field names are checked
/// like nedb does.
pub fn format_set_data(data: Option<Value>) -> Result<Map<String, Value>, DataError> {
    let mut body = match data {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    body.shift_remove("_meta");
    check_field_names(&body)?;
    Ok(body)
}

/// [`format_set_data`] for a body still in the client's JSON text (already validated by the
/// request parser, and no deeper than serde_json's limit). An object whose keys are all plainly
/// fine (no escapes, no `$` start, no `.`, no top-level `_meta`) is stored as the text it came
/// in: parsing it into a map to write the same text out again is what this spares. Anything
/// else takes the parsed path, so every error and rewrite is exactly the one it makes.
pub fn body_from_json(json: Arc<str>) -> Result<Body, DataError> {
    if json.starts_with('{') && plain_keys(&json).is_some_and(|depth| depth <= body::MAX_DEPTH) {
        return Ok(Body::from_checked_text(json));
    }
    let value: Value = serde_json::from_str(&json).map_err(|e| DataError::BadRequest(format!("data is not valid JSON: {e}")))?;
    Ok(Body::new(format_set_data(Some(value))?))
}

/// When every key in the (valid) JSON text is one `check_field_names` accepts as written,
/// without escapes, and the top-level object has no `_meta`: the deepest nesting in it (one scan
/// for both, since this runs on every set).
fn plain_keys(json: &str) -> Option<usize> {
    let bytes = json.as_bytes();
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                let (end, escaped) = string_end(bytes, start);
                i = end;
                let mut j = end + 1;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                if bytes.get(j) == Some(&b':') {
                    // An escaped key could hide a `$` or `.`: rare, so the parsed path decides.
                    let key = &json[start..end];
                    if escaped || key.starts_with('$') || key.contains('.') || (depth == 1 && key == "_meta") {
                        return None;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Some(deepest)
}

/// The index of the quote closing the string whose text starts at `start`, and whether the
/// string has escapes.
fn string_end(bytes: &[u8], mut start: usize) -> (usize, bool) {
    let mut escaped = false;
    loop {
        match memchr::memchr2(b'"', b'\\', bytes.get(start..).unwrap_or_default()) {
            Some(n) if bytes[start + n] == b'\\' => {
                escaped = true;
                start += n + 2;
            }
            Some(n) => return (start + n, escaped),
            // Unreachable for valid JSON; ends the scan.
            None => return (bytes.len(), escaped),
        }
    }
}

fn check_field_names(obj: &Map<String, Value>) -> Result<(), DataError> {
    // Iterative walk: bodies can be deep, and recursion depth must not depend on input.
    let mut stack: Vec<&Value> = Vec::new();
    let check = |k: &str| -> Result<(), DataError> {
        if k.starts_with('$') {
            return Err(DataError::DollarFieldName);
        }
        if k.contains('.') {
            return Err(DataError::DotInFieldName);
        }
        Ok(())
    };
    for (k, v) in obj {
        check(k)?;
        stack.push(v);
    }
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    check(k)?;
                    stack.push(v);
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    Ok(())
}

/// One-level merge: the new keys first, then old keys the update lacks; a `null` in the update
/// keeps the old value.
/// The record a merge of `body` into `old` (if any) writes at `path`.
fn merged(path: &str, body: Body, old: Option<&Record>, now: Millis) -> Record {
    match old {
        None => Record::new(path, body, now),
        Some(old) => Record {
            path: path.to_string(),
            data: merge(body.into_map(), old.data.map().clone()).into(),
            created: old.created,
            modified: now.max(old.created),
            tag: None,
        },
    }
}

/// A tag of `path`: the source record with `modified` bumped (an empty one when there is none),
/// and its snapshot under `/_TAGS…`.
fn tagged(path: &str, tag: &str, old: Option<&Record>, now: Millis) -> (Record, Record) {
    let mut snapshot = Map::new();
    let source = match old {
        Some(old) => {
            let source = Record {
                modified: now,
                ..old.clone()
            };
            snapshot.insert("data".into(), Value::Object(source.data.map().clone()));
            snapshot.insert("_meta".into(), meta_path(path));
            snapshot.insert("created".into(), source.created.into());
            snapshot.insert("modified".into(), source.modified.into());
            snapshot.insert("_id".into(), Value::String(path.to_string()));
            source
        }
        None => {
            snapshot.insert("data".into(), Value::Object(Map::new()));
            snapshot.insert("_meta".into(), meta_path(path));
            Record::new(path, Map::new(), now)
        }
    };
    let snapshot = Record {
        path: format!("{TAGS_PREFIX}{path}/{}", unique_id()),
        data: snapshot.into(),
        created: now,
        modified: now,
        tag: Some(tag.to_string()),
    };
    (source, snapshot)
}

pub fn merge(mut update: Map<String, Value>, old: Map<String, Value>) -> Map<String, Value> {
    for (k, v) in old {
        match update.get_mut(&k) {
            Some(slot) if slot.is_null() => *slot = v,
            Some(_) => {}
            None => {
                update.insert(k, v);
            }
        }
    }
    update
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStore;
    use serde_json::json;

    fn svc() -> DataService {
        DataService::new(Arc::new(MemoryStore::new()))
    }

    fn body(w: &Written) -> Value {
        serde_json::from_str(w.data_json()).unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scalars_are_wrapped() {
        assert_eq!(format_set_data(Some(json!("s"))).unwrap(), obj(json!({"value":"s"})));
        assert_eq!(format_set_data(Some(json!([1, 2]))).unwrap(), obj(json!({"value":[1,2]})));
        assert_eq!(format_set_data(Some(json!(null))).unwrap(), obj(json!({"value":null})));
        assert_eq!(format_set_data(None).unwrap(), Map::new());
        assert_eq!(format_set_data(Some(json!({"a":1,"_meta":{"x":1}}))).unwrap(), obj(json!({"a":1})));
    }

    #[test]
    fn bad_field_names() {
        assert!(matches!(format_set_data(Some(json!({"a.b":1}))), Err(DataError::DotInFieldName)));
        assert!(matches!(
            format_set_data(Some(json!({"x":{"$y":1}}))),
            Err(DataError::DollarFieldName)
        ));
        assert!(matches!(
            format_set_data(Some(json!({"x":[{"q.r":1}]}))),
            Err(DataError::DotInFieldName)
        ));
        assert!(format_set_data(Some(json!({"x":"a.b", "y$":1}))).is_ok());
    }

    #[test]
    fn merge_is_one_level_new_keys_first_null_keeps() {
        let m = merge(obj(json!({"b":2,"a":null,"n":{"z":1}})), obj(json!({"a":1,"c":3,"n":{"y":1}})));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"b":2,"a":1,"n":{"z":1},"c":3}"#);
    }

    fn raw(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    /// The text path and the parsed path agree on every body: same object, same error.
    #[test]
    fn client_text_bodies_are_formatted_like_parsed_ones() {
        for text in [
            r#"{"v":"x","n":[1,2.5,{"k":null}],"t":true}"#,
            r#"{ "spaced" : [ 1 , {} ] }"#,
            r#"{"s":"quote \" back \\ \u00e9 . $x _meta"}"#,
            r#"{"nested":{"_meta":{"kept":1}}}"#,
            r#"{"_meta":{"dropped":true},"a":1}"#,
            r#"{"a":1,"_meta":2}"#,
            r#"{"$bad":1}"#,
            r#"{"a":{"b.c":1}}"#,
            r#"{"a":[{"$x":1}]}"#,
            r#"{"\u0024esc":1}"#,
            r#"{"d\u002et":1}"#,
            r#"{"ok\n":1}"#,
            "{}",
            "[1,2]",
            "5",
            r#""text""#,
            "null",
        ] {
            let by_text = body_from_json(raw(text));
            let by_value = format_set_data(Some(serde_json::from_str(text).unwrap()));
            match (by_text, by_value) {
                (Ok(a), Ok(b)) => assert_eq!(
                    format!("{:?}", Value::Object(a.map().clone())),
                    format!("{:?}", Value::Object(b)),
                    "{text}"
                ),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn key_scan_counts_nesting_outside_strings() {
        assert_eq!(plain_keys(r#"{"a":"[[[{{","b":[{}]}"#), Some(3));
        assert_eq!(plain_keys(r#"{"a":{"$b":1}}"#), None);
        let deep = |n: usize| format!(r#"{{"a":{}1{}}}"#, "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(body_from_json(raw(&deep(body::MAX_DEPTH))).is_ok());
        assert!(matches!(
            body_from_json(raw(&deep(body::MAX_DEPTH + 1))),
            Err(DataError::BadRequest(_))
        ));
    }

    #[test]
    fn plain_client_bodies_are_stored_as_sent() {
        let text = r#"{"v":"x", "n":[1,2.5e3,{"k":"a\"b"}]}"#;
        assert_eq!(body_from_json(raw(text)).unwrap().json(), text, "no parse, no rewrite");
        assert_eq!(body_from_json(raw(r#"{"_meta":1,"a":2}"#)).unwrap().json(), r#"{"a":2}"#);
        assert_eq!(body_from_json(raw("7")).unwrap().json(), r#"{"value":7}"#);
    }

    #[tokio::test]
    async fn a_text_body_round_trips_through_set_get_and_merge() {
        let s = svc();
        let w = s
            .set("/j", Some(SetData::Json(raw(r#"{"a":1,"b":{"c":2}}"#))), &SetOptions::default())
            .await
            .unwrap();
        assert_eq!(w.data_json(), r#"{"a":1,"b":{"c":2}}"#);
        let merge = SetOptions {
            merge: true,
            ..Default::default()
        };
        let m = s.set("/j", Some(SetData::Json(raw(r#"{"a":null,"d":3}"#))), &merge).await.unwrap();
        assert_eq!(body(&m), json!({"a":1,"d":3,"b":{"c":2}}));
        let stored = s.get_record("/j").await.unwrap().unwrap();
        assert_eq!(Value::Object(stored.data.map().clone()), json!({"a":1,"d":3,"b":{"c":2}}));
        let q = Query::parse(Some(&json!({"b.c": 2})), None).unwrap();
        assert!(matches!(s.get("/*", &q, false).await.unwrap(), Found::Many(v) if v.len() == 1));
    }

    /// Merges into one path from many tasks at once lose no key, with the memory store (whose
    /// writes are single steps, no stripes) and with any other store (stripes serialise them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_merges_lose_nothing() {
        use crate::storage::RoutedStore;
        let memory = Arc::new(svc());
        let routed = Arc::new(DataService::new(Arc::new(RoutedStore::new(vec![], Arc::new(MemoryStore::new())))));
        assert!(memory.writes_inline() && !routed.writes_inline());
        for service in [memory, routed] {
            let tasks: Vec<_> = (0..8)
                .map(|t| {
                    let service = service.clone();
                    tokio::spawn(async move {
                        let merge = SetOptions {
                            merge: true,
                            ..Default::default()
                        };
                        for i in 0..50 {
                            let key = format!("k{t}_{i}");
                            service.set("/m", Some(json!({ key: i }).into()), &merge).await.unwrap();
                            if i % 10 == 0 {
                                service
                                    .set(&format!("/m/{t}"), Some(json!({"plain": i}).into()), &SetOptions::default())
                                    .await
                                    .unwrap();
                                let tag = SetOptions {
                                    tag: Some(format!("t{t}")),
                                    ..Default::default()
                                };
                                service.set("/m", None, &tag).await.unwrap();
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let record = service.get_record("/m").await.unwrap().unwrap();
            assert_eq!(record.data.len(), 8 * 50, "every merged key survived");
        }
    }

    #[tokio::test]
    async fn set_keeps_created_and_bumps_modified() {
        let s = svc();
        let a = s.set("/p", Some(json!({"v":1}).into()), &SetOptions::default()).await.unwrap();
        assert_eq!(a.created, a.modified);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let b = s.set("/p", Some(json!({"w":2}).into()), &SetOptions::default()).await.unwrap();
        assert_eq!(b.created, a.created);
        assert!(b.modified > a.modified);
        assert_eq!(body(&b), json!({"w":2}));
        let c = s
            .set(
                "/p",
                Some(json!({"v":3}).into()),
                &SetOptions {
                    merge: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(c.data_json(), r#"{"v":3,"w":2}"#);
    }

    #[tokio::test]
    async fn tags_and_siblings() {
        let s = svc();
        s.set("/t", Some(json!({"v":1}).into()), &SetOptions::default()).await.unwrap();
        let opts = SetOptions {
            tag: Some("T1".into()),
            ..Default::default()
        };
        let t = s.set("/t", None, &opts).await.unwrap();
        let tag_path = t.path("/t");
        assert!(tag_path.starts_with("/_TAGS/t/") && tag_path.len() == "/_TAGS/t/".len() + 32);
        assert_eq!(t.tag.as_deref(), Some("T1"));
        assert_eq!(body(&t)["data"], json!({"v":1}));
        assert_eq!(body(&t)["_id"], json!("/t"));
        let src = s.get_record("/t").await.unwrap().unwrap();
        assert_eq!(body(&t)["modified"], json!(src.modified));
        assert!(matches!(
            s.set("/t", Some(json!({}).into()), &opts).await,
            Err(DataError::TagWithData)
        ));
        // Tagging a missing path creates an empty source record; concatenation without '/'.
        let t2 = s.set("tag/none", None, &opts).await.unwrap();
        assert!(t2.path("tag/none").starts_with("/_TAGStag/none/"));
        assert_eq!(t2.data_json(), r#"{"data":{},"_meta":{"path":"tag/none"}}"#);
        assert_eq!(s.get_record("tag/none").await.unwrap().unwrap().data, Body::empty());

        let sib = s
            .set(
                "/base",
                Some(json!({"s":1}).into()),
                &SetOptions {
                    sibling: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(sib.path("/base").len(), "/base/".len() + 32);
        let sib2 = s
            .set(
                "/base/",
                Some(json!({"s":1}).into()),
                &SetOptions {
                    sibling: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(!sib2.path("/base/").contains("//"));
    }

    #[tokio::test]
    async fn no_store_persists_nothing() {
        let s = svc();
        let w = s
            .set(
                "/n",
                Some(json!({"a":1}).into()),
                &SetOptions {
                    no_store: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(!w.stored);
        assert!(s.get_record("/n").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn get_and_remove() {
        let s = svc();
        for (p, r) in [("/g/2", 1), ("/g/1", 3), ("/g/3", 2), ("/x/g/1", 0)] {
            s.set(p, Some(json!({"rank": r}).into()), &SetOptions::default()).await.unwrap();
        }
        let q = Query::default();
        match s.get("/g/*", &q, false).await.unwrap() {
            Found::Many(v) => assert_eq!(v.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/g/1", "/g/2", "/g/3"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.get("/g/9", &q, false).await.unwrap(), Found::One(None)));
        let q = Query::parse(Some(&json!({"rank":{"$gte":2}})), Some(&json!({"sort":{"rank":-1}}))).unwrap();
        match s.get("/g/*", &q, true).await.unwrap() {
            Found::Many(v) => assert_eq!(v.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/g/1", "/g/3"]),
            other => panic!("{other:?}"),
        }
        let q = Query::parse(None, Some(&json!({"count":true}))).unwrap();
        assert!(matches!(s.get("/g/*", &q, true).await.unwrap(), Found::Count(3)));
        assert_eq!(s.remove("/g/*").await.unwrap(), 3);
        assert_eq!(s.remove("/g/*").await.unwrap(), 0);
        assert_eq!(s.remove("/x/g/1").await.unwrap(), 1);
    }
}
