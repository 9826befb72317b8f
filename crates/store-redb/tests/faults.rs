//! Faults of the disk under the redb store: a full disk (or a failed fsync) must fail the writes
//! it hits with a clear error, make later writes fail fast while it lasts (reads go on), be
//! reported by `health()`, and be recovered from by the store itself once the disk works again,
//! with nothing acknowledged lost and the in-memory mirror equal to the file. Also: a 0-byte
//! data file is refused rather than silently started as an empty database.
//!
//! The disk faults are injected with a redb storage backend that wraps the ordinary file backend
//! and fails with ENOSPC while a shared switch is on (no root needed). Where a tmpfs can be
//! mounted (root), one test also fills a real 1 MiB filesystem; it is skipped elsewhere.

use happn_engine::storage::{Store, StoreHealth, WriteBatch};
use happn_engine::{Pattern, Record, StoreError};
use happn_store_redb::redb::backends::FileBackend;
use happn_store_redb::redb::{BackendError, DatabaseError, StorageBackend};
use happn_store_redb::{DurabilityOptions, OpenOptions, RedbStore};
use serde_json::{json, Value};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEALTHY: u8 = 0;
/// Writes and growing the file fail with ENOSPC (what a full filesystem does).
const FULL: u8 = 1;
/// Only fsync fails with ENOSPC (thin provisioning, NFS, delayed allocation).
const SYNC_FAILS: u8 = 2;

/// The file backend, failing with ENOSPC while `fault` says so.
#[derive(Debug)]
struct Faulty {
    inner: FileBackend,
    fault: Arc<AtomicU8>,
}

fn enospc() -> std::io::Error {
    std::io::Error::from_raw_os_error(28)
}

impl Faulty {
    fn check(&self, failing: u8) -> std::io::Result<()> {
        if self.fault.load(Ordering::SeqCst) == failing {
            Err(enospc())
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for Faulty {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if len > self.inner.len()? {
            self.check(FULL)?;
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.check(SYNC_FAILS)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check(FULL)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// The store's reports (what an operator would see), shown for failing tests.
fn logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
}

/// A store on `file` through a [`Faulty`] backend, and its fault switch.
fn open_faulty(file: &Path, options: DurabilityOptions) -> (RedbStore, Arc<AtomicU8>) {
    logs();
    let fault = Arc::new(AtomicU8::new(HEALTHY));
    let switch = fault.clone();
    let path = file.to_path_buf();
    let store = RedbStore::open_with_backend(file, options, move || -> Result<Faulty, DatabaseError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok(Faulty {
            inner: FileBackend::new(f)?,
            fault: switch.clone(),
        })
    })
    .unwrap();
    (store, fault)
}

fn rec(path: &str, v: Value) -> Record {
    let Value::Object(data) = json!({ "value": v }) else {
        unreachable!()
    };
    Record::new(path, data, 7)
}

fn put(path: &str) -> WriteBatch {
    WriteBatch::put(rec(path, json!(path)))
}

async fn all(s: &RedbStore) -> Vec<Record> {
    s.find(&Pattern::new("*")).await.unwrap()
}

/// What the file holds, read by a fresh store once `s` is closed.
async fn on_disk(file: &Path) -> Vec<Record> {
    let s = RedbStore::open(file, DurabilityOptions::default()).unwrap();
    all(&s).await
}

fn message(e: &StoreError) -> &str {
    match e {
        StoreError::Io(m) | StoreError::Corrupt(m) => m,
    }
}

/// Wait (bounded) until the store takes writes again.
async fn until_healthy(s: &RedbStore, within: Duration) {
    let start = Instant::now();
    while !s.health().is_healthy() {
        assert!(
            start.elapsed() < within,
            "the store did not recover in {within:?}: {:?}",
            s.health()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn unwritable_reason(s: &RedbStore) -> String {
    match s.health() {
        StoreHealth::Unwritable { reason } => reason,
        StoreHealth::Healthy => panic!("the store reports healthy while its disk is full"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_fast_and_the_store_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faulty.redb");
    let (s, fault) = open_faulty(&file, DurabilityOptions::default());
    for i in 0..50 {
        s.write(put(&format!("/acked/{i:02}"))).await.unwrap();
    }
    assert!(s.health().is_healthy());

    fault.store(FULL, Ordering::SeqCst);
    let err = s.write(put("/lost")).await.expect_err("a write on a full disk succeeded");
    assert!(
        message(&err).contains("disk full") && message(&err).contains("faulty.redb") && !message(&err).contains("earlier I/O error"),
        "the first error names the cause and the file: {err}"
    );
    assert!(unwritable_reason(&s).contains("disk full"), "{:?}", s.health());

    // While the disk is full every write (removes too) fails at once with the cause; reads go on.
    let started = Instant::now();
    for i in 0..20 {
        let t = Instant::now();
        let err = match i % 3 {
            0 => s.write(put(&format!("/during/{i}"))).await.unwrap_err(),
            1 => s.remove_matching(&Pattern::new("/acked/0*")).await.unwrap_err(),
            _ => s
                .write(WriteBatch {
                    puts: vec![],
                    removes: vec!["/acked/10".into()],
                })
                .await
                .unwrap_err(),
        };
        assert!(
            message(&err).contains("store unavailable") && message(&err).contains("disk full"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_millis(500), "a write took {:?} to fail", t.elapsed());
        assert_eq!(s.get("/acked/10").await.unwrap().unwrap().data["value"], json!("/acked/10"));
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(s.get("/lost").await.unwrap().is_none(), "a failed write is in the mirror");
    assert_eq!(s.len().await.unwrap(), 50);
    // Still broken after a few reopen attempts against the full disk.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(s.write(put("/still")).await.is_err());
    assert!(!s.health().is_healthy());

    // Space is back: the store reopens its file by itself and takes writes again.
    fault.store(HEALTHY, Ordering::SeqCst);
    until_healthy(&s, Duration::from_secs(10)).await;
    s.write(put("/after")).await.unwrap();
    assert_eq!(s.remove_matching(&Pattern::new("/acked/0*")).await.unwrap().len(), 10);
    s.write(WriteBatch {
        puts: vec![],
        removes: vec!["/acked/10".into()],
    })
    .await
    .unwrap();

    let mirror = all(&s).await;
    assert_eq!(mirror.len(), 50 - 11 + 1);
    assert!(mirror
        .iter()
        .all(|r| !r.path.starts_with("/during") && r.path != "/lost" && r.path != "/still"));
    drop(s);
    assert_eq!(on_disk(&file).await, mirror, "the mirror and the file differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_handled_like_a_full_disk() {
    // A failed fsync leaves the outcome of that commit unknown: after recovery the mirror must
    // show whatever the file holds.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nosync.redb");
    let (s, fault) = open_faulty(&file, DurabilityOptions::default());
    for i in 0..20 {
        s.write(put(&format!("/a/{i:02}"))).await.unwrap();
    }
    fault.store(SYNC_FAILS, Ordering::SeqCst);
    let err = s.write(put("/unknown")).await.unwrap_err();
    assert!(message(&err).contains("disk full"), "{err}");
    assert!(!s.health().is_healthy());
    let err = s.write(put("/b")).await.unwrap_err();
    assert!(message(&err).contains("store unavailable"), "{err}");

    fault.store(HEALTHY, Ordering::SeqCst);
    until_healthy(&s, Duration::from_secs(10)).await;
    s.write(put("/b")).await.unwrap();
    let mirror = all(&s).await;
    for i in 0..20 {
        assert!(mirror.iter().any(|r| r.path == format!("/a/{i:02}")), "acknowledged /a/{i:02} lost");
    }
    drop(s);
    assert_eq!(on_disk(&file).await, mirror, "the mirror and the file differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_mode_recovers_with_the_mirror_equal_to_the_file() {
    // Relaxed commits are acknowledged before their fsync; the periodic durable commit is what
    // meets the fault. Writes since the last durable commit may go (relaxed mode's promise), but
    // memory must not keep showing them.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relaxed.redb");
    let (s, fault) = open_faulty(&file, DurabilityOptions::RELAXED);
    for i in 0..20 {
        s.write(put(&format!("/durable/{i:02}"))).await.unwrap();
    }
    s.sync().await.unwrap();
    fault.store(SYNC_FAILS, Ordering::SeqCst);
    for i in 0..20 {
        // Acknowledged (not yet durable) until the flush fails, then refused.
        let _ = s.write(put(&format!("/relaxed/{i:02}"))).await;
    }
    let start = Instant::now();
    while s.health().is_healthy() {
        assert!(start.elapsed() < Duration::from_secs(5), "the failed flush was not noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.sync().await.is_err());
    fault.store(HEALTHY, Ordering::SeqCst);
    until_healthy(&s, Duration::from_secs(10)).await;
    let mirror = all(&s).await;
    for i in 0..20 {
        assert!(
            mirror.iter().any(|r| r.path == format!("/durable/{i:02}")),
            "synced /durable/{i:02} lost"
        );
    }
    s.write(put("/after")).await.unwrap();
    s.sync().await.unwrap();
    let mirror = all(&s).await;
    drop(s);
    assert_eq!(on_disk(&file).await, mirror, "the mirror and the file differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_through_a_full_disk_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busy.redb");
    let (s, fault) = open_faulty(&file, DurabilityOptions::default());
    let s = Arc::new(s);
    s.write(put("/hot")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let (mut acked, mut failed) = (Vec::new(), 0);
                for n in 0..2000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let path = format!("/w{w}/{n:04}");
                    match s.write(put(&path)).await {
                        Ok(()) => acked.push(path),
                        Err(e) => {
                            assert!(message(&e).contains("disk full"), "{e}");
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                (acked, failed)
            })
        })
        .collect();
    // A well-behaved reader is not held up by the fault.
    let reader = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                assert!(s.get("/hot").await.unwrap().is_some());
                latencies.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            latencies.sort();
            latencies[latencies.len() * 99 / 100]
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    fault.store(FULL, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault.store(HEALTHY, Ordering::SeqCst);

    let mut acked = Vec::new();
    let mut failed = 0;
    for w in writers {
        let (a, f) = w.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    let p99 = reader.await.unwrap();
    assert!(p99 < Duration::from_millis(200), "reader p99 {p99:?}");
    assert!(failed > 0, "the fault was never met");
    until_healthy(&s, Duration::from_secs(10)).await;
    s.write(put("/after")).await.unwrap();
    let mirror = all(&s).await;
    for p in &acked {
        assert!(mirror.iter().any(|r| &r.path == p), "acknowledged {p} missing from memory");
    }
    let s = Arc::into_inner(s).unwrap();
    drop(s);
    let disk = on_disk(&file).await;
    assert_eq!(disk, mirror, "the mirror and the file differ");
    eprintln!("{} writes acknowledged, {failed} failed during the fault", acked.len());
}

#[tokio::test]
async fn an_empty_file_is_refused_unless_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.redb");
    std::fs::write(&file, b"").unwrap();
    let Err(err) = RedbStore::open(&file, DurabilityOptions::default()) else {
        panic!("a 0-byte file was opened as an empty database")
    };
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("empty.redb") && m.contains("0 bytes") && m.contains("Delete it")),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "the refused file was changed");

    let accept = OpenOptions {
        accept_empty_file: true,
        ..OpenOptions::default()
    };
    let s = RedbStore::open_with(&file, accept).unwrap();
    s.write(put("/x")).await.unwrap();
    drop(s);
    // Now a real database: it opens without the option.
    let s = RedbStore::open(&file, DurabilityOptions::default()).unwrap();
    assert!(s.get("/x").await.unwrap().is_some());
}

#[tokio::test]
async fn a_missing_file_becomes_a_new_database_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub").join("new.redb");
    let s = RedbStore::open(&file, DurabilityOptions::default()).unwrap();
    s.write(put("/x")).await.unwrap();
    let names: Vec<PathBuf> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names, std::slice::from_ref(&file), "only the database file is left");
    drop(s);
    let s = RedbStore::open(&file, DurabilityOptions::default()).unwrap();
    assert!(s.get("/x").await.unwrap().is_some());
    // Two stores cannot hold the same new file: the second is told it is locked.
    let other = dir.path().join("race.redb");
    let first = RedbStore::open(&other, DurabilityOptions::default()).unwrap();
    let second = RedbStore::open(&other, DurabilityOptions::default());
    assert!(
        matches!(&second, Err(StoreError::Io(m)) if m.contains("locked")),
        "{:?}",
        second.err()
    );
    drop(first);
}

/// A small tmpfs mounted for the test (needs root; the test is skipped where mounting fails).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_full_filesystem_is_recovered_from_without_a_restart() {
    let Some(fs) = Tmpfs::mount("1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let file = fs.0.path().join("full.redb");
    // Ballast to delete afterwards, so the full filesystem can be given room again.
    let ballast = fs.0.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 256 * 1024]).unwrap();
    let s = RedbStore::open(&file, DurabilityOptions::default()).unwrap();
    let body = "y".repeat(4000);
    let mut acked = 0;
    let err = loop {
        let puts = (0..4).map(|j| rec(&format!("/full/{acked:05}/{j}"), json!(body))).collect();
        match s.write(WriteBatch { puts, removes: vec![] }).await {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "a 1 MiB filesystem never filled up");
    };
    assert!(acked > 10, "only {acked} batches fit");
    assert!(
        matches!(&err, StoreError::Io(m) if m.contains("disk full") && m.contains("full.redb")),
        "{err}"
    );
    // Later writes fail at once while the store waits to reopen its file; once it has reopened
    // it (which a full disk allows), those that fit in the file's free pages succeed and the
    // others fail again with the cause. Never a wrong answer.
    let during = s.write(WriteBatch::put(rec("/during", json!(1)))).await;
    if let Err(e) = &during {
        assert!(message(e).contains("disk full"), "{e}");
    }
    for i in [0, acked / 2, acked - 1] {
        assert!(s.get(&format!("/full/{i:05}/3")).await.unwrap().is_some(), "acknowledged batch {i}");
    }

    // With room again, the same store takes writes again.
    std::fs::remove_file(&ballast).unwrap();
    until_healthy(&s, Duration::from_secs(15)).await;
    s.write(WriteBatch::put(rec("/after", json!(1)))).await.unwrap();
    let mirror = all(&s).await;
    drop(s);
    let disk = on_disk(&file).await;
    assert_eq!(disk, mirror, "the mirror and the file differ");
    for i in 0..acked {
        for j in 0..4 {
            let r = disk.iter().find(|r| r.path == format!("/full/{i:05}/{j}"));
            assert_eq!(r.expect("acknowledged write lost").data["value"], json!(body));
        }
    }
    if during.is_ok() {
        assert!(disk.iter().any(|r| r.path == "/during"), "acknowledged /during lost");
    }
    drop(fs);
}
