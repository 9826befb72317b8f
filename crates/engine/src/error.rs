//! Typed errors at the engine boundary. The server maps each to happn's wire shape in one place.

use crate::query::QueryError;

/// A storage backend's failure. `Clone`: one failed group commit answers every waiter in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Io(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("Field names cannot contain a .")]
    DotInFieldName,
    #[error("Field names cannot begin with the $ character")]
    DollarFieldName,
    #[error("Cannot set tag with new data.")]
    TagWithData,
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("Invalid credentials")]
    InvalidCredentials,
    #[error("Account locked out")]
    LockedOut,
    /// A permission miss (`reason` is set for policy denials).
    #[error("unauthorized")]
    Unauthorized { reason: Option<String> },
    /// A data request on a socket that has not logged in.
    #[error("not logged in")]
    NotLoggedIn,
    /// Digest login with no live nonce for the key (not counted by the lockout). On the wire a
    /// plain error, not AccessDenied, as in the original.
    #[error("nonce expired or public key invalid")]
    NonceExpired,
}
