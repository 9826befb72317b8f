//! The one error type of the crate.
//!
//! Server-side failures are rebuilt from the reply's `_meta.error` object the way the JS client
//! does (`name`, then `message`/`reason`), except that happn's `AccessDenied` gets its own
//! variant because applications routinely branch on it.

use serde_json::Value;
use std::sync::Arc;

/// Everything that can go wrong in a client call.
///
/// `Error` is `Clone` so that one failure (a lost socket, say) can be handed to every request
/// that was waiting on it; the non-`Clone` sources are wrapped in an [`Arc`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A TCP or TLS level failure.
    #[error("i/o error: {0}")]
    Io(Arc<std::io::Error>),
    /// The websocket handshake or framing failed (bad status code, bad accept key, ...).
    #[error("websocket error: {0}")]
    WebSocket(String),
    /// The URL (or host/port) in the configuration cannot be used.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The server sent something this client cannot make sense of.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No reply within the request (or connect) timeout.
    #[error("request timed out")]
    Timeout,
    /// The socket was lost while the request was on the wire; the server may or may not have
    /// carried it out. The client reconnects on its own; the request is **not** retried.
    #[error("connection lost before the reply arrived")]
    Disconnected,
    /// The client has ended (`disconnect()`, a server that asked clients not to come back, or
    /// a login that was refused on reconnect); no further requests are possible.
    #[error("the client has ended")]
    Closed,
    /// The server refused the request for lack of permission, or refused the credentials.
    #[error("access denied: {message}{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    AccessDenied {
        /// happn's message, e.g. `unauthorized` or `Invalid credentials`.
        message: String,
        /// The policy reason, when the server gave one.
        reason: Option<String>,
    },
    /// Any other error reply. happn puts the whole JS error text into `name`
    /// (`"Error: <message>"`), so `name` is usually the interesting part.
    #[error("server error: {name}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Server {
        /// `_meta.error.name`.
        name: String,
        /// `_meta.error.message`, if present.
        message: Option<String>,
        /// `_meta.error.reason`, if present.
        reason: Option<String>,
    },
    /// Data could not be converted to or from JSON.
    #[error("json error: {0}")]
    Json(Arc<serde_json::Error>),
}

/// Shorthand for `std::result::Result<T, happn_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Build the error of a failed reply from its `_meta.error` value.
    pub(crate) fn from_wire(error: Option<&Value>) -> Error {
        let text = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_string);
        let name = match error {
            Some(Value::String(s)) => Some(s.clone()),
            _ => text("name"),
        };
        let message = text("message");
        let reason = text("reason");
        match name.as_deref() {
            Some("AccessDenied") => Error::AccessDenied {
                message: message.unwrap_or_else(|| "unauthorized".into()),
                reason,
            },
            _ => Error::Server {
                // The JS client falls back to the message when there is no name.
                name: name.or_else(|| message.clone()).unwrap_or_else(|| "unknown error".into()),
                message,
                reason,
            },
        }
    }

    /// Whether this is an [`Error::AccessDenied`].
    pub fn is_access_denied(&self) -> bool {
        matches!(self, Error::AccessDenied { .. })
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(Arc::new(e))
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as WsError;
        match e {
            WsError::Io(io) => Error::Io(Arc::new(io)),
            WsError::Url(u) => Error::InvalidUrl(u.to_string()),
            other => Error::WebSocket(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_wire_errors() {
        let e = Error::from_wire(Some(&json!({"name":"AccessDenied","message":"unauthorized"})));
        assert!(matches!(&e, Error::AccessDenied { message, reason: None } if message == "unauthorized"));
        assert!(e.is_access_denied());
        let e = Error::from_wire(Some(&json!({"name":"AccessDenied","message":"unauthorized","reason":"expired"})));
        assert_eq!(e.to_string(), "access denied: unauthorized (expired)");
        let e = Error::from_wire(Some(&json!({"name":"Error: bad path"})));
        assert!(matches!(&e, Error::Server { name, message: None, .. } if name == "Error: bad path"));
        let e = Error::from_wire(Some(&json!({"message":"only a message"})));
        assert!(matches!(&e, Error::Server { name, .. } if name == "only a message"));
        assert!(matches!(Error::from_wire(None), Error::Server { .. }));
    }
}
