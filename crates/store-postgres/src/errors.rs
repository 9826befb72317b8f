//! PostgreSQL's errors mapped to the engine's storage error, split in two kinds because they are
//! handled differently:
//! * the database cannot be reached (refused, connection lost, server shutting down or starting,
//!   too many connections, a read-only standby after a failover, no answer in time): every write
//!   fails with `cluster store unavailable: …` until the store has reconnected by itself;
//! * the database refused one operation (say, a path holding a NUL character, which PostgreSQL
//!   text cannot hold): that operation fails with `cluster store: …` and nothing else does.

use happn_engine::StoreError;
use std::error::Error as _;

/// The prefix of every error a write or read gets while the database is unreachable.
pub const UNAVAILABLE: &str = "cluster store unavailable";

/// Whether `e` means the connection (or the server) is unusable rather than one statement bad.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 08: connection exception; 57P01-57P05: admin/crash shutdown, cannot connect now,
        // database dropped, idle session timeout; 53300: too many connections; 25006: read-only
        // transaction (a standby, e.g. during a failover); 3D000: database does not exist yet.
        return code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006" || code == "3D000";
    }
    // No server error: an I/O error, a failed connect, TLS handshake or authentication, an
    // unexpected message, a timeout. The only client-side errors that are not about the
    // connection are conversions of parameters and columns (tokio-postgres does not expose its
    // error kinds but for their text), which this crate's fixed statements do not produce.
    let text = e.to_string();
    ![
        "error serializing",
        "error deserializing",
        "invalid column",
        "expected ",
        "query returned an unexpected",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// `cluster store unavailable: <cause>`.
pub(crate) fn unavailable(cause: &str) -> StoreError {
    StoreError::Io(format!("{UNAVAILABLE}: {cause}"))
}

/// A full description of a PostgreSQL error (tokio-postgres' `Display` of a server error says
/// only "db error"; the cause chain has the message).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The error one refused operation gets.
pub(crate) fn refused(e: &tokio_postgres::Error) -> StoreError {
    StoreError::Io(format!("cluster store: {}", describe(e)))
}

/// Any error of a read or a write: unavailable or refused, by kind.
pub(crate) fn map(e: &tokio_postgres::Error, target: &str) -> StoreError {
    if is_connection_error(e) {
        unavailable(&format!("{target}: {}", describe(e)))
    } else {
        refused(e)
    }
}

/// A pool error (no connection to be had in time, or a failed connect).
pub(crate) fn pool(e: deadpool_postgres::PoolError, target: &str) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => unavailable(&format!("{target}: {}", describe(&e))),
        PoolError::Timeout(_) => unavailable(&format!("{target}: no database connection within the connect timeout")),
        other => unavailable(&format!("{target}: {other}")),
    }
}

/// The text of an error without the engine's "storage failure:" prefix.
pub(crate) fn message(e: &StoreError) -> &str {
    match e {
        StoreError::Io(m) | StoreError::Corrupt(m) => m,
    }
}

pub(crate) fn writer_gone() -> StoreError {
    StoreError::Io(format!("{UNAVAILABLE}: the store's writer task has stopped (the store is closed)"))
}
