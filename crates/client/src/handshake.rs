//! Getting a session on a new socket: open the websocket, `describe`, `login`. Used for the
//! first connection and for every reconnect attempt. The connection task is not running on the
//! socket yet, so the replies are read here directly.

use crate::client::Shared;
use crate::config::Credentials;
use crate::error::{Error, Result};
use crate::socket::Socket;
use crate::types::{ServerInfo, Session};
use crate::wire::{classify, encode_request, Incoming, Outgoing};
use futures_util::StreamExt;
use happn_protocol::Action;
use serde_json::Value;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// A logged-in socket.
pub(crate) struct Established {
    pub socket: Socket,
    pub session: Session,
    pub server: ServerInfo,
}

/// Open a socket and log in with the first of `candidates` the server accepts.
pub(crate) async fn establish(shared: Arc<Shared>, candidates: Vec<Credentials>) -> Result<Established> {
    let config = &shared.config;
    let mut socket = Socket::open(config).await?;
    let describe = Outgoing::new(shared.pending.next_event_id(), Action::Describe);
    let server = ServerInfo::from_wire(reply_data(&call(&shared, &mut socket, describe).await?));
    if server.encrypt_payloads {
        return Err(Error::Protocol(
            "the server requires encrypted payloads, which happn-client does not support".into(),
        ));
    }
    let mut last_error = Error::Protocol("no credentials to try".into());
    for credentials in candidates {
        let mut login = Outgoing::new(shared.pending.next_event_id(), Action::Login);
        login.data = Some(config.login_data(&credentials));
        match call(&shared, &mut socket, login).await {
            Ok(reply) => {
                let session = Session::from_wire(reply_data(&reply))?;
                return Ok(Established { socket, session, server });
            }
            // Refused credentials: the next candidate may still work on this socket.
            Err(e @ Error::AccessDenied { .. }) => last_error = e,
            Err(e) => return Err(e),
        }
    }
    // The JS client closes the socket (1000) after a failed login; so do we.
    socket.close().await;
    Err(last_error)
}

fn reply_data(reply: &Value) -> &Value {
    reply.get("data").unwrap_or(&Value::Null)
}

/// Send one request and read frames until its reply arrives (within the request timeout).
async fn call(shared: &Shared, socket: &mut Socket, request: Outgoing) -> Result<Value> {
    let timeout_ms = shared.config.request_timeout.as_millis() as u64;
    socket.send_text(encode_request(&request, None, timeout_ms));
    let wait = async {
        loop {
            let text = match socket.stream.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None => return Err(Error::Disconnected),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Error::from(e)),
            };
            match classify(text.as_str()) {
                Incoming::Reply { event_id, result } if event_id == request.event_id => return result,
                Incoming::ServerClose => return Err(Error::Closed),
                other => tracing::debug!(frame = ?other, "frame ignored during login"),
            }
        }
    };
    tokio::time::timeout(shared.config.request_timeout, wait)
        .await
        .map_err(|_| Error::Timeout)?
}
