//! The public handle. Every call registers a waiter, hands its request to the connection task
//! and awaits the reply; subscriptions are registered locally before their `on` goes out.

use crate::config::ClientConfig;
use crate::driver::{off_request, ref_count_options, Command, Driver};
use crate::error::{Error, Result};
use crate::handshake::establish;
use crate::options::{DisconnectOptions, GetOptions, OnOptions, RemoveOptions, SetOptions};
use crate::pending::{Pending, PendingGuard, Waiter};
use crate::reconnect::login_candidates;
use crate::subscriptions::{ListenerId, OffRequest, Registry, Subscription, SubscriptionId};
use crate::types::{ClientEvent, ConnectionState, Event, Get, Item, ServerInfo, Session};
use crate::wire::Outgoing;
use futures_util::future::try_join_all;
use happn_protocol::Action;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// How many connection events a slow [`Client::events`] receiver may fall behind.
const EVENT_CAPACITY: usize = 256;

/// State shared by the handles and the connection task.
pub(crate) struct Shared {
    pub config: ClientConfig,
    pub pending: Pending,
    pub registry: Mutex<Registry>,
    pub session: RwLock<Option<Session>>,
    pub server: RwLock<ServerInfo>,
    pub state: watch::Sender<ConnectionState>,
    pub events: broadcast::Sender<ClientEvent>,
}

/// What the `Client` clones share. Subscriptions hold it weakly, so the connection ends when
/// the last `Client` is dropped.
pub(crate) struct ClientInner {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

/// A connection to a happn server. Cheap to clone; all clones share one socket, session and
/// set of subscriptions. The connection is closed when the last clone is dropped (or by
/// [`Client::disconnect`]).
///
/// Any number of requests may be in flight at once; replies are matched by eventId.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("session", &self.session().map(|s| s.id))
            .finish()
    }
}

impl Client {
    /// Connect, `describe` and log in. Fails (without retrying) if the server cannot be reached
    /// or refuses the credentials; once connected, the client reconnects on its own.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let (state, _) = watch::channel(ConnectionState::Connected);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            config,
            pending: Pending::default(),
            registry: Mutex::new(Registry::default()),
            session: RwLock::new(None),
            server: RwLock::new(ServerInfo::from_wire(&Value::Null)),
            state,
            events,
        });
        let candidates = login_candidates(&shared.config.credentials, None);
        let est = establish(shared.clone(), candidates).await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(shared.clone(), rx);
        driver.start_session(&est.socket, est.session, est.server);
        tokio::spawn(driver.run(est.socket));
        Ok(Client {
            inner: Arc::new(ClientInner { shared, commands }),
        })
    }

    /// The current session (a new one after every reconnect).
    pub fn session(&self) -> Option<Session> {
        self.inner.shared.session.read().clone()
    }

    /// What the server said about itself at the last `describe`.
    pub fn server_info(&self) -> ServerInfo {
        self.inner.shared.server.read().clone()
    }

    /// The connection state right now.
    pub fn state(&self) -> ConnectionState {
        *self.inner.shared.state.borrow()
    }

    /// A receiver that sees every connection state change.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.shared.state.subscribe()
    }

    /// A receiver of connection events (disconnects, reconnect attempts, reconnects, the end)
    /// and of the server's system messages, from now on.
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Store `data` at `path` and return the stored item (for `merge`, the merged document;
    /// for `tag`, the snapshot; for `sibling`, the item at its generated path).
    ///
    /// `data` may be any serialisable value; scalars and arrays are stored as `{"value": …}`.
    pub async fn set<T: Serialize + ?Sized>(&self, path: &str, data: &T, options: SetOptions) -> Result<Item> {
        let data = serde_json::to_value(data)?;
        // A tag request carries no data.
        let data = (!data.is_null()).then_some(data);
        let reply = self.inner.request(Action::Set, path, data, options.to_wire(), None).await?;
        object_reply_item(reply)
    }

    /// Store `data` under a new child of `path` (`<path>/<generated id>`).
    pub async fn set_sibling<T: Serialize + ?Sized>(&self, path: &str, data: &T) -> Result<Item> {
        let options = SetOptions {
            sibling: true,
            ..Default::default()
        };
        self.set(path, data, options).await
    }

    /// Take a snapshot of the document at `path` under the tag `tag`.
    pub async fn tag(&self, path: &str, tag: &str) -> Result<Item> {
        let options = SetOptions {
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        self.set(path, &Value::Null, options).await
    }

    /// Read one document (exact path), many (a path with `*`, or any criteria), or a count.
    pub async fn get(&self, path: &str, options: GetOptions) -> Result<Get> {
        let count = options.count;
        let reply = self.inner.request(Action::Get, path, None, options.to_wire(), None).await?;
        match reply {
            Value::Array(items) if count => Ok(Get::Count(items.len() as u64)),
            Value::Array(items) => Ok(Get::Many(items.into_iter().map(Item::from_array_element).collect())),
            Value::Object(mut reply) => {
                let data = reply.remove("data").unwrap_or(Value::Null);
                if count {
                    let n = data.get("value").and_then(Value::as_u64);
                    return n
                        .map(Get::Count)
                        .ok_or_else(|| Error::Protocol(format!("count reply without a value: {data}")));
                }
                if data.is_null() {
                    return Ok(Get::One(None));
                }
                Ok(Get::One(Some(Item::from_reply(data, reply.get("_meta")))))
            }
            other => Err(Error::Protocol(format!("unexpected get reply: {other}"))),
        }
    }

    /// The paths matching `path` (which may contain `*`), in path order.
    pub async fn get_paths(&self, path: &str) -> Result<Vec<String>> {
        let items = self.get(path, GetOptions::default().path_only()).await?.into_many();
        Ok(items.into_iter().map(|i| i.meta.path).collect())
    }

    /// Remove the document at `path` (or every document matching a `*` pattern); returns how
    /// many were removed.
    pub async fn remove(&self, path: &str, options: RemoveOptions) -> Result<u64> {
        let reply = self.inner.request(Action::Remove, path, None, options.to_wire(), None).await?;
        reply
            .get("data")
            .and_then(|d| d.get("removed"))
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Protocol(format!("remove reply without a count: {reply}")))
    }

    /// Subscribe to changes at `path` (which may contain `*`; `"*"` with
    /// [`EventType::All`](crate::EventType::All) is everything). The returned handle is a stream
    /// of [`Event`]s and survives reconnects; dropping it unsubscribes.
    pub async fn on(&self, path: &str, options: OnOptions) -> Result<Subscription> {
        let channel = options.event_type.channel(path);
        let (id, rx) = self.inner.shared.registry.lock().add(&channel, options.count);
        // Created before the request so that an error, a timeout or a cancelled call drops it,
        // which takes the listener (and, if the server had already confirmed it, the server's
        // reference) away again.
        let mut subscription = Subscription {
            id,
            channel: channel.clone(),
            rx,
            initial_values: Vec::new(),
            client: Arc::downgrade(&self.inner),
        };
        let reply = self
            .inner
            .request(Action::On, &channel, None, options.to_wire(), Some((id, channel.clone())))
            .await?;
        if options.initial_callback {
            if let Some(Value::Array(items)) = reply.get("data") {
                subscription.initial_values = items.iter().cloned().map(Item::from_array_element).collect();
            }
        }
        Ok(subscription)
    }

    /// Subscribe with a handler called for every event (on a task of its own) until the
    /// subscription ends ([`Client::off`], `off_path`, `off_all`, its `count`, or the end of
    /// the client). Initial values requested with `initial_callback` are not delivered this
    /// way; use `initial_emit` instead.
    pub async fn on_with<F>(&self, path: &str, options: OnOptions, mut handler: F) -> Result<SubscriptionId>
    where
        F: FnMut(Event) + Send + 'static,
    {
        let mut subscription = self.on(path, options).await?;
        let id = subscription.id();
        tokio::spawn(async move {
            while let Some(event) = subscription.recv().await {
                handler(event);
            }
        });
        Ok(id)
    }

    /// End one subscription (its stream ends). Unknown or already ended ids are ignored.
    pub async fn off(&self, subscription: impl Into<SubscriptionId>) -> Result<()> {
        let off = self.inner.shared.registry.lock().remove(subscription.into());
        match off {
            Some(off) => self.inner.send_off(off).await,
            None => Ok(()),
        }
    }

    /// End every subscription whose path matches `pattern` (`*` = any run of characters).
    pub async fn off_path(&self, pattern: &str) -> Result<()> {
        let offs = self.inner.shared.registry.lock().remove_path(pattern);
        try_join_all(offs.into_iter().map(|off| self.inner.send_off(off))).await?;
        Ok(())
    }

    /// End every subscription (`off *` on the server).
    pub async fn off_all(&self) -> Result<()> {
        let generation = self.inner.shared.registry.lock().remove_all();
        let Some(generation) = generation else {
            // Not logged in: the server has no subscriptions of ours to remove.
            return Ok(());
        };
        let options = ref_count_options(0);
        self.inner
            .call(Action::Off, Some("*".into()), None, Some(options), None, Some(generation))
            .await?;
        Ok(())
    }

    /// Unsubscribe everything, close the socket and end the client (every clone). Requests
    /// still waiting fail with [`Error::Closed`].
    pub async fn disconnect(&self) -> Result<()> {
        self.disconnect_with(DisconnectOptions::default()).await
    }

    /// [`Client::disconnect`], optionally revoking the session token first.
    pub async fn disconnect_with(&self, options: DisconnectOptions) -> Result<()> {
        if self.state() == ConnectionState::Ended {
            return Ok(());
        }
        // As the JS client: `off *`, then `revoke-session` if asked, then close 1000. A failed
        // `off` does not matter, the session ends with the socket anyway.
        let _ = self.off_all().await;
        let revoked = if options.revoke_session {
            self.inner.call(Action::RevokeSession, None, None, None, None, None).await.map(drop)
        } else {
            Ok(())
        };
        let (done, finished) = oneshot::channel();
        if self.inner.commands.send(Command::Close(done)).is_ok() {
            let _ = finished.await;
        }
        revoked
    }
}

impl ClientInner {
    /// A data request: path and options always present (the JS client always sends both).
    async fn request(
        &self,
        action: Action,
        path: &str,
        data: Option<Value>,
        options: Map<String, Value>,
        listener: Option<(ListenerId, String)>,
    ) -> Result<Value> {
        self.call(action, Some(path.to_string()), data, Some(options), listener, None).await
    }

    /// Send a request and await its reply within the request timeout.
    async fn call(
        &self,
        action: Action,
        path: Option<String>,
        data: Option<Value>,
        options: Option<Map<String, Value>>,
        listener: Option<(ListenerId, String)>,
        generation: Option<u64>,
    ) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        let pending = &self.shared.pending;
        let event_id = pending.register(Waiter::Caller(tx), listener);
        let _guard = PendingGuard { pending, event_id };
        let o = Outgoing {
            event_id,
            action,
            path,
            data,
            options,
            generation,
        };
        if self.commands.send(Command::Request(o)).is_err() {
            return Err(Error::Closed);
        }
        match tokio::time::timeout(self.shared.config.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Send an `off` and wait for it.
    async fn send_off(&self, off: OffRequest) -> Result<()> {
        let generation = Some(off.generation);
        let options = ref_count_options(off.ref_count);
        self.call(Action::Off, Some(off.channel), None, Some(options), None, generation)
            .await
            .map(drop)
    }

    /// A subscription handle was dropped: unsubscribe without waiting.
    pub(crate) fn drop_listener(&self, id: ListenerId) {
        let off = self.shared.registry.lock().remove(id);
        if let Some(off) = off {
            let event_id = self.shared.pending.register(Waiter::Ignore, None);
            if self.commands.send(Command::Request(off_request(event_id, off))).is_err() {
                self.shared.pending.take(event_id);
            }
        }
    }
}

/// The item of an object reply (`set`, single `get`).
fn object_reply_item(reply: Value) -> Result<Item> {
    let Value::Object(mut reply) = reply else {
        return Err(Error::Protocol(format!("expected an object reply, got {reply}")));
    };
    let data = reply.remove("data").unwrap_or(Value::Null);
    Ok(Item::from_reply(data, reply.get("_meta")))
}
