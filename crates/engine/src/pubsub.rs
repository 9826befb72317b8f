//! The subscription registry: which sessions listen on which channels, with the original's
//! refCount arithmetic and publish order (semantics.md §5.1–5.3).
//!
//! A channel is `/SET@<path>`, `/REMOVE@<path>` or `/ALL@<path>`; `<path>` may hold `*`.
//! Publishing a set/remove on request path `p` delivers, in this order: exact `/<ACTION>@p`,
//! exact `/ALL@p`, `/ALL@*`, then wildcard ALL channels and wildcard ACTION channels in the
//! order they were first subscribed. Within a channel, subscribers go by ascending session index.

use crate::path::Pattern;
use indexmap::IndexMap;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Set,
    Remove,
    All,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Set => "SET",
            EventKind::Remove => "REMOVE",
            EventKind::All => "ALL",
        }
    }
}

/// A parsed subscription channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub kind: EventKind,
    pub path: String,
}

impl Channel {
    /// Parse `/SET@…`, `/REMOVE@…`, `/ALL@…` (upper case exactly, like the original).
    pub fn parse(channel: &str) -> Result<Channel, String> {
        let bad = || {
            format!("invalid subscription channel {channel:?}: expected /SET@<path>, /REMOVE@<path> or /ALL@<path>")
        };
        let rest = channel.strip_prefix('/').ok_or_else(bad)?;
        let (event, path) = rest.split_once('@').ok_or_else(bad)?;
        let kind = match event {
            "SET" => EventKind::Set,
            "REMOVE" => EventKind::Remove,
            "ALL" => EventKind::All,
            _ => return Err(bad()),
        };
        Ok(Channel {
            kind,
            path: path.to_string(),
        })
    }

    /// The data path a permission check uses (the channel minus its `/<EVENT>@` prefix).
    pub fn data_path(channel: &str) -> &str {
        for p in ["/SET@", "/REMOVE@", "/ALL@"] {
            if let Some(rest) = channel.strip_prefix(p) {
                return rest;
            }
        }
        channel
    }
}

/// Who listens: ordered by session index (the publish order), then by a unique connection key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subscriber {
    pub index: usize,
    pub key: u64,
}

type Listeners = BTreeMap<Subscriber, i64>;

struct WildcardChannel {
    kind: EventKind,
    pattern: Pattern,
    listeners: Listeners,
}

#[derive(Default)]
struct Inner {
    exact: HashMap<String, Listeners>,
    /// Insertion-ordered, because wildcard deliveries follow first-subscription order.
    wildcard: IndexMap<String, WildcardChannel>,
    by_subscriber: HashMap<Subscriber, HashSet<String>>,
}

#[derive(Default)]
pub struct Subscriptions {
    inner: RwLock<Inner>,
}

/// One delivery: a subscriber and the channel (as subscribed) that matched.
pub type Delivery = (Subscriber, Arc<str>);

impl Subscriptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// `on`: add `ref_count` (0 or missing counts as 1) to the subscriber's count on `channel`.
    pub fn subscribe(&self, who: Subscriber, channel: &str, ref_count: i64) -> Result<(), String> {
        let parsed = Channel::parse(channel)?;
        let inc = if ref_count == 0 { 1 } else { ref_count };
        let mut inner = self.inner.write();
        let listeners = if parsed.path.contains('*') && channel != "/ALL@*" {
            &mut inner
                .wildcard
                .entry(channel.to_string())
                .or_insert_with(|| WildcardChannel {
                    kind: parsed.kind,
                    pattern: Pattern::new(&parsed.path),
                    listeners: Listeners::new(),
                })
                .listeners
        } else {
            inner.exact.entry(channel.to_string()).or_default()
        };
        *listeners.entry(who).or_insert(0) += inc;
        inner
            .by_subscriber
            .entry(who)
            .or_default()
            .insert(channel.to_string());
        Ok(())
    }

    /// `off` of one channel: subtract `ref_count`; at 0 or below the subscriber leaves it.
    pub fn unsubscribe(&self, who: Subscriber, channel: &str, ref_count: i64) {
        let mut inner = self.inner.write();
        let mut gone = false;
        if let Some(l) = inner.exact.get_mut(channel) {
            gone = decrement(l, who, ref_count);
            if l.is_empty() {
                inner.exact.remove(channel);
            }
        } else if let Some(w) = inner.wildcard.get_mut(channel) {
            gone = decrement(&mut w.listeners, who, ref_count);
            if w.listeners.is_empty() {
                inner.wildcard.shift_remove(channel);
            }
        }
        if gone {
            if let Some(set) = inner.by_subscriber.get_mut(&who) {
                set.remove(channel);
                if set.is_empty() {
                    inner.by_subscriber.remove(&who);
                }
            }
        }
    }

    /// `off "*"` and disconnects: drop every subscription of `who`.
    pub fn remove_subscriber(&self, who: Subscriber) {
        let mut inner = self.inner.write();
        let Some(channels) = inner.by_subscriber.remove(&who) else {
            return;
        };
        for channel in channels {
            if let Some(l) = inner.exact.get_mut(&channel) {
                l.remove(&who);
                if l.is_empty() {
                    inner.exact.remove(&channel);
                }
            } else if let Some(w) = inner.wildcard.get_mut(&channel) {
                w.listeners.remove(&who);
                if w.listeners.is_empty() {
                    inner.wildcard.shift_remove(&channel);
                }
            }
        }
    }

    /// Everyone who gets an event for `kind` (Set or Remove) on request path `path`, one entry
    /// per matching channel, in the original's order.
    pub fn deliveries(&self, kind: EventKind, path: &str) -> Vec<Delivery> {
        let inner = self.inner.read();
        let mut out = Vec::new();
        let mut push_all = |channel: &str, listeners: &Listeners| {
            let name: Arc<str> = Arc::from(channel);
            out.extend(listeners.keys().map(|s| (*s, name.clone())));
        };
        let own = format!("/{}@{}", kind.as_str(), path);
        let all = format!("/ALL@{path}");
        for key in [own.as_str(), all.as_str(), "/ALL@*"] {
            if let Some(l) = inner.exact.get(key) {
                push_all(key, l);
            }
        }
        for wanted in [EventKind::All, kind] {
            for (name, w) in &inner.wildcard {
                if w.kind == wanted && w.pattern.matches(path) {
                    push_all(name, &w.listeners);
                }
            }
        }
        out
    }

    /// Channels with at least one subscriber (diagnostics).
    pub fn channel_count(&self) -> usize {
        let inner = self.inner.read();
        inner.exact.len() + inner.wildcard.len()
    }
}

/// Returns true when the subscriber left the channel.
fn decrement(listeners: &mut Listeners, who: Subscriber, by: i64) -> bool {
    let Some(count) = listeners.get_mut(&who) else {
        return false;
    };
    *count -= by;
    if *count <= 0 {
        listeners.remove(&who);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(index: usize) -> Subscriber {
        Subscriber {
            index,
            key: index as u64 + 100,
        }
    }

    fn names(d: &[Delivery]) -> Vec<(usize, &str)> {
        d.iter().map(|(s, c)| (s.index, c.as_ref())).collect()
    }

    #[test]
    fn channel_parsing() {
        assert_eq!(
            Channel::parse("/SET@/a").unwrap(),
            Channel {
                kind: EventKind::Set,
                path: "/a".into()
            }
        );
        assert_eq!(Channel::parse("/ALL@*").unwrap().kind, EventKind::All);
        assert!(Channel::parse("/set@/a").is_err());
        assert!(Channel::parse("/a/b").is_err());
        assert!(Channel::parse("SET@/a").is_err());
        assert_eq!(Channel::data_path("/REMOVE@/x/*"), "/x/*");
    }

    #[test]
    fn publish_order_matches_the_original() {
        let subs = Subscriptions::new();
        subs.subscribe(s(0), "/SET@/e/*", 0).unwrap();
        subs.subscribe(s(0), "/ALL@/e/*", 0).unwrap();
        subs.subscribe(s(0), "/ALL@*", 0).unwrap();
        subs.subscribe(s(0), "/ALL@/e/1", 0).unwrap();
        subs.subscribe(s(1), "/SET@/e/1", 0).unwrap();
        subs.subscribe(s(0), "/SET@/e/1", 0).unwrap();
        subs.subscribe(s(0), "/REMOVE@/e/1", 0).unwrap();
        let d = subs.deliveries(EventKind::Set, "/e/1");
        assert_eq!(
            names(&d),
            [
                (0, "/SET@/e/1"),
                (1, "/SET@/e/1"),
                (0, "/ALL@/e/1"),
                (0, "/ALL@*"),
                (0, "/ALL@/e/*"),
                (0, "/SET@/e/*")
            ]
        );
        // A wildcard remove publishes once, on its pattern: only wildcard channels and ALL@* match.
        let d = subs.deliveries(EventKind::Remove, "/e/*");
        assert_eq!(names(&d), [(0, "/ALL@*"), (0, "/ALL@/e/*")]);
    }

    #[test]
    fn ref_counts() {
        let subs = Subscriptions::new();
        subs.subscribe(s(0), "/SET@/a", 0).unwrap(); // counts 1
        subs.subscribe(s(0), "/SET@/a", 2).unwrap(); // 3
        subs.unsubscribe(s(0), "/SET@/a", 1); // 2
        assert_eq!(subs.deliveries(EventKind::Set, "/a").len(), 1);
        subs.unsubscribe(s(0), "/SET@/a", 0); // unchanged
        subs.unsubscribe(s(0), "/SET@/a", 2); // 0: gone
        assert!(subs.deliveries(EventKind::Set, "/a").is_empty());
        assert_eq!(subs.channel_count(), 0);
        subs.unsubscribe(s(0), "/SET@/unknown", 1); // no-op
        subs.subscribe(s(0), "/SET@/w/*", 0).unwrap();
        subs.subscribe(s(0), "/SET@/b", 0).unwrap();
        subs.subscribe(s(1), "/SET@/b", 0).unwrap();
        subs.remove_subscriber(s(0));
        assert!(subs.deliveries(EventKind::Set, "/w/1").is_empty());
        assert_eq!(
            names(&subs.deliveries(EventKind::Set, "/b")),
            [(1, "/SET@/b")]
        );
    }
}
