//! Local subscriptions: which listeners want which channel, and what the server must be told
//! when they come and go.
//!
//! The server keeps one reference count per (session, channel). This client adds exactly one
//! reference per `on` and takes away one per removed listener, so the server's count always
//! equals the number of *confirmed* local listeners on the channel; after a reconnect, one `on`
//! per channel with `refCount` = that number restores it.
//!
//! A listener is *pending* from the moment its `on` is queued until the server's reply
//! confirms it. Pending listeners already receive events (initial values arrive right after the
//! reply), but they are not counted when re-subscribing: their `on` is either still queued (and
//! will be sent on the new session) or failed with the old socket.

use crate::client::ClientInner;
use crate::types::{Event, Item};
use futures_util::Stream;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Identifies one subscription (one `on` call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

pub(crate) type ListenerId = SubscriptionId;

struct Listener {
    id: ListenerId,
    tx: mpsc::UnboundedSender<Event>,
    /// Events still to deliver before the subscription ends by itself (`count`).
    remaining: Option<u64>,
    confirmed: bool,
}

/// An `off` the server needs: `ref_count` references of `channel`, on server session
/// `generation` (sent only while that session is live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffRequest {
    pub channel: String,
    pub ref_count: u64,
    pub generation: u64,
}

#[derive(Default)]
pub(crate) struct Registry {
    /// Counts server sessions: bumped at every successful login. Requests that adjust
    /// subscription counts carry the generation they were computed for.
    pub generation: u64,
    /// Logged in on a socket right now.
    pub live: bool,
    next_id: u64,
    channels: BTreeMap<String, Vec<Listener>>,
}

impl Registry {
    /// A new pending listener on `channel`.
    pub fn add(&mut self, channel: &str, count: Option<u64>) -> (ListenerId, mpsc::UnboundedReceiver<Event>) {
        self.next_id += 1;
        let id = SubscriptionId(self.next_id);
        let (tx, rx) = mpsc::unbounded_channel();
        self.channels.entry(channel.to_string()).or_default().push(Listener {
            id,
            tx,
            remaining: count.filter(|&c| c > 0),
            confirmed: false,
        });
        (id, rx)
    }

    /// The server accepted the listener's `on`. When the listener is already gone (removed
    /// while its `on` was in flight), the reference just added must be taken back.
    pub fn confirm(&mut self, id: ListenerId, channel: &str) -> Option<OffRequest> {
        match self.channels.values_mut().flatten().find(|l| l.id == id) {
            Some(l) => {
                l.confirmed = true;
                None
            }
            None => self.off_request(channel, 1),
        }
    }

    fn off_request(&self, channel: &str, ref_count: u64) -> Option<OffRequest> {
        (self.live && ref_count > 0).then(|| OffRequest {
            channel: channel.to_string(),
            ref_count,
            generation: self.generation,
        })
    }

    fn prune(&mut self, channel: &str) {
        if self.channels.get(channel).is_some_and(Vec::is_empty) {
            self.channels.remove(channel);
        }
    }

    /// Remove one listener; its stream ends. Returns the `off` the server needs, if any.
    pub fn remove(&mut self, id: ListenerId) -> Option<OffRequest> {
        let (channel, confirmed) = self.channels.iter_mut().find_map(|(channel, listeners)| {
            let pos = listeners.iter().position(|l| l.id == id)?;
            Some((channel.clone(), listeners.remove(pos).confirmed))
        })?;
        self.prune(&channel);
        if confirmed {
            self.off_request(&channel, 1)
        } else {
            None
        }
    }

    /// Remove every listener on channels whose data path matches `pattern` (`*` = any run of
    /// characters, anchored at both ends).
    pub fn remove_path(&mut self, pattern: &str) -> Vec<OffRequest> {
        let matching: Vec<String> = self
            .channels
            .keys()
            .filter(|c| wildcard_match(pattern, channel_path(c)))
            .cloned()
            .collect();
        matching
            .into_iter()
            .filter_map(|channel| {
                let listeners = self.channels.remove(&channel).unwrap_or_default();
                let confirmed = listeners.iter().filter(|l| l.confirmed).count() as u64;
                self.off_request(&channel, confirmed)
            })
            .collect()
    }

    /// Remove every listener; returns the generation an `off *` would be for, if live.
    pub fn remove_all(&mut self) -> Option<u64> {
        self.channels.clear();
        self.live.then_some(self.generation)
    }

    /// Deliver an event to the listeners of its channel. Returns the `off`s for listeners that
    /// reached their `count` (or whose receiver is gone).
    pub fn dispatch(&mut self, event: Event) -> Vec<OffRequest> {
        let channel = event.meta.channel.clone();
        let Some(listeners) = self.channels.get_mut(&channel) else {
            // The server may still publish on a channel we dropped (its off was in flight).
            return Vec::new();
        };
        let mut finished = Vec::new();
        for l in listeners.iter_mut() {
            let delivered = l.tx.send(event.clone()).is_ok();
            if let Some(n) = &mut l.remaining {
                *n -= 1;
            }
            if !delivered || l.remaining == Some(0) {
                finished.push(l.id);
            }
        }
        finished.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Switch to a new server session: bump the generation and return, per channel, how many
    /// confirmed listeners it has (the `refCount` of its re-subscription).
    pub fn start_session(&mut self) -> Vec<(String, u64)> {
        self.generation += 1;
        self.live = true;
        self.channels
            .iter()
            .map(|(c, ls)| (c.clone(), ls.iter().filter(|l| l.confirmed).count() as u64))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The socket is gone; nothing can be sent to the old session any more.
    pub fn end_session(&mut self) {
        self.live = false;
    }

    /// Whether a request computed for `generation` still refers to the live session.
    pub fn is_current(&self, generation: u64) -> bool {
        self.live && self.generation == generation
    }

    /// The client ended: end every stream.
    pub fn clear(&mut self) {
        self.live = false;
        self.channels.clear();
    }

    #[cfg(test)]
    fn listeners(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, Vec::len)
    }
}

/// The data path of a channel: everything after the first `@`.
fn channel_path(channel: &str) -> &str {
    channel.split_once('@').map_or(channel, |(_, p)| p)
}

/// Anchored wildcard match: `*` matches any run of characters (including `/`), everything else
/// is literal. The same rule happn-rs applies to paths.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen and where in `text` it started matching, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// One subscription: a [`Stream`] of [`Event`]s.
///
/// The stream ends when the subscription ends: [`Client::off`](crate::Client::off),
/// `off_path`, `off_all`, its `count` reached, or the client ended. It survives reconnects.
/// Dropping the handle unsubscribes (use [`Client::on_with`](crate::Client::on_with) for a
/// subscription that lives on its own).
///
/// Events are buffered without bound, as in the JS client: consume them promptly.
pub struct Subscription {
    pub(crate) id: SubscriptionId,
    pub(crate) channel: String,
    pub(crate) rx: mpsc::UnboundedReceiver<Event>,
    pub(crate) initial_values: Vec<Item>,
    pub(crate) client: Weak<ClientInner>,
}

impl Subscription {
    /// This subscription's id (for [`Client::off`](crate::Client::off)).
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The channel, e.g. `/SET@/devices/*`.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The subscribed path (the channel without its `/EVENT@` prefix).
    pub fn path(&self) -> &str {
        channel_path(&self.channel)
    }

    /// The values returned with the subscription when `initial_callback` was asked for.
    pub fn initial_values(&self) -> &[Item] {
        &self.initial_values
    }

    /// Take the initial values out of the handle.
    pub fn take_initial_values(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.initial_values)
    }

    /// The next event; `None` once the subscription has ended.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already buffered.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl From<&Subscription> for SubscriptionId {
    fn from(s: &Subscription) -> Self {
        s.id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(client) = self.client.upgrade() {
            client.drop_listener(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(channel: &str) -> Event {
        Event::from_wire(json!({"data":{},"_meta":{"path":"/a","action":"/SET@/a","channel":channel,"type":"data"}})).unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("/a/*", "/a/b/c"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("/a/*/c", "/a/x/y/c"));
        assert!(wildcard_match("/a/*", "/a/*"));
        assert!(!wildcard_match("/a/*", "/x/a/b"));
        assert!(!wildcard_match("/a", "/a/b"));
        assert!(wildcard_match("*b*", "abc"));
        assert!(!wildcard_match("*b", "abc"));
    }

    #[test]
    fn ref_counts_follow_confirmed_listeners() {
        let mut r = Registry::default();
        assert!(r.start_session().is_empty());
        let (a, _ra) = r.add("/SET@/a", None);
        let (b, _rb) = r.add("/SET@/a", None);
        let (c, _rc) = r.add("/ALL@/b/*", None);
        // Pending listeners are not restored and need no off.
        assert_eq!(r.start_session(), vec![]);
        assert_eq!(r.remove(c), None);
        assert_eq!(r.confirm(a, "/SET@/a"), None);
        assert_eq!(r.confirm(b, "/SET@/a"), None);
        // A confirmation for a listener removed meanwhile takes the reference back.
        let off = r.confirm(c, "/ALL@/b/*").unwrap();
        assert_eq!(off.ref_count, 1);
        assert_eq!(r.start_session(), vec![("/SET@/a".to_string(), 2)]);
        let off = r.remove(a).unwrap();
        assert_eq!((off.channel.as_str(), off.ref_count, off.generation), ("/SET@/a", 1, 3));
        r.end_session();
        // While down, removals need no off (the old session is gone; the next one will not
        // count them).
        assert_eq!(r.remove(b), None);
        assert_eq!(r.listeners("/SET@/a"), 0);
    }

    #[test]
    fn off_path_and_count() {
        let mut r = Registry::default();
        r.start_session();
        let (a, _ra) = r.add("/SET@/p/1", None);
        let (b, _rb) = r.add("/ALL@/p/1", None);
        let (c, _rc) = r.add("/ALL@/q", None);
        for id in [a, b, c] {
            r.confirm(id, "");
        }
        let offs = r.remove_path("/p/*");
        assert_eq!(offs.len(), 2);
        assert!(offs.iter().all(|o| o.ref_count == 1));
        assert_eq!(r.listeners("/ALL@/q"), 1);

        let (d, mut rd) = r.add("/SET@/c", Some(2));
        r.confirm(d, "/SET@/c");
        assert!(r.dispatch(event("/SET@/c")).is_empty());
        let offs = r.dispatch(event("/SET@/c"));
        assert_eq!(offs.len(), 1);
        assert!(rd.try_recv().is_ok() && rd.try_recv().is_ok());
        assert!(matches!(rd.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        assert!(r.dispatch(event("/SET@/unknown")).is_empty());
        assert_eq!(r.remove_all(), Some(r.generation));
    }
}
