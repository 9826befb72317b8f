//! The storage trait every backend implements (memory, routed, the embedded durable store in
//! `crates/store-redb`, PostgreSQL next). It is deliberately small and ordered: the engine does
//! the document logic, a store only keeps records by path, scans them in ascending path (byte)
//! order, and applies batches atomically. What a backend must do is written down as code in
//! [`conformance`] (feature `conformance`): every backend runs that one suite.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod events;
mod memory;
mod routed;

pub use memory::MemoryStore;
pub use routed::{Route, RoutedStore};

use crate::body::Body;
use crate::error::StoreError;
use crate::path::Pattern;
use crate::record::{Millis, Record};
use async_trait::async_trait;

/// Whether a store can take writes now: what a readiness check shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// Reads and writes work.
    Healthy,
    /// Writes fail fast, with an error naming `reason`; reads go on. A durable store gets here
    /// when its disk fails it (disk full, I/O error) and leaves by itself once the disk works.
    Unwritable { reason: String },
}

impl StoreHealth {
    pub fn is_healthy(&self) -> bool {
        matches!(self, StoreHealth::Healthy)
    }
}

/// One atomic unit of change: every put and remove in it lands together or not at all.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub puts: Vec<Record>,
    pub removes: Vec<String>,
}

impl WriteBatch {
    pub fn put(record: Record) -> Self {
        WriteBatch {
            puts: vec![record],
            removes: Vec::new(),
        }
    }
}

/// A capability of stores that never wait (no I/O): reads and writes that complete inline, each
/// one step under the store's own lock. When a store offers it ([`Store::inline`]), the data
/// service does sets, merges and tags through it — no per-path stripes, no boxed store future —
/// and a connection does not pipeline writes (there is nothing to overlap).
pub trait InlineWrites: Send + Sync {
    /// [`Store::get`], answered now.
    fn get_now(&self, path: &str) -> Option<Record>;

    /// [`Store::replace`], done now.
    fn replace_now(&self, path: &str, body: Body, now: Millis) -> (Millis, Millis);

    /// Read-modify-write of `path` in one step: `update` sees the record there (if any) and
    /// returns the records to put. No other write lands in between.
    fn update_now(&self, path: &str, update: &mut dyn FnMut(Option<&Record>) -> Vec<Record>);
}

/// A store's writability as its writer sees it, shared with every caller: `set` by the writer
/// when it breaks or recovers, read lock-free on every write while healthy. Used by the durable
/// stores (redb, PostgreSQL) behind [`Store::health`].
#[derive(Default)]
pub struct HealthFlag {
    broken: std::sync::atomic::AtomicBool,
    reason: std::sync::Mutex<Option<String>>,
}

impl HealthFlag {
    /// What [`Store::health`] reports.
    pub fn get(&self) -> StoreHealth {
        match self.reason() {
            None => StoreHealth::Healthy,
            Some(reason) => StoreHealth::Unwritable { reason },
        }
    }

    /// `Ok` while writable; otherwise the store's error for the reason (a write then fails at
    /// once instead of queuing behind recovery).
    pub fn check(&self, error: impl FnOnce(&str) -> StoreError) -> Result<(), StoreError> {
        match self.reason() {
            None => Ok(()),
            Some(reason) => Err(error(&reason)),
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Why writes fail now, if they do.
    pub fn reason(&self) -> Option<String> {
        if !self.is_broken() {
            return None;
        }
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Broken for `reason`, or (`None`) writable again.
    pub fn set(&self, reason: Option<String>) {
        let mut guard = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        self.broken.store(reason.is_some(), std::sync::atomic::Ordering::Release);
        *guard = reason;
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether (and how) this store completes operations inline; see [`InlineWrites`].
    fn inline(&self) -> Option<&dyn InlineWrites> {
        None
    }

    /// The record at exactly `path`.
    async fn get(&self, path: &str) -> Result<Option<Record>, StoreError>;

    /// `created` of the record at `path`: all a plain set needs to know of the old record.
    /// Backends may answer it without decoding the body.
    async fn created_at(&self, path: &str) -> Result<Option<Millis>, StoreError> {
        Ok(self.get(path).await?.map(|r| r.created))
    }

    /// Put `body` at `path` in place of whatever is there, modified `now`, keeping the old
    /// record's `created` (and `modified` no earlier than it): a plain set. Returns the
    /// `(created, modified)` stored. The caller keeps other writers of the path out while this
    /// runs (the default reads then writes; a backend may do it in one step, and need not copy
    /// the path of a record it already has).
    async fn replace(&self, path: &str, body: Body, now: Millis) -> Result<(Millis, Millis), StoreError> {
        let mut record = Record::new(path, body, now);
        if let Some(created) = self.created_at(path).await? {
            record.created = created;
            record.modified = now.max(created);
        }
        let stamps = (record.created, record.modified);
        self.write(WriteBatch::put(record)).await?;
        Ok(stamps)
    }

    /// Every record whose path matches `pattern`, in ascending path order. An exact pattern
    /// yields at most one record.
    async fn find(&self, pattern: &Pattern) -> Result<Vec<Record>, StoreError>;

    /// Every record of the store, in ascending path order, as one consistent state: every batch
    /// whole, every write answered before the call began included, none half-applied (what an
    /// online backup needs). The default is `find("*")`, which is that for a store whose scan is
    /// one step under its own lock (memory, and redb's in-memory mirror, which the writer
    /// updates one committed operation at a time). A store whose records are not all behind one
    /// scan says how it does it: several stores ([`RoutedStore`]) read each in turn, PostgreSQL
    /// reads in one `REPEATABLE READ` transaction.
    async fn snapshot(&self) -> Result<Vec<Record>, StoreError> {
        self.find(&Pattern::new("*")).await
    }

    /// Apply a batch atomically. When this returns `Ok`, the batch is as durable as the
    /// backend promises (a durable backend returns only after it is on disk).
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Remove every record matching `pattern` atomically; returns the paths removed.
    async fn remove_matching(&self, pattern: &Pattern) -> Result<Vec<String>, StoreError>;

    /// Number of records (for diagnostics and tests).
    async fn len(&self) -> Result<usize, StoreError>;

    /// Whether the store takes writes now. Stores that cannot lose their medium are always
    /// healthy (the default).
    fn health(&self) -> StoreHealth {
        StoreHealth::Healthy
    }

    /// The event log of a cluster store ([`events::EventLog`]): writes whose events every node
    /// delivers, in one order. `None` (the default) for a single node's store.
    fn event_log(&self) -> Option<&dyn events::EventLog> {
        None
    }
}
