//! Request correlation: every request gets the next eventId, and its waiter sits in this table
//! until the reply with that eventId arrives (in any order), the request times out, or the
//! socket it went out on is lost.

use crate::error::Result;
use crate::subscriptions::ListenerId;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// Who gets the reply.
pub(crate) enum Waiter {
    /// A caller awaiting the result.
    Caller(oneshot::Sender<Result<Value>>),
    /// A subscription re-sent after a reconnect; a failure becomes
    /// `ClientEvent::ResubscribeFailed` for this channel.
    Resubscribe(String),
    /// Nobody (the automatic `off` of a `count` subscription or of a dropped handle).
    Ignore,
}

pub(crate) struct Entry {
    pub waiter: Waiter,
    /// Written to a socket. Only these fail with `Disconnected` when that socket is lost;
    /// requests still queued wait for the next session instead.
    pub sent: bool,
    /// For `on` requests: the local listener (and its channel) that the reply confirms, or,
    /// on failure, drops.
    pub listener: Option<(ListenerId, String)>,
}

#[derive(Default)]
pub(crate) struct Pending {
    // eventIds count up for the life of the client, across reconnects, as in the JS client.
    next_event_id: AtomicU64,
    map: Mutex<HashMap<u64, Entry>>,
}

impl Pending {
    pub fn next_event_id(&self) -> u64 {
        self.next_event_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A new eventId with its waiter.
    pub fn register(&self, waiter: Waiter, listener: Option<(ListenerId, String)>) -> u64 {
        let id = self.next_event_id();
        self.map.lock().insert(
            id,
            Entry {
                waiter,
                sent: false,
                listener,
            },
        );
        id
    }

    /// Mark a request as written; false when nobody waits for it any more (timed out or
    /// cancelled while queued), in which case it should not be written at all.
    pub fn mark_sent(&self, event_id: u64) -> bool {
        match self.map.lock().get_mut(&event_id) {
            Some(e) => {
                e.sent = true;
                true
            }
            None => false,
        }
    }

    /// Whether someone still waits for this request.
    pub fn contains(&self, event_id: u64) -> bool {
        self.map.lock().contains_key(&event_id)
    }

    pub fn take(&self, event_id: u64) -> Option<Entry> {
        self.map.lock().remove(&event_id)
    }

    /// Every request that went out on the socket just lost.
    pub fn take_sent(&self) -> Vec<Entry> {
        let mut map = self.map.lock();
        let ids: Vec<u64> = map.iter().filter(|(_, e)| e.sent).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| map.remove(&id)).collect()
    }

    pub fn take_all(&self) -> Vec<Entry> {
        self.map.lock().drain().map(|(_, e)| e).collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}

impl Waiter {
    /// Hand over the result; a caller that has gone away is not an error.
    pub fn complete(self, result: Result<Value>) -> Option<(String, crate::Error)> {
        match self {
            Waiter::Caller(tx) => {
                let _ = tx.send(result);
                None
            }
            Waiter::Resubscribe(channel) => result.err().map(|e| (channel, e)),
            Waiter::Ignore => None,
        }
    }
}

/// Removes a caller's entry when its future finishes or is dropped (timeout, cancellation), so
/// abandoned requests do not pile up in the table.
pub(crate) struct PendingGuard<'a> {
    pub pending: &'a Pending,
    pub event_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.take(self.event_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_entries_fail_queued_ones_stay() {
        let p = Pending::default();
        let a = p.register(Waiter::Ignore, None);
        let b = p.register(Waiter::Ignore, None);
        assert!(b > a);
        assert!(p.mark_sent(a));
        assert_eq!(p.take_sent().len(), 1);
        assert_eq!(p.len(), 1);
        {
            let _g = PendingGuard { pending: &p, event_id: b };
        }
        assert_eq!(p.len(), 0);
        assert!(!p.mark_sent(b));
    }
}
