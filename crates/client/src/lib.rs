//! An async client for [happn](https://github.com/happner/happn) 2.x servers — happn-rs or the
//! original node server: JSON documents on paths plus pub/sub, over Primus websockets.
//!
//! It speaks the wire protocol of the happn 2.21 JS client (protocol 1.1.0): the same requests,
//! the same heartbeat (`"primus::ping::<now>"` every 25 s, 10 s to answer), the same reconnect
//! backoff, and the same subscription channels (`/SET@path`, `/REMOVE@path`, `/ALL@path`).
//!
//! # Example
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use happn_client::{Client, ClientConfig, EventType, GetOptions, OnOptions, SetOptions};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), happn_client::Error> {
//! let client = Client::connect(
//!     ClientConfig::new("127.0.0.1", 55000).with_password("_ADMIN", "happn"),
//! )
//! .await?;
//!
//! // Subscribe first, so we see our own write.
//! let mut changes = client.on("/devices/*", OnOptions::event_type(EventType::Set)).await?;
//!
//! let stored = client.set("/devices/42/status", &json!({"online": true}), SetOptions::default()).await?;
//! println!("stored at {} (created {:?})", stored.meta.path, stored.meta.created);
//!
//! if let Some(event) = changes.next().await {
//!     println!("{} changed: {:?}", event.meta.path, event.data);
//! }
//!
//! let online = client
//!     .get("/devices/*", GetOptions::criteria(json!({"online": true})))
//!     .await?
//!     .into_many();
//! println!("{} devices online", online.len());
//!
//! client.disconnect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! A complete program is in `examples/basic.rs`.
//!
//! # Connection, reconnects and failures
//!
//! [`Client::connect`] opens the websocket, sends `describe` and `login`, and fails if either
//! fails (it does not retry the first connection). After that, a lost socket — closed, broken,
//! or silent past the pong timeout — makes the client reconnect with Primus' backoff (500 ms,
//! then doubling with jitter up to 3 minutes), log in again with the same credentials and
//! re-send every live subscription. The client does **not** reconnect after the server said
//! goodbye (`"primus::server::close"`, or a `server-side-disconnect` system message with
//! `reconnect: false`).
//!
//! What happens to requests:
//! * a request whose frame was already written when the socket was lost fails with
//!   [`Error::Disconnected`] — the server may or may not have carried it out, so it is **never
//!   retried** automatically;
//! * a request made while the client is reconnecting waits (within its timeout) and is sent on
//!   the new session;
//! * once the client has ended, every request fails with [`Error::Closed`].
//!
//! [`Client::watch_state`] and [`Client::events`] report the connection's state and events
//! ([`ClientEvent`]), including the server's system messages.
//!
//! # Subscriptions
//!
//! [`Client::on`] returns a [`Subscription`], a [`Stream`](futures_util::Stream) of [`Event`]s
//! that lives across reconnects and unsubscribes when dropped; [`Client::on_with`] takes a
//! handler instead. Each `on` adds one reference to the channel on the server and each removal
//! takes one away, so the server's count always matches the local subscriptions.
//!
//! # Features
//!
//! * `tls` (default): `wss://` through rustls with the webpki roots
//!   (`ClientConfig::tls_config` takes a custom rustls configuration).
//!
//! Encrypted payloads (`encryptPayloads`) and key-pair logins are not supported.

#![warn(missing_docs)]

mod client;
mod config;
mod driver;
mod error;
mod handshake;
mod heartbeat;
mod options;
mod pending;
mod reconnect;
mod socket;
mod subscriptions;
mod types;
mod wire;

pub use client::Client;
pub use config::{ClientConfig, Credentials, ReconnectPolicy, DEFAULT_PORT};
pub use error::{Error, Result};
pub use options::{DisconnectOptions, EventType, GetOptions, OnOptions, RemoveOptions, SetOptions};
#[cfg(feature = "tls")]
pub use socket::default_tls_config;
pub use subscriptions::{Subscription, SubscriptionId};
pub use types::{
    ClientEvent, ConnectionState, EndReason, Event, EventKind, EventMeta, Get, Item, Meta, Object, ServerInfo, Session, SystemMessage, User,
};

/// The happn protocol version this client speaks.
pub use happn_protocol::PROTOCOL_VERSION;

/// Re-exported so `ClientConfig::tls_config` can be filled in without a direct dependency.
#[cfg(feature = "tls")]
pub use rustls;
