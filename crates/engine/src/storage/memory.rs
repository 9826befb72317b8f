//! In-memory store: an ordered map behind a read-write lock. Scans use the pattern's literal
//! prefix to visit only the key range that can match.

use super::{InlineWrites, Store, WriteBatch};
use crate::body::Body;
use crate::error::StoreError;
use crate::path::Pattern;
use crate::record::{Millis, Record};
use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Default)]
pub struct MemoryStore {
    records: RwLock<BTreeMap<String, Record>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Store::write`] without the async wrapper (it never waits): for callers on plain threads,
    /// such as a durable store's writer keeping an in-memory mirror.
    pub fn apply(&self, batch: WriteBatch) {
        let mut map = self.records.write();
        for path in batch.removes {
            map.remove(&path);
        }
        put_all(&mut map, batch.puts);
    }

    /// Replace every record with `records` in one step: readers see the old set or the new one,
    /// never a mix. Returns how many paths were added, removed or changed. For a durable store's
    /// mirror, reloaded from its file after the store reopened it.
    pub fn reset(&self, records: Vec<Record>) -> usize {
        let mut fresh = BTreeMap::new();
        put_all(&mut fresh, records);
        // Compared under the read lock: readers are not held up while the sets are compared.
        let changed = {
            let map = self.records.read();
            let differ = fresh.iter().filter(|(k, r)| map.get(*k) != Some(*r)).count();
            differ + map.keys().filter(|k| !fresh.contains_key(*k)).count()
        };
        let old = std::mem::replace(&mut *self.records.write(), fresh);
        drop(old);
        changed
    }

    /// [`Store::get`] without the async wrapper.
    pub fn get_now(&self, path: &str) -> Option<Record> {
        self.records.read().get(path).cloned()
    }

    /// [`Store::replace`] without the async wrapper: one lookup under the write lock; an
    /// existing record gets the new body in place, so neither its key nor its path is copied.
    pub fn replace_now(&self, path: &str, mut body: Body, now: Millis) -> (Millis, Millis) {
        body.forget_parsed();
        let mut map = self.records.write();
        if let Some(old) = map.get_mut(path) {
            old.modified = now.max(old.created);
            old.tag = None;
            let stamps = (old.created, old.modified);
            let previous = std::mem::replace(&mut old.data, body);
            // The old body is freed after the lock is released: other writers need not wait.
            drop(map);
            drop(previous);
            return stamps;
        }
        map.insert(path.to_string(), Record::new(path, body, now));
        (now, now)
    }

    /// Read-modify-write of `path` in one step: `update` sees the record there (if any) and
    /// returns the records to put, plus what the caller gets back. No other write lands in
    /// between, so merges and tags need no lock of their own.
    pub fn update_now<T>(&self, path: &str, update: impl FnOnce(Option<&Record>) -> (Vec<Record>, T)) -> T {
        let mut map = self.records.write();
        let (puts, out) = update(map.get(path));
        put_all(&mut map, puts);
        out
    }

    /// [`Store::remove_matching`] without the async wrapper.
    pub fn remove_matching_now(&self, pattern: &Pattern) -> Vec<String> {
        let mut map = self.records.write();
        if !pattern.is_wildcard() {
            return map.remove(pattern.as_str()).map(|r| r.path).into_iter().collect();
        }
        let doomed: Vec<String> = prefix_range(&map, pattern.literal_prefix())
            .filter(|(k, _)| pattern.matches(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            map.remove(k);
        }
        doomed
    }
}

impl InlineWrites for MemoryStore {
    fn get_now(&self, path: &str) -> Option<Record> {
        MemoryStore::get_now(self, path)
    }

    fn replace_now(&self, path: &str, body: Body, now: Millis) -> (Millis, Millis) {
        MemoryStore::replace_now(self, path, body, now)
    }

    fn update_now(&self, path: &str, update: &mut dyn FnMut(Option<&Record>) -> Vec<Record>) {
        MemoryStore::update_now(self, path, |old| (update(old), ()))
    }
}

/// Insert `records`, keeping only their text (see `Body`).
fn put_all(map: &mut BTreeMap<String, Record>, records: Vec<Record>) {
    for mut record in records {
        record.data.forget_parsed();
        map.insert(record.path.clone(), record);
    }
}

/// The keys of `map` that start with `prefix`, in order.
fn prefix_range<'a, V>(map: &'a BTreeMap<String, V>, prefix: &str) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    let owned = prefix.to_string();
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(owned.as_str()))
}

#[async_trait]
impl Store for MemoryStore {
    async fn created_at(&self, path: &str) -> Result<Option<Millis>, StoreError> {
        Ok(self.records.read().get(path).map(|r| r.created))
    }

    fn inline(&self) -> Option<&dyn InlineWrites> {
        Some(self)
    }

    async fn get(&self, path: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.get_now(path))
    }

    async fn replace(&self, path: &str, body: Body, now: Millis) -> Result<(Millis, Millis), StoreError> {
        Ok(self.replace_now(path, body, now))
    }

    async fn find(&self, pattern: &Pattern) -> Result<Vec<Record>, StoreError> {
        let map = self.records.read();
        if !pattern.is_wildcard() {
            return Ok(map.get(pattern.as_str()).cloned().into_iter().collect());
        }
        Ok(prefix_range(&map, pattern.literal_prefix())
            .filter(|(k, _)| pattern.matches(k))
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.apply(batch);
        Ok(())
    }

    async fn remove_matching(&self, pattern: &Pattern) -> Result<Vec<String>, StoreError> {
        Ok(self.remove_matching_now(pattern))
    }

    async fn len(&self) -> Result<usize, StoreError> {
        Ok(self.records.read().len())
    }
}

// Its behaviour as a store is checked by the shared suite (storage::conformance), run in
// crates/engine/tests/store_conformance.rs.
