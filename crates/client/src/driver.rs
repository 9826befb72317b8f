//! The connection task: the only reader of the socket and the only writer of requests. It
//! matches replies to waiters, routes publications to subscriptions, keeps the heartbeat, and
//! on socket loss hands over to the reconnect loop (`reconnect.rs`).
//!
//! Keeping one task in charge of the socket *and* of the session switch (generation bump,
//! re-subscription, queue flush) is what makes subscription counting race-free: nothing can be
//! written to a new session before its re-subscriptions are.

use crate::client::Shared;
use crate::heartbeat::{sleep_until, Heartbeat};
use crate::pending::Waiter;
use crate::socket::Socket;
use crate::subscriptions::OffRequest;
use crate::types::{ClientEvent, ConnectionState, EndReason, Event, ServerInfo, Session, SystemMessage};
use crate::wire::{classify, encode_ping, encode_request, Incoming, Outgoing};
use crate::Error;
use futures_util::StreamExt;
use happn_protocol::Action;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// What `Client` handles ask of the connection task.
pub(crate) enum Command {
    /// Write this request now, or once logged in again.
    Request(Outgoing),
    /// Close the socket and end the client; answered when done.
    Close(oneshot::Sender<()>),
}

/// Why serving a socket stopped.
enum Exit {
    /// Lost without a goodbye: reconnect.
    Lost(String),
    /// The server said not to come back.
    ServerClosed,
    /// `disconnect()`.
    Close(oneshot::Sender<()>),
    /// Every `Client` handle is gone.
    Dropped,
}

pub(crate) struct Driver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    /// Requests made while no session was live, written after the next login.
    pub(crate) queue: VecDeque<Outgoing>,
    /// `primus::server::close` (or `server-side-disconnect` with `reconnect: false`) arrived.
    server_said_bye: bool,
}

impl Driver {
    pub fn new(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        Driver {
            shared,
            commands,
            queue: VecDeque::new(),
            server_said_bye: false,
        }
    }

    /// Serve sockets until the client ends.
    pub async fn run(mut self, mut socket: Socket) {
        let reason = loop {
            match self.serve(&mut socket).await {
                Exit::Close(done) => {
                    socket.close().await;
                    self.finish(EndReason::Disconnected);
                    let _ = done.send(());
                    return;
                }
                Exit::Dropped => {
                    socket.close().await;
                    break EndReason::Dropped;
                }
                Exit::ServerClosed => {
                    drop(socket);
                    self.connection_lost("closed by the server for good".into());
                    break EndReason::ServerClosed;
                }
                Exit::Lost(why) => {
                    drop(socket);
                    self.connection_lost(why);
                    if !self.shared.config.reconnect.enabled {
                        break EndReason::ConnectionLost;
                    }
                    match self.reconnect().await {
                        crate::reconnect::Outcome::Connected(s) => socket = s,
                        crate::reconnect::Outcome::End(reason) => break reason,
                        crate::reconnect::Outcome::Close(done) => {
                            self.finish(EndReason::Disconnected);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            }
        };
        self.finish(reason);
    }

    /// Read frames, write requests and keep the heartbeat until the socket is done.
    async fn serve(&mut self, socket: &mut Socket) -> Exit {
        self.server_said_bye = false;
        let config = &self.shared.config;
        let mut heartbeat = Heartbeat::new(config.ping_interval, config.pong_timeout);
        loop {
            tokio::select! {
                frame = socket.stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str(), socket, &mut heartbeat),
                    Some(Ok(Message::Close(_))) | None => return self.closed("closed by the server"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return self.closed(&e.to_string()),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Request(o)) => self.write(socket, o),
                    Some(Command::Close(done)) => return Exit::Close(done),
                    None => return Exit::Dropped,
                },
                _ = sleep_until(heartbeat.ping_at()) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis();
                    socket.send_text(encode_ping(now));
                    heartbeat.ping_sent();
                }
                _ = sleep_until(heartbeat.pong_deadline()) => return Exit::Lost("pong timeout".into()),
            }
        }
    }

    fn closed(&self, why: &str) -> Exit {
        if self.server_said_bye {
            Exit::ServerClosed
        } else {
            Exit::Lost(why.to_string())
        }
    }

    fn on_text(&mut self, text: &str, socket: &Socket, heartbeat: &mut Heartbeat) {
        match classify(text) {
            Incoming::Pong => heartbeat.pong_received(),
            Incoming::ServerClose => self.server_said_bye = true,
            Incoming::Reply { event_id, result } => self.complete(socket, event_id, result),
            Incoming::Data(frame) => {
                let Some(event) = Event::from_wire(frame) else { return };
                let offs = self.shared.registry.lock().dispatch(event);
                offs.into_iter().for_each(|off| self.send_off(socket, off));
            }
            Incoming::System(frame) => {
                let message = SystemMessage::from_wire(&frame);
                if message.event_key == "server-side-disconnect" && message.reconnect == Some(false) {
                    self.server_said_bye = true;
                }
                let _ = self.shared.events.send(ClientEvent::System(message));
            }
            Incoming::Ignored(why) => tracing::debug!(%why, "frame ignored"),
        }
    }

    /// Hand a reply to its waiter; for `on`, confirm (or drop) the listener first, so that a
    /// reconnect right after counts it correctly.
    fn complete(&self, socket: &Socket, event_id: u64, result: crate::Result<Value>) {
        let Some(entry) = self.shared.pending.take(event_id) else {
            tracing::debug!(event_id, "reply for a request nobody waits for");
            return;
        };
        if let Some((listener, channel)) = &entry.listener {
            let mut registry = self.shared.registry.lock();
            let off = match &result {
                Ok(_) => registry.confirm(*listener, channel),
                Err(_) => registry.remove(*listener),
            };
            drop(registry);
            if let Some(off) = off {
                self.send_off(socket, off);
            }
        }
        if let Some((channel, error)) = entry.waiter.complete(result) {
            tracing::warn!(%channel, %error, "could not restore a subscription after reconnecting");
            let _ = self.shared.events.send(ClientEvent::ResubscribeFailed { channel, error });
        }
    }

    /// Write a request with the live session id; requests nobody waits for are skipped, and
    /// `off`s meant for an earlier session are answered locally (that session is gone).
    pub(crate) fn write(&self, socket: &Socket, o: Outgoing) {
        if let Some(generation) = o.generation {
            if !self.shared.registry.lock().is_current(generation) {
                self.complete(socket, o.event_id, Ok(json!({})));
                return;
            }
        }
        if !self.shared.pending.mark_sent(o.event_id) {
            return;
        }
        let session = self.shared.session.read().as_ref().map(|s| s.id.clone());
        let timeout_ms = self.shared.config.request_timeout.as_millis() as u64;
        socket.send_text(encode_request(&o, session.as_deref(), timeout_ms));
    }

    /// An `off` nobody waits for (a `count` reached, a late confirmation).
    fn send_off(&self, socket: &Socket, off: OffRequest) {
        let event_id = self.shared.pending.register(Waiter::Ignore, None);
        self.write(socket, off_request(event_id, off));
    }

    /// Switch to the session just established on `socket`: re-subscribe every channel, then
    /// write what was queued meanwhile.
    pub(crate) fn start_session(&mut self, socket: &Socket, session: Session, server: ServerInfo) {
        *self.shared.session.write() = Some(session);
        *self.shared.server.write() = server;
        let channels = self.shared.registry.lock().start_session();
        for (channel, ref_count) in channels {
            // As the JS client does: only the channel and its count; the server derives the
            // event type from the channel.
            let event_id = self.shared.pending.register(Waiter::Resubscribe(channel.clone()), None);
            let mut o = Outgoing::new(event_id, Action::On);
            o.path = Some(channel);
            o.options = Some(ref_count_options(ref_count));
            self.write(socket, o);
        }
        while let Some(o) = self.queue.pop_front() {
            self.write(socket, o);
        }
        self.shared.state.send_replace(ConnectionState::Connected);
    }

    /// The socket is gone: requests on it fail, the session is no longer live.
    fn connection_lost(&mut self, reason: String) {
        tracing::debug!(%reason, "connection lost");
        self.shared.registry.lock().end_session();
        for entry in self.shared.pending.take_sent() {
            if let Some((listener, _)) = entry.listener {
                // Its `on` may or may not have reached the server; the new session will not
                // have it either way.
                self.shared.registry.lock().remove(listener);
            }
            entry.waiter.complete(Err(Error::Disconnected));
        }
        self.shared.state.send_replace(ConnectionState::Reconnecting);
        let _ = self.shared.events.send(ClientEvent::Disconnected { reason });
    }

    /// End the client: fail everything still waiting, end every subscription stream.
    fn finish(&mut self, reason: EndReason) {
        self.shared.state.send_replace(ConnectionState::Ended);
        // Closing first means no request can be accepted after the drain below.
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        self.queue.clear();
        self.shared.registry.lock().clear();
        for entry in self.shared.pending.take_all() {
            entry.waiter.complete(Err(Error::Closed));
        }
        let _ = self.shared.events.send(ClientEvent::Ended { reason });
    }
}

pub(crate) fn ref_count_options(ref_count: u64) -> Map<String, Value> {
    let mut options = Map::new();
    options.insert("refCount".into(), ref_count.into());
    options
}

/// The `off` request for an [`OffRequest`].
pub(crate) fn off_request(event_id: u64, off: OffRequest) -> Outgoing {
    let mut o = Outgoing::new(event_id, Action::Off);
    o.path = Some(off.channel);
    o.options = Some(ref_count_options(off.ref_count));
    o.generation = Some(off.generation);
    o
}
