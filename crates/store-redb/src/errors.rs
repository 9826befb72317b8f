//! redb's errors mapped to the engine's two storage errors, with messages an operator can act on:
//! which file, and whether it is locked, damaged, or out of space.

use happn_engine::StoreError;
use std::io;
use std::path::Path;

/// Map any redb error (`DatabaseError`, `TransactionError`, `TableError`, `StorageError`,
/// `CommitError`, `CompactionError` all convert into `redb::Error`). `doing` says what the store
/// was doing ("open", "write", "read", ...).
pub(crate) fn map(err: impl Into<redb::Error>, file: &Path, doing: &str) -> StoreError {
    let file = file.display();
    match err.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => StoreError::Io(format!(
            "cannot open {file}: the database file is locked, it is already open in another process \
             (or another store in this one)"
        )),
        redb::Error::Corrupted(why) => StoreError::Corrupt(format!("{file} is corrupt ({doing}): {why}")),
        redb::Error::UpgradeRequired(v) => StoreError::Corrupt(format!(
            "{file} uses redb file format {v}, which this build cannot read; upgrade it with the redb version that wrote it"
        )),
        redb::Error::RepairAborted => StoreError::Corrupt(format!("{file} needs repair and the repair was aborted")),
        redb::Error::Io(e) => io_error(e, &file.to_string(), doing),
        redb::Error::PreviousIo => StoreError::Io(format!(
            "{file}: an earlier I/O error left the database unusable until it is reopened ({doing})"
        )),
        redb::Error::ValueTooLarge(n) => StoreError::Io(format!("{doing} {file}: a record of {n} bytes is too large")),
        other => StoreError::Io(format!("{doing} {file}: {other}")),
    }
}

fn io_error(e: io::Error, file: &str, doing: &str) -> StoreError {
    match e.kind() {
        io::ErrorKind::StorageFull => StoreError::Io(format!("{doing} {file}: disk full: {e}")),
        io::ErrorKind::QuotaExceeded => StoreError::Io(format!("{doing} {file}: disk quota exceeded: {e}")),
        // redb reports a file that is not a redb database (bad magic, impossible header) as
        // InvalidData, and a truncated one as an unexpected end of file.
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupt(format!("{file} is not a valid database file ({doing}): {e}"))
        }
        io::ErrorKind::PermissionDenied => StoreError::Io(format!("{doing} {file}: permission denied: {e}")),
        io::ErrorKind::NotFound => StoreError::Io(format!("{doing} {file}: not found: {e}")),
        _ => StoreError::Io(format!("{doing} {file}: {e}")),
    }
}

/// Whether `err` leaves the `Database` handle itself unusable. After an I/O error redb refuses
/// every later transaction with `PreviousIo` until the handle is dropped and the file reopened
/// (which repairs it if needed), so the writer reopens on these rather than failing forever.
pub(crate) fn needs_reopen(err: &redb::Error) -> bool {
    matches!(
        err,
        redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::Backend(_) | redb::Error::DatabaseClosed | redb::Error::LockPoisoned(_)
    )
}

/// What a write gets while the store is waiting to reopen its file: fails at once, naming why.
pub(crate) fn unavailable(cause: &str) -> StoreError {
    StoreError::Io(format!(
        "store unavailable: {cause}; writes fail until the store has reopened its file, which it retries by itself"
    ))
}

/// The text of an error without the engine's "storage failure:" prefix.
pub(crate) fn message(e: &StoreError) -> &str {
    match e {
        StoreError::Io(m) | StoreError::Corrupt(m) => m,
    }
}

pub(crate) fn writer_gone() -> StoreError {
    StoreError::Io("the store's writer thread has stopped (the store is closed or a previous commit panicked)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_cause() {
        let f = Path::new("/data/happn.redb");
        let full = map(redb::StorageError::Io(io::Error::from(io::ErrorKind::StorageFull)), f, "write");
        assert!(
            matches!(&full, StoreError::Io(m) if m.contains("disk full") && m.contains("/data/happn.redb")),
            "{full}"
        );
        let locked = map(redb::DatabaseError::DatabaseAlreadyOpen, f, "open");
        assert!(matches!(&locked, StoreError::Io(m) if m.contains("locked")), "{locked}");
        let bad = map(redb::StorageError::Corrupted("bad checksum".into()), f, "read");
        assert!(matches!(&bad, StoreError::Corrupt(m) if m.contains("bad checksum")), "{bad}");
    }
}
