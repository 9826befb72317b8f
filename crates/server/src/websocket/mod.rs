//! The websocket transport under Primus: the handshake, RFC 6455 framing, and a socket that owns
//! its buffers. It is built here rather than taken whole from a websocket library so that one
//! task can read, write and keep timers for a connection, and so that a connection holds no
//! buffer while it is idle (tens of thousands of idle device connections are the common case).
//! Header parsing, formatting and the accept key come from tungstenite.

pub mod frame;
pub mod socket;
pub mod upgrade;

pub use frame::Kind;
pub use socket::{Incoming, WsSocket};
pub use upgrade::{Stream, Upgrade};
