//! The single writer thread: group commit.
//!
//! Every mutation is a [`Job`] sent over a channel. The thread blocks for the first message,
//! then drains whatever else is already queued (up to [`MAX_GROUP`]), applies all of it in ONE
//! redb write transaction, commits once (one fsync in durable mode), and only then answers each
//! waiter. Writers that arrive while a commit is in progress queue up and form the next group,
//! so the number of fsyncs adapts to the load: one writer pays one fsync per write, 32 writers
//! share one fsync among however many arrived during the previous one.
//!
//! Why one thread and not a write transaction per caller: redb serialises write transactions
//! anyway (one at a time per database), so per-caller transactions would queue on redb's lock and
//! each pay its own fsync. Funnelling through one thread is what lets them share it.
//!
//! # Faults
//! An I/O error (disk full, a failed fsync) poisons redb's `Database` handle: every later
//! transaction fails with `PreviousIo` until the handle is dropped and the file reopened. So on
//! such an error the thread answers the group with the error, drops the handle (releasing the
//! file) and becomes *broken*: it answers every write at once with [`errors::unavailable`], and
//! retries reopening the file with exponential back-off ([`FIRST_RETRY`] to [`MAX_RETRY`]).
//! Reopening repairs the file if needed; the mirror is then reloaded from it, because a commit
//! that reported an error may have reached the disk after all, and in relaxed mode commits not
//! yet made durable are gone with the handle: the mirror must show what the file holds.

use crate::errors;
use crate::{FLUSH_INTERVAL, RECORDS};
use happn_engine::path::prefix_end;
use happn_engine::storage::{MemoryStore, WriteBatch};
use happn_engine::{Pattern, Record, StoreError};
use redb::{Database, Durability, Table};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Upper bound on the operations in one transaction: bounds the memory of a group and the time
/// the first waiter of a huge burst waits; well above what 32–1000 concurrent writers queue.
const MAX_GROUP: usize = 4096;

/// Longest a group waits for the previous group's writers to come back (see `Writer::gather`).
const MAX_GATHER_WAIT: Duration = Duration::from_millis(2);

/// First wait before reopening the file after an I/O error; it doubles after each failed
/// attempt up to [`MAX_RETRY`], and is never less than ten times what the last reopen took: an
/// attempt may walk the whole file to repair it, which must not keep the writer (and the disk)
/// busy on a large file.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// A failure this soon after a recovery continues the back-off where it was instead of starting
/// over: a disk that is still nearly full can let the reopen through and fail the next write.
const RELAPSE_WINDOW: Duration = Duration::from_secs(60);

/// Opens the file again after an I/O error (with the table in place, like the first open).
pub(crate) type Reopen = Box<dyn Fn() -> Result<Database, StoreError> + Send>;

pub(crate) enum Op {
    /// Removes first, then puts (the memory store's order). Values are already encoded by the
    /// caller, off this thread, so the single writer spends its time on the B-tree and the fsync.
    Write {
        /// The record (for the in-memory mirror) and its encoded value (for redb).
        puts: Vec<(Record, Vec<u8>)>,
        removes: Vec<String>,
    },
    RemoveMatching(Pattern),
}

pub(crate) struct Job {
    pub op: Op,
    /// Answered after the group's commit; `remove_matching` gets the removed paths.
    pub reply: oneshot::Sender<Result<Vec<String>, StoreError>>,
}

pub(crate) enum Msg {
    Job(Job),
    /// Make everything committed so far durable (a no-op in durable mode).
    Sync(oneshot::Sender<Result<(), StoreError>>),
}

/// Why the store takes no writes, if it does not: set by the writer, read by `health()` and by
/// every write before it is queued (the flag keeps that to one atomic load while healthy).
pub(crate) use happn_engine::storage::HealthFlag as Health;

/// The writer after an I/O error, until its file is reopened.
struct Broken {
    /// The latest error: the first one, then the latest failed reopen's.
    cause: String,
    since: Instant,
    attempts: u32,
    next_attempt: Instant,
    backoff: Duration,
}

#[derive(Default)]
pub(crate) struct Counters {
    /// Commits, operations, failed groups, durations and group sizes (`Store::commit_metrics`).
    pub commit: happn_engine::storage::stats::CommitCounters,
    pub durable_commits: AtomicU64,
}

pub(crate) struct Writer {
    /// `None` while broken: the handle is dropped on an I/O error (see the module docs).
    db: Option<Database>,
    reopen: Reopen,
    broken: Option<Broken>,
    health: Arc<Health>,
    /// When the file was last reopened after an I/O error, and the back-off that got there.
    recovered: Option<(Instant, Duration)>,
    /// What readers read: updated right after each commit, before its waiters are answered.
    mirror: Arc<MemoryStore>,
    rx: Receiver<Msg>,
    relaxed: bool,
    counters: Arc<Counters>,
    file: Arc<PathBuf>,
    /// Relaxed mode: when the oldest commit not yet made durable happened. `None` = all durable.
    dirty_since: Option<Instant>,
    /// Messages in the last group, how long its commit took, and when its waiters were answered
    /// (see `gather`).
    last_group: usize,
    last_commit: Duration,
    last_answered: Instant,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        db: Database,
        reopen: Reopen,
        health: Arc<Health>,
        mirror: Arc<MemoryStore>,
        rx: Receiver<Msg>,
        relaxed: bool,
        counters: Arc<Counters>,
        file: Arc<PathBuf>,
    ) -> Writer {
        Writer {
            db: Some(db),
            reopen,
            broken: None,
            health,
            recovered: None,
            mirror,
            rx,
            relaxed,
            counters,
            file,
            dirty_since: None,
            last_group: 0,
            last_commit: Duration::ZERO,
            last_answered: Instant::now(),
        }
    }

    pub(crate) fn run(mut self) {
        while let Some(first) = self.next_message() {
            let group = self.gather(first);
            let size = group.len();
            let started = Instant::now();
            self.process(group);
            self.last_answered = Instant::now();
            self.last_commit = self.last_answered - started;
            self.last_group = size;
        }
        // Channel closed: the store was dropped. Leave nothing non-durable behind.
        if self.dirty_since.is_some() && self.db.is_some() {
            if let Err(e) = self.durable_flush() {
                tracing::error!(file = %self.file.display(), "final durable commit failed: {e}");
            }
        }
    }

    /// The group to commit: `first` plus everything queued behind it, plus (briefly) the writers
    /// of the previous group coming back.
    ///
    /// Why wait at all: the writers answered by one commit resubmit a moment later, after the
    /// writer thread has already started the next commit with whatever was queued at that
    /// instant (often only a few). Without a pause the groups alternate small/large and a fixed
    /// set of N concurrent writers shares each commit about N/2 ways. So when fewer messages are
    /// queued than the previous group had, wait until that many arrive, but never longer than
    /// half the previous commit took (measured from when it answered), nor [`MAX_GATHER_WAIT`].
    /// A lone sequential writer (groups of 1) never waits; when writers go away, the bound makes
    /// this cost at most half a commit once, after which the smaller group sets a smaller target.
    /// Durable mode only.
    fn gather(&mut self, first: Msg) -> Vec<Msg> {
        let mut group = vec![first];
        // Relaxed commits are cheap and CPU-bound: idling there costs more than it saves
        // (measured: durable +15% sets/s with the wait, relaxed -18%).
        let target = if self.relaxed { 0 } else { self.last_group.min(MAX_GROUP) };
        let deadline = self.last_answered + (self.last_commit / 2).min(MAX_GATHER_WAIT);
        while group.len() < MAX_GROUP {
            match self.rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) if group.len() >= target => break,
                Err(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match self.rx.recv_timeout(deadline - now) {
                        Ok(m) => group.push(m),
                        Err(_) => break,
                    }
                }
            }
        }
        group
    }

    /// The next message, doing the periodic durable commit of relaxed mode, and the attempts to
    /// reopen the file while broken, when they are due (also under a steady stream of messages).
    fn next_message(&mut self) -> Option<Msg> {
        loop {
            let deadline = match (&self.broken, self.dirty_since) {
                (Some(broken), _) => broken.next_attempt,
                (None, Some(since)) => since + FLUSH_INTERVAL,
                (None, None) => return self.rx.recv().ok(),
            };
            let now = Instant::now();
            if now < deadline {
                match self.rx.recv_timeout(deadline - now) {
                    Ok(m) => return Some(m),
                    Err(RecvTimeoutError::Disconnected) => return None,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            if self.broken.is_some() {
                self.try_reopen();
            } else if let Err(e) = self.durable_flush() {
                // An I/O error broke the writer (and was reported). Anything else: keep the dirty
                // mark, with a fresh deadline, so the flush is retried.
                if self.broken.is_none() {
                    tracing::error!(file = %self.file.display(), "periodic durable commit failed: {e}");
                    self.dirty_since = Some(Instant::now());
                }
            }
        }
    }

    /// The error a write gets while broken.
    fn unavailable(&self) -> Option<StoreError> {
        self.broken.as_ref().map(|b| errors::unavailable(&b.cause))
    }

    /// An I/O error spent the `Database` handle: drop it and schedule the first reopen.
    fn break_down(&mut self, error: &StoreError) {
        let cause = errors::message(error).to_string();
        let now = Instant::now();
        let backoff = match self.recovered {
            Some((at, backoff)) if now - at < RELAPSE_WINDOW => (backoff * 2).min(MAX_RETRY.max(backoff)),
            _ => FIRST_RETRY,
        };
        tracing::error!(
            file = %self.file.display(),
            retry_in = ?backoff,
            "the store takes no writes until it can reopen its file (it retries by itself; reads go on): {cause}"
        );
        if self.dirty_since.take().is_some() {
            tracing::warn!(
                file = %self.file.display(),
                "relaxed mode: writes acknowledged since the last durable commit may be lost with the failed handle"
            );
        }
        // Dropping the handle closes the file and releases its lock, so it can be reopened.
        self.db = None;
        self.health.set(Some(cause.clone()));
        self.broken = Some(Broken {
            cause,
            since: now,
            attempts: 0,
            next_attempt: now + backoff,
            backoff,
        });
    }

    /// Reopen the file (redb repairs it if needed) and reload the mirror from it; on failure,
    /// double the back-off.
    fn try_reopen(&mut self) {
        let Some(broken) = self.broken.as_mut() else { return };
        broken.attempts += 1;
        let started = Instant::now();
        let reopened = (self.reopen)().and_then(|db| {
            let records = crate::scan(&db, &self.file, &Pattern::new("*"))?;
            Ok((db, records))
        });
        let floor = started.elapsed() * 10;
        match reopened {
            Ok((db, records)) => {
                // Nothing else writes the mirror, and no write is applied while broken: after
                // this the mirror is exactly the file.
                let changed = self.mirror.reset(records);
                tracing::info!(
                    file = %self.file.display(),
                    after = ?broken.since.elapsed(),
                    attempts = broken.attempts,
                    records_reloaded = changed,
                    "the store reopened its file and takes writes again"
                );
                if changed > 0 {
                    tracing::warn!(
                        file = %self.file.display(),
                        "{changed} records in memory differed from the file after the I/O error; memory now shows the file"
                    );
                }
                self.recovered = Some((Instant::now(), broken.backoff.max(floor)));
                self.db = Some(db);
                self.broken = None;
                self.health.set(None);
            }
            Err(e) => {
                broken.backoff = (broken.backoff * 2).min(MAX_RETRY).max(floor);
                broken.next_attempt = Instant::now() + broken.backoff;
                broken.cause = errors::message(&e).to_string();
                tracing::warn!(
                    file = %self.file.display(),
                    attempt = broken.attempts,
                    retry_in = ?broken.backoff,
                    "the store still cannot reopen its file: {}",
                    broken.cause
                );
                self.health.set(Some(broken.cause.clone()));
            }
        }
    }

    fn process(&mut self, group: Vec<Msg>) {
        let mut jobs = Vec::with_capacity(group.len());
        let mut syncs = Vec::new();
        for m in group {
            match m {
                Msg::Job(j) => jobs.push(j),
                Msg::Sync(s) => syncs.push(s),
            }
        }
        if let Some(e) = self.unavailable() {
            // Broken: fail fast, without touching the disk.
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
            for s in syncs {
                let _ = s.send(Err(e.clone()));
            }
            return;
        }
        // Relaxed mode piggybacks its periodic durable commit on a group when one is due, and a
        // sync request makes the whole group durable.
        let durable = !self.relaxed || !syncs.is_empty() || self.dirty_since.is_some_and(|s| s.elapsed() >= FLUSH_INTERVAL);

        let mut durable_ok: Result<(), StoreError> = Ok(());
        if jobs.is_empty() {
            if self.dirty_since.is_some() {
                durable_ok = self.durable_flush();
            }
        } else {
            match self.commit(&jobs, durable) {
                Ok(results) => {
                    for (job, removed) in jobs.into_iter().zip(results) {
                        let Job { op, reply } = job;
                        self.mirror_apply(op);
                        let _ = reply.send(Ok(removed));
                    }
                }
                Err(e) if jobs.len() > 1 && self.broken.is_none() => {
                    // One bad operation must not fail its neighbours: retry each alone, so
                    // each waiter gets its own operation's outcome. (An I/O error instead breaks
                    // the writer, and the rest then fail fast.)
                    tracing::warn!(file = %self.file.display(), ops = jobs.len(), "group commit failed, retrying one by one: {e}");
                    self.counters.commit.group_failed();
                    let mut last = Ok(());
                    for job in jobs {
                        let result = match self.unavailable() {
                            Some(e) => Err(e),
                            None => self
                                .commit(std::slice::from_ref(&job), durable)
                                .map(|mut r| r.pop().unwrap_or_default()),
                        };
                        let Job { op, reply } = job;
                        match &result {
                            Err(e) => last = Err(e.clone()),
                            Ok(_) => self.mirror_apply(op),
                        }
                        let _ = reply.send(result);
                    }
                    durable_ok = last;
                }
                Err(e) => {
                    durable_ok = Err(e.clone());
                    for job in jobs {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
            // A failed durable group leaves earlier non-durable commits to a separate flush.
            if durable_ok.is_err() && !syncs.is_empty() && self.broken.is_none() {
                durable_ok = self.durable_flush();
            }
        }
        for s in syncs {
            let _ = s.send(match &durable_ok {
                Ok(()) => Ok(()),
                Err(e) => Err(e.clone()),
            });
        }
    }

    /// Bring the mirror up to date with a committed operation (same order as in redb).
    fn mirror_apply(&self, op: Op) {
        match op {
            Op::Write { puts, removes } => self.mirror.apply(WriteBatch {
                puts: puts.into_iter().map(|(r, _)| r).collect(),
                removes,
            }),
            Op::RemoveMatching(pattern) => {
                self.mirror.remove_matching_now(&pattern);
            }
        }
    }

    /// Apply `jobs` in order in one write transaction and commit it. Any error aborts the whole
    /// transaction (dropping an uncommitted redb transaction rolls it back), so a group is all or
    /// nothing. An I/O error also breaks the writer (see the module docs).
    fn commit(&mut self, jobs: &[Job], durable: bool) -> Result<Vec<Vec<String>>, StoreError> {
        let Some(db) = &self.db else {
            return Err(self.unavailable().unwrap_or_else(errors::writer_gone));
        };
        let started = Instant::now();
        match commit_jobs(db, jobs, durable) {
            Ok(results) => {
                self.committed(durable, jobs.len() as u64, started.elapsed());
                Ok(results)
            }
            Err((e, doing)) => Err(self.failed(e, doing)),
        }
    }

    /// An empty transaction committed with `Immediate`: redb then makes every earlier
    /// `Durability::None` commit durable with it.
    fn durable_flush(&mut self) -> Result<(), StoreError> {
        let Some(db) = &self.db else {
            return Err(self.unavailable().unwrap_or_else(errors::writer_gone));
        };
        let flushed = || -> Result<(), redb::Error> {
            db.begin_write()?.commit()?;
            Ok(())
        };
        let started = Instant::now();
        match flushed() {
            Ok(()) => {
                self.committed(true, 0, started.elapsed());
                Ok(())
            }
            Err(e) => Err(self.failed(e, "flush")),
        }
    }

    /// The error for a failed transaction (already rolled back and dropped); an I/O error breaks
    /// the writer.
    fn failed(&mut self, e: redb::Error, doing: &str) -> StoreError {
        let reopen = errors::needs_reopen(&e);
        let error = errors::map(e, &self.file, doing);
        if reopen {
            self.break_down(&error);
        }
        error
    }

    fn committed(&mut self, durable: bool, ops: u64, took: Duration) {
        self.counters.commit.committed(ops, took);
        if durable {
            self.counters.durable_commits.fetch_add(1, Ordering::Relaxed);
            self.dirty_since = None;
        } else if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }
}

/// One write transaction over `jobs`; the error says what failed ("write" or "commit").
fn commit_jobs(db: &Database, jobs: &[Job], durable: bool) -> Result<Vec<Vec<String>>, (redb::Error, &'static str)> {
    let write = |e: redb::Error| (e, "write");
    let mut txn = db.begin_write().map_err(|e| write(e.into()))?;
    txn.set_durability(if durable { Durability::Immediate } else { Durability::None })
        .map_err(|e| write(e.into()))?;
    let results = {
        let mut table = txn.open_table(RECORDS).map_err(|e| write(e.into()))?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(apply(&mut table, &job.op).map_err(|e| write(e.into()))?);
        }
        results
    };
    txn.commit().map_err(|e| (e.into(), "commit"))?;
    Ok(results)
}

fn apply(table: &mut Table<&'static str, &'static [u8]>, op: &Op) -> Result<Vec<String>, redb::StorageError> {
    match op {
        Op::Write { puts, removes } => {
            for path in removes {
                table.remove(path.as_str())?;
            }
            for (record, value) in puts {
                table.insert(record.path.as_str(), value.as_slice())?;
            }
            Ok(Vec::new())
        }
        Op::RemoveMatching(pattern) if !pattern.is_wildcard() => Ok(table
            .remove(pattern.as_str())?
            .map(|_| pattern.as_str().to_string())
            .into_iter()
            .collect()),
        Op::RemoveMatching(pattern) => {
            // Only the literal prefix's key range is visited, and the matching keys are removed
            // from it in this same transaction, in ascending order.
            let upper = prefix_end(pattern.literal_prefix());
            let range = (
                Bound::Included(pattern.literal_prefix()),
                upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            );
            let mut removed = Vec::new();
            for item in table.extract_from_if::<&str, _>(range, |key, _| pattern.matches(key))? {
                let (key, _) = item?;
                removed.push(key.value().to_string());
            }
            Ok(removed)
        }
    }
}
