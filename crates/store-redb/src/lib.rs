//! happn-store-redb: the durable embedded [`Store`] of happn-rs, on [redb](https://www.redb.org)
//! (a copy-on-write B-tree in one file, with checksummed commit slots).
//!
//! # Layout
//! One redb table, `records`, keyed by the record's path (`&str`; redb orders `&str` keys by
//! their bytes, which is the order the engine wants), valued by the record encoded as described
//! in the `codec` module: a fixed 18-byte header (`created`, `modified`, a tag flag) plus the
//! document body as compact JSON; the path is not repeated in the value. `find(pattern)` and
//! `remove_matching(pattern)` visit only the key range of `pattern.literal_prefix()`
//! (`[prefix, prefix_end)`), in ascending path order.
//!
//! # Writes: one writer thread, group commit
//! All mutations go through a single writer thread (`writer` module). It takes the first queued
//! batch, drains every other batch already queued (up to 4096), applies them all in ONE redb
//! write transaction, commits once, and then answers every waiter. Each `write(batch)` and each
//! `remove_matching(pattern)` is atomic because the whole group is: a transaction that fails
//! before its commit is rolled back entirely (and the group is then retried one operation per
//! transaction, so one bad operation cannot fail its neighbours). Under load, concurrent writers
//! therefore share commits and fsyncs: the writers that arrive during one fsync form the next
//! group. In durable mode the writer also waits briefly (at most half the previous commit's
//! time, 2 ms at most) for the previous group's writers to resubmit, so a steady set of N writers
//! shares each fsync N ways rather than alternating small and large groups (measured: 16 → 32
//! writes per commit with 32 writers, +15% throughput). Reads do not touch redb at all: every
//! record is also kept in an in-memory mirror (loaded when the file is opened, like the
//! original's nedb keeps its whole database in memory), which the writer thread updates right
//! after each commit and before answering its waiters, so reads see every answered write and
//! whole groups only, and exact gets cost what they cost in memory mode.
//!
//! What bounds durable throughput is the commit: with N concurrent writers at most N writes
//! share one, so sets/s ≈ N / (commit time), and the commit time is mostly the fsync of the
//! pages the group dirtied. On the 2-core development VM (shared, fdatasync of one 4 KiB write
//! ≈ 0.2 ms) 32 writers reach ~30–38k durable sets/s and ~140–190k relaxed
//! (`tests/throughput.rs`).
//!
//! Values are encoded by the calling task before they are queued, so the single writer thread
//! spends its time on the B-tree and the disk, not on JSON.
//!
//! # Durability
//! * **Durable (default)**: groups commit with `Durability::Immediate`: redb writes the new pages
//!   and the commit slot (with checksums) and `fsync`s the file before `commit()` returns; only
//!   then is any waiter answered. An acknowledged write survives a process crash (SIGKILL) and,
//!   given a disk that honours `fsync`, power loss. After a crash redb opens the file at the last
//!   commit whose checksum is valid: a torn commit is discarded whole, never half-applied. When
//!   the file is new, its directory is fsynced too, so the file itself survives power loss.
//! * **Relaxed** (`DurabilityOptions { relaxed: true }`): groups commit with `Durability::None`:
//!   visible to readers at once and atomic, but not fsynced. The writer makes everything durable
//!   with an `Immediate` commit at most [`FLUSH_INTERVAL`] (100 ms) after the first non-durable
//!   commit, piggybacked on the next group when one is due, or on an empty transaction when idle,
//!   and when the store is dropped. **What a crash can lose:** the acknowledged writes of at most
//!   the last ~100 ms (more only if the disk is slower than that to sync); the file reopens at the
//!   last durable commit, a consistent state in which every batch is whole. Never corruption.
//!   [`RedbStore::sync`] forces a durable commit on demand.
//!
//! # Space
//! redb is copy-on-write: a commit frees the pages it replaced, and they are reused by later
//! transactions once no reader still sees them, so a workload that sets and removes the same
//! paths stays bounded (see the `space_is_reused` test). The file does not shrink by itself,
//! so [`RedbStore::open`] calls redb's `compact()`, which moves pages down and truncates free
//! space at the end of the file. It is quick for a file with little free space; on a large,
//! fragmented file it makes opening slower (that is the price of giving space back to the OS).
//!
//! # Crash safety, tested
//! `tests/crash.rs` SIGKILLs a child process running 16 concurrent writers at random moments
//! (some during the recovery from the previous kill), reopens the file and checks that every
//! acknowledged write is there with its value, every acknowledged remove is gone, and each
//! writer's state is exactly a prefix of its operations (20 cycles by default;
//! `HAPPN_CRASH_CYCLES=200` for the long run).
//!
//! # Crash recovery cost
//! redb's "quick repair" is off: after an unclean shutdown the next open walks the whole file to
//! verify checksums and rebuild the allocator state (seconds per GB), instead of every commit
//! paying to save that state. A clean drop of the store needs no repair.
//!
//! # Disk faults
//! An I/O error during a commit (disk full, a failed fsync) fails that group's writes with the
//! cause ("disk full") and spends redb's `Database` handle. The writer thread, which owns the
//! only handle, drops it and reopens the file by itself, with back-off from [`FIRST_RETRY`]
//! (100 ms) doubling to [`MAX_RETRY`] (5 s), logging each failure at warn and the recovery at
//! info. Until then every write fails at once with `store unavailable: <cause>`, reads go on from
//! the mirror, and [`Store::health`] reports `Unwritable` with the cause. After reopening
//! (redb repairs the file if needed) the mirror is reloaded from the file, so memory never shows
//! a write the file does not hold: a failed write is never applied to it, and a commit whose
//! fsync failed but which reached the disk anyway shows up. Acknowledged writes are not lost
//! (in relaxed mode, those not yet durable may be, as in a crash). A disk that stays full may
//! still let the reopen through (redb reuses free pages inside its file), so writes that fit
//! succeed and the next one that needs room breaks the store again; a failure within a minute of
//! a recovery continues the back-off rather than restarting it, and each wait is at least ten
//! times what the last reopen took, so repairing a large file cannot keep the disk busy. See
//! `tests/faults.rs`.
//!
//! A data file of 0 bytes is refused (`StoreError::Corrupt`) unless
//! [`OpenOptions::accept_empty_file`] is set: it is not what this store leaves behind (a new
//! file is created under a temporary name and linked into place once initialised), so it is more
//! likely a file whose data was lost than a new database.

mod codec;
mod errors;
mod writer;

/// The redb this store is built on, for [`RedbStore::open_with_backend`].
pub use redb;
pub use writer::{FIRST_RETRY, MAX_RETRY};

use async_trait::async_trait;
use happn_engine::storage::{MemoryStore, Store, StoreHealth, WriteBatch};
use happn_engine::{Millis, Pattern, Record, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use writer::{Counters, Health, Job, Msg, Op, Reopen, Writer};

/// The one table: path → encoded record.
pub(crate) const RECORDS: TableDefinition<&'static str, &'static [u8]> = TableDefinition::new("records");

/// Relaxed mode makes its commits durable at most this long after the first non-durable one.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How writes reach the disk. The default is durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurabilityOptions {
    /// `false` (default): a write is answered after its fsync. `true`: answered after a
    /// non-durable commit, made durable within ~[`FLUSH_INTERVAL`]; a crash can lose the last
    /// ~100 ms of acknowledged writes, but never corrupts the file.
    pub relaxed: bool,
}

impl DurabilityOptions {
    pub const DURABLE: DurabilityOptions = DurabilityOptions { relaxed: false };
    pub const RELAXED: DurabilityOptions = DurabilityOptions { relaxed: true };
}

/// Counters of the writer thread (diagnostics, and the tests' proof of group commit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// redb transactions committed by the writer (group commits plus relaxed-mode flushes).
    pub commits: u64,
    /// Of those, the ones committed with `Durability::Immediate` (each one fsync).
    pub durable_commits: u64,
    /// Write batches and `remove_matching` calls applied.
    pub operations: u64,
    /// Groups whose transaction failed and were retried one operation at a time.
    pub group_failures: u64,
}

/// How [`RedbStore::open_with`] opens the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub durability: DurabilityOptions,
    /// `false` (default): an existing file of 0 bytes is refused (`StoreError::Corrupt`) rather
    /// than silently becoming an empty database, since it may be a file whose data was lost (a
    /// truncating copy, a restore that failed). `true`: a new database is created in it. A
    /// missing file always becomes a new database.
    pub accept_empty_file: bool,
}

/// The durable store: see the crate docs.
pub struct RedbStore {
    /// Every record, in memory: reads never touch redb (like the original's nedb, which keeps
    /// the whole database in memory). The writer thread updates it after each commit. It owns
    /// the only `Database` handle, so it can drop and reopen it after an I/O error.
    mirror: Arc<MemoryStore>,
    file: Arc<PathBuf>,
    options: DurabilityOptions,
    health: Arc<Health>,
    /// `None` only while dropping (closing the channel stops the writer).
    tx: Option<mpsc::Sender<Msg>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// Tells the files this process is creating apart (see [`create_new`]).
static CREATING: AtomicU64 = AtomicU64::new(0);

impl RedbStore {
    /// Open (or create) the database file at `path`, creating missing parent directories;
    /// [`RedbStore::open_with`] with the default [`OpenOptions`] but `options`.
    pub fn open(path: &Path, options: DurabilityOptions) -> Result<RedbStore, StoreError> {
        RedbStore::open_with(
            path,
            OpenOptions {
                durability: options,
                ..OpenOptions::default()
            },
        )
    }

    /// Open (or create) the database file at `path`, creating missing parent directories.
    ///
    /// This blocks: it may repair the file after a crash and compacts it; call it at startup or
    /// from a blocking task. Fails with `StoreError::Io` when the file is locked by another
    /// process (or another `RedbStore` in this one), cannot be read or written, or the disk is
    /// full, and with `StoreError::Corrupt` when it is not a valid redb file, or is empty (0
    /// bytes) and `accept_empty_file` is not set.
    ///
    /// A new file is created under a temporary name and linked into place once it holds an
    /// initialised database, so a crash while creating it never leaves a file at `path` that
    /// would be refused at the next start.
    pub fn open_with(path: &Path, options: OpenOptions) -> Result<RedbStore, StoreError> {
        let io = |doing: &str, e: std::io::Error| StoreError::Io(format!("{doing} {}: {e}", path.display()));
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
        }
        let empty = match std::fs::metadata(path) {
            Ok(meta) => Some(meta.len() == 0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("cannot read", e)),
        };
        let db = match empty {
            Some(true) if !options.accept_empty_file => {
                return Err(StoreError::Corrupt(format!(
                    "{} is empty (0 bytes), so it holds no database; it is refused rather than started as a new, \
                     empty one, in case its data was lost. Delete it to start with an empty database, or allow \
                     empty files (OpenOptions::accept_empty_file)",
                    path.display()
                )))
            }
            // An empty file the caller accepts is initialised in place.
            Some(true) => open_db(|| Database::builder().create(path), path, false)?,
            Some(false) => open_db(|| Database::builder().open(path), path, true)?,
            None => match create_new(path)? {
                Some(db) => db,
                // Another store created it meanwhile: open that one (it is locked if still open).
                None => open_db(|| Database::builder().open(path), path, true)?,
            },
        };
        if empty != Some(false) {
            // A new file's directory entry is not covered by redb's fsync of the file.
            sync_dir(parent.unwrap_or(Path::new("."))).map_err(|e| io("cannot sync the directory of", e))?;
        }
        let reopen_path = path.to_path_buf();
        // Reopening never creates: a file that vanished must not come back empty.
        let reopen: Reopen = Box::new(move || open_db(|| Database::builder().open(&reopen_path), &reopen_path, false));
        RedbStore::start(path, options.durability, db, reopen)
    }

    /// Open a store over a storage backend of the caller's (redb's [`redb::StorageBackend`]):
    /// tests inject faults with one that wraps [`redb::backends::FileBackend`]. `backend` is
    /// called for the first open and again for each reopen after an I/O error (the old backend
    /// is closed first); `name` names the database in messages. An empty backend becomes a new
    /// database.
    pub fn open_with_backend<B, F>(name: &Path, options: DurabilityOptions, backend: F) -> Result<RedbStore, StoreError>
    where
        B: redb::StorageBackend,
        F: Fn() -> Result<B, redb::DatabaseError> + Send + 'static,
    {
        let path = name.to_path_buf();
        let reopen: Reopen = Box::new(move || open_db(|| Database::builder().create_with_backend(backend()?), &path, false));
        let db = reopen()?;
        RedbStore::start(name, options, db, reopen)
    }

    /// Load the mirror from `db` and start the writer thread, which takes `db` over.
    fn start(path: &Path, options: DurabilityOptions, db: Database, reopen: Reopen) -> Result<RedbStore, StoreError> {
        let file = Arc::new(path.to_path_buf());
        let mirror = Arc::new(MemoryStore::new());
        mirror.apply(WriteBatch {
            puts: scan(&db, &file, &Pattern::new("*"))?,
            removes: Vec::new(),
        });
        let counters = Arc::new(Counters::default());
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            db,
            reopen,
            health.clone(),
            mirror.clone(),
            rx,
            options.relaxed,
            counters.clone(),
            file.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("happn-redb-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Io(format!("cannot start the writer thread for {}: {e}", path.display())))?;
        Ok(RedbStore {
            mirror,
            file,
            options,
            health,
            tx: Some(tx),
            writer: Some(handle),
            counters,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    pub fn options(&self) -> DurabilityOptions {
        self.options
    }

    /// Commit counters so far.
    pub fn commit_stats(&self) -> CommitStats {
        let c = &self.counters;
        CommitStats {
            commits: c.commit.commits.load(Ordering::Relaxed),
            durable_commits: c.durable_commits.load(Ordering::Relaxed),
            operations: c.commit.operations.load(Ordering::Relaxed),
            group_failures: c.commit.group_failures.load(Ordering::Relaxed),
        }
    }

    /// Make every write answered so far durable now (relaxed mode; in durable mode they already
    /// are, and this costs nothing).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.health.check(errors::unavailable)?;
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Sync(reply))?;
        answer.await.map_err(|_| errors::writer_gone())?
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or_else(errors::writer_gone)?
            .send(msg)
            .map_err(|_| errors::writer_gone())
    }

    async fn submit(&self, op: Op) -> Result<Vec<String>, StoreError> {
        self.health.check(errors::unavailable)?;
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Job(Job { op, reply }))?;
        answer.await.map_err(|_| errors::writer_gone())?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish the queue, make relaxed commits durable,
        // and exit; waiting for it means the file is closed (and its lock released) when the
        // last reader is done, so the same process can reopen it right away.
        drop(self.tx.take());
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!(file = %self.file.display(), "the store's writer thread panicked");
            }
        }
    }
}

/// Open a database with `open`, compact it if asked, and create the table so readers never meet
/// a missing one.
fn open_db(open: impl FnOnce() -> Result<Database, redb::DatabaseError>, path: &Path, compact: bool) -> Result<Database, StoreError> {
    // redb reports damage it finds as `Corrupted`, but builds of it with debug assertions panic
    // on some of it instead (to point at the site): opening is where a damaged file is met, so a
    // panic here is reported as corruption rather than taking the caller (or the writer) down.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Database, StoreError> {
        let mut db = open().map_err(|e| errors::map(e, path, "open"))?;
        if compact {
            // Give space freed before the last close back to the OS (see "Space" in the docs).
            db.compact().map_err(|e| errors::map(e, path, "compact"))?;
        }
        let txn = db.begin_write().map_err(|e| errors::map(e, path, "open"))?;
        txn.open_table(RECORDS).map_err(|e| errors::map(e, path, "open"))?;
        txn.commit().map_err(|e| errors::map(e, path, "open"))?;
        Ok(db)
    }));
    match opened {
        Ok(result) => result,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(StoreError::Corrupt(format!("{} is corrupt (open): {why}", path.display())))
        }
    }
}

/// Create a new database at `path`: under a temporary name in the same directory, then linked
/// into place once redb has initialised and fsynced it, so `path` never names a half-made file.
/// `None` when a file appeared at `path` meanwhile (the caller opens that one).
fn create_new(path: &Path) -> Result<Option<Database>, StoreError> {
    let io = |doing: &str, e: std::io::Error| StoreError::Io(format!("{doing} {}: {e}", path.display()));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = CREATING.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.creating-{}-{n}", std::process::id()));
    // A leftover of a crashed process that had this id: no live process can be using it.
    let _ = std::fs::remove_file(&tmp);
    let db = open_db(|| Database::builder().create(&tmp), path, false)?;
    let placed = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A filesystem without hard links: a rename is as atomic, only not exclusive.
        Err(_) => std::fs::rename(&tmp, path).map(|()| true),
    };
    let _ = std::fs::remove_file(&tmp);
    match placed {
        Ok(true) => Ok(Some(db)),
        Ok(false) => Ok(None),
        Err(e) => Err(io("cannot create", e)),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Every record in `pattern`'s literal-prefix range that matches it, ascending.
pub(crate) fn scan(db: &Database, file: &Path, pattern: &Pattern) -> Result<Vec<Record>, StoreError> {
    let map = |e: redb::Error| errors::map(e, file, "read");
    let txn = db.begin_read().map_err(|e| map(e.into()))?;
    let table = txn.open_table(RECORDS).map_err(|e| map(e.into()))?;
    let prefix = pattern.literal_prefix();
    let end = happn_engine::path::prefix_end(prefix);
    let range: (Bound<&str>, Bound<&str>) = (Bound::Included(prefix), end.as_deref().map_or(Bound::Unbounded, Bound::Excluded));
    let mut out = Vec::new();
    // The trait methods tie the guards to `table` (and so to `txn`), unlike the inherent ones.
    for item in ReadableTable::range::<&str>(&table, range).map_err(|e| map(e.into()))? {
        let (key, value) = item.map_err(|e| map(e.into()))?;
        let path = key.value();
        if pattern.matches(path) {
            out.push(codec::decode(path, value.value())?);
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, path: &str) -> Result<Option<Record>, StoreError> {
        self.mirror.get(path).await
    }

    async fn created_at(&self, path: &str) -> Result<Option<Millis>, StoreError> {
        self.mirror.created_at(path).await
    }

    async fn find(&self, pattern: &Pattern) -> Result<Vec<Record>, StoreError> {
        self.mirror.find(pattern).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.puts.is_empty() && batch.removes.is_empty() {
            return Ok(());
        }
        let mut puts = Vec::with_capacity(batch.puts.len());
        for record in batch.puts {
            let value = codec::encode(&record)?;
            puts.push((record, value));
        }
        self.submit(Op::Write {
            puts,
            removes: batch.removes,
        })
        .await
        .map(drop)
    }

    async fn remove_matching(&self, pattern: &Pattern) -> Result<Vec<String>, StoreError> {
        self.submit(Op::RemoveMatching(pattern.clone())).await
    }

    /// The mirror's count: it holds exactly what the file holds.
    async fn len(&self) -> Result<usize, StoreError> {
        self.mirror.len().await
    }

    fn health(&self) -> StoreHealth {
        self.health.get()
    }

    fn commit_metrics(&self) -> Option<happn_engine::storage::CommitMetrics> {
        Some(self.counters.commit.metrics())
    }
}
