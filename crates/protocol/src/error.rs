//! The error object of a failed reply (`_meta.error`).
//!
//! The original serialises JS errors as `{name: String(e), ...enumerable props}`, so access
//! errors look like `{"name":"AccessDenied","message":"unauthorized"}` while everything else is
//! `{"name":"Error: <message>"}`. Clients only rebuild an Error from these fields.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireError {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WireError {
    /// A plain JS `Error`: `{"name":"Error: <message>"}`.
    pub fn error(message: impl std::fmt::Display) -> Self {
        WireError {
            name: format!("Error: {message}"),
            message: None,
            reason: None,
        }
    }
    /// An error whose whole text is the name (e.g. `Unknown request action: x`).
    pub fn named(name: impl Into<String>) -> Self {
        WireError {
            name: name.into(),
            message: None,
            reason: None,
        }
    }
    /// happn's `AccessDenied` with a message (and optional policy reason).
    pub fn access_denied(message: impl Into<String>, reason: Option<String>) -> Self {
        WireError {
            name: "AccessDenied".into(),
            message: Some(message.into()),
            reason,
        }
    }
    pub fn unknown_action(action: &str) -> Self {
        Self::named(format!("Unknown request action: {action}"))
    }
}
