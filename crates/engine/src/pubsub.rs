//! The subscription registry: which sessions listen on which channels, with the original's
//! refCount arithmetic and publish order (semantics.md §5.1–5.3).
//!
//! A channel is `/SET@<path>`, `/REMOVE@<path>` or `/ALL@<path>`; `<path>` may hold `*`.
//! Publishing a set/remove on request path `p` delivers, in this order: exact `/<ACTION>@p`,
//! exact `/ALL@p`, `/ALL@*`, then wildcard ALL channels and wildcard ACTION channels in the
//! order they were first subscribed. Within a channel, subscribers go by ascending session index.

use crate::path::Pattern;
use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// A subscription channel that is not `/SET@…`, `/REMOVE@…` or `/ALL@…`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subscription channel {0:?}: expected /SET@<path>, /REMOVE@<path> or /ALL@<path>")]
pub struct ChannelError(pub String);

impl Channel {
    /// Parse `/SET@…`, `/REMOVE@…`, `/ALL@…` (upper case exactly, like the original).
    pub fn parse(channel: &str) -> Result<Channel, ChannelError> {
        let bad = || ChannelError(channel.to_string());
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
    /// Creation order: wildcard deliveries follow first-subscription order.
    seq: u64,
    kind: EventKind,
    pattern: Pattern,
    listeners: Listeners,
}

/// Wildcard channels indexed by the literal text before their first `*`. A path can only match
/// a pattern whose literal prefix is a prefix of the path, so a publish looks up each distinct
/// prefix length once: the cost follows the path's length and the candidates that share its
/// prefixes, not the number of wildcard subscriptions.
#[derive(Default)]
struct WildcardIndex {
    channels: HashMap<String, WildcardChannel>,
    by_prefix: HashMap<String, Vec<String>>,
    /// Distinct prefix lengths in use, with how many channels have each.
    prefix_lengths: BTreeMap<usize, usize>,
    next_seq: u64,
}

impl WildcardIndex {
    fn listeners_mut(&mut self, channel: &str, kind: EventKind, data_path: &str) -> &mut Listeners {
        if !self.channels.contains_key(channel) {
            let pattern = Pattern::new(data_path);
            let prefix = pattern.literal_prefix().to_string();
            *self.prefix_lengths.entry(prefix.len()).or_insert(0) += 1;
            self.by_prefix.entry(prefix).or_default().push(channel.to_string());
            self.next_seq += 1;
            let w = WildcardChannel {
                seq: self.next_seq,
                kind,
                pattern,
                listeners: Listeners::new(),
            };
            self.channels.insert(channel.to_string(), w);
        }
        &mut self.channels.get_mut(channel).expect("inserted above").listeners
    }

    fn drop_if_empty(&mut self, channel: &str) {
        if !self.channels.get(channel).is_some_and(|w| w.listeners.is_empty()) {
            return;
        }
        let w = self.channels.remove(channel).expect("checked above");
        let prefix = w.pattern.literal_prefix();
        if let Some(list) = self.by_prefix.get_mut(prefix) {
            list.retain(|c| c != channel);
            if list.is_empty() {
                self.by_prefix.remove(prefix);
            }
        }
        if let Some(n) = self.prefix_lengths.get_mut(&prefix.len()) {
            *n -= 1;
            if *n == 0 {
                self.prefix_lengths.remove(&prefix.len());
            }
        }
    }

    /// Matching wildcard channels for `kind` on `path`: ALL channels first, then `kind`'s, each
    /// group in creation order.
    fn matching(&self, kind: EventKind, path: &str) -> Vec<(&str, &WildcardChannel)> {
        let mut hits: Vec<(&str, &WildcardChannel)> = Vec::new();
        for &len in self.prefix_lengths.keys() {
            if len > path.len() {
                break;
            }
            if !path.is_char_boundary(len) {
                continue;
            }
            let Some(list) = self.by_prefix.get(&path[..len]) else { continue };
            for name in list {
                let w = &self.channels[name];
                if (w.kind == EventKind::All || w.kind == kind) && w.pattern.matches(path) {
                    hits.push((name, w));
                }
            }
        }
        hits.sort_by_key(|(_, w)| (w.kind != EventKind::All, w.seq));
        hits
    }
}

#[derive(Default)]
struct Inner {
    exact: HashMap<String, Listeners>,
    wildcard: WildcardIndex,
    by_subscriber: HashMap<Subscriber, HashSet<String>>,
}

/// Recent publish results, so a hot path does not re-run matching (kept per thread, see
/// [`LocalCache`]). Retired on every subscription change (so it is always exact) and cleared
/// when it reaches its bound. One map per event kind, keyed by path, so a lookup needs no
/// allocation.
#[derive(Default)]
struct MatchCache {
    by_kind: [HashMap<Box<str>, Arc<[Delivery]>>; 3],
}

/// A thread's cache of match results: for one [`Subscriptions`] (`owner`) as of one generation
/// of its subscriptions. Per thread, so a publish that hits it touches no memory another core
/// writes (a shared cache's lock, a shared result's reference count), which is what a shared
/// cache cost per set once anyone subscribed.
///
/// Bounded in bytes as well as entries: every entry holds its whole delivery list, so a count
/// bound alone let many subscribers times many distinct paths hold hundreds of MiB per thread.
#[derive(Default)]
struct LocalCache {
    owner: u64,
    generation: u64,
    results: MatchCache,
    /// Estimated heap bytes of `results` ([`entry_bytes`] summed), at most [`MATCH_CACHE_BYTES`].
    bytes: usize,
}

impl LocalCache {
    fn get(&self, owner: u64, generation: u64, kind: EventKind, path: &str) -> Option<Arc<[Delivery]>> {
        if self.owner != owner || self.generation != generation {
            return None;
        }
        self.results.by_kind[MatchCache::slot(kind)].get(path).cloned()
    }

    fn put(&mut self, owner: u64, generation: u64, kind: EventKind, path: &str, found: Arc<[Delivery]>) {
        // A long list is not kept: matching again costs little next to delivering that many
        // events, and a few such lists would crowd out every short one.
        if found.len() > MATCH_CACHE_LONGEST {
            return;
        }
        let cost = entry_bytes(path, &found);
        if self.owner != owner
            || self.generation != generation
            || self.results.len() >= MATCH_CACHE_ENTRIES
            || self.bytes + cost > MATCH_CACHE_BYTES
        {
            self.results.clear();
            self.bytes = 0;
            self.owner = owner;
            self.generation = generation;
        }
        if let Some(old) = self.results.by_kind[MatchCache::slot(kind)].insert(path.into(), found) {
            self.bytes -= entry_bytes(path, &old);
        }
        self.bytes += cost;
    }
}

/// The heap an entry holds, estimated: its map slot and key, the list (with its reference
/// counts), and each channel name the list points to (one allocation per matched channel,
/// shared by that channel's consecutive deliveries). Allocator rounding is left out; the bound
/// is about growth with list length, not exact bytes.
fn entry_bytes(path: &str, found: &[Delivery]) -> usize {
    const COUNTS: usize = 2 * std::mem::size_of::<usize>();
    let mut names = 0;
    let mut last: *const u8 = std::ptr::null();
    for (_, channel) in found {
        if channel.as_ptr() != last {
            last = channel.as_ptr();
            names += COUNTS + channel.len();
        }
    }
    std::mem::size_of::<(Box<str>, Arc<[Delivery]>)>() + path.len() + COUNTS + std::mem::size_of_val(found) + names
}

thread_local! {
    static LOCAL_MATCHES: std::cell::RefCell<LocalCache> = std::cell::RefCell::default();
}

/// Distinguishes [`Subscriptions`] instances in the thread caches (0 is never used).
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

impl MatchCache {
    fn slot(kind: EventKind) -> usize {
        match kind {
            EventKind::Set => 0,
            EventKind::Remove => 1,
            EventKind::All => 2,
        }
    }

    fn len(&self) -> usize {
        self.by_kind.iter().map(|m| m.len()).sum()
    }

    fn clear(&mut self) {
        self.by_kind.iter_mut().for_each(|m| m.clear());
    }
}

const MATCH_CACHE_ENTRIES: usize = 4096;
/// A thread's cache holds at most this many bytes of results (cleared when an entry would pass
/// it): with one cache per worker thread, 1 MiB each. Room for 4,096 lists of a few deliveries.
const MATCH_CACHE_BYTES: usize = 1024 * 1024;
/// Lists longer than this are matched afresh on every publish (see [`LocalCache::put`]).
const MATCH_CACHE_LONGEST: usize = 256;

pub struct Subscriptions {
    inner: RwLock<Inner>,
    /// This instance in the thread caches of match results.
    owner: u64,
    /// Bumped under the write lock by every change: cached results of older generations are
    /// never used.
    generation: AtomicU64,
    /// Whether anyone subscribes to anything: with nobody listening, a publish skips matching
    /// and the cache (and their locks) altogether. Written under the write lock.
    any: AtomicBool,
    /// The empty delivery list, shared.
    none: Arc<[Delivery]>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            inner: RwLock::default(),
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            any: AtomicBool::new(false),
            none: Arc::from(Vec::new()),
        }
    }
}

/// One delivery: a subscriber and the channel (as subscribed) that matched.
pub type Delivery = (Subscriber, Arc<str>);

impl Subscriptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// After a change under the write lock `inner`: refresh the flag and retire every cached
    /// result, before anyone can read the new state.
    fn changed(&self, inner: parking_lot::RwLockWriteGuard<'_, Inner>) {
        self.any.store(!inner.by_subscriber.is_empty(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(inner);
    }

    /// `on`: add `ref_count` (0 or missing counts as 1) to the subscriber's count on `channel`.
    pub fn subscribe(&self, who: Subscriber, channel: &str, ref_count: i64) -> Result<(), ChannelError> {
        let parsed = Channel::parse(channel)?;
        let inc = if ref_count == 0 { 1 } else { ref_count };
        let mut inner = self.inner.write();
        let listeners = if parsed.path.contains('*') && channel != "/ALL@*" {
            inner.wildcard.listeners_mut(channel, parsed.kind, &parsed.path)
        } else {
            inner.exact.entry(channel.to_string()).or_default()
        };
        *listeners.entry(who).or_insert(0) += inc;
        inner.by_subscriber.entry(who).or_default().insert(channel.to_string());
        self.changed(inner);
        Ok(())
    }

    /// `off` of one channel: subtract `ref_count`; at 0 or below the subscriber leaves it.
    pub fn unsubscribe(&self, who: Subscriber, channel: &str, ref_count: i64) {
        let mut inner = self.inner.write();
        let gone = if let Some(l) = inner.exact.get_mut(channel) {
            let gone = decrement(l, who, ref_count);
            if l.is_empty() {
                inner.exact.remove(channel);
            }
            gone
        } else if let Some(w) = inner.wildcard.channels.get_mut(channel) {
            let gone = decrement(&mut w.listeners, who, ref_count);
            inner.wildcard.drop_if_empty(channel);
            gone
        } else {
            false
        };
        if gone {
            if let Some(set) = inner.by_subscriber.get_mut(&who) {
                set.remove(channel);
                if set.is_empty() {
                    inner.by_subscriber.remove(&who);
                }
            }
            self.changed(inner);
        }
    }

    /// `off "*"` and disconnects: drop every subscription of `who`.
    pub fn remove_subscriber(&self, who: Subscriber) {
        let mut inner = self.inner.write();
        let Some(channels) = inner.by_subscriber.remove(&who) else { return };
        for channel in channels {
            if let Some(l) = inner.exact.get_mut(&channel) {
                l.remove(&who);
                if l.is_empty() {
                    inner.exact.remove(&channel);
                }
            } else if let Some(w) = inner.wildcard.channels.get_mut(&channel) {
                w.listeners.remove(&who);
                inner.wildcard.drop_if_empty(&channel);
            }
        }
        self.changed(inner);
    }

    /// Everyone who gets an event for `kind` (Set or Remove) on request path `path`, one entry
    /// per matching channel, in the original's order.
    /// Whether anyone subscribes to anything. A publisher checks this first: with nobody
    /// listening, even sharing the empty delivery list (an atomic count on a cache line every
    /// core writes) is a visible cost per set.
    pub fn has_any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    pub fn deliveries(&self, kind: EventKind, path: &str) -> Arc<[Delivery]> {
        if !self.any.load(Ordering::Acquire) {
            return self.none.clone();
        }
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(hit) = LOCAL_MATCHES.with(|c| c.borrow().get(self.owner, generation, kind, path)) {
            return hit;
        }
        // Match under the read lock, and cache the result under the generation read there: no
        // change can land (and bump it) while the read lock is held, so the result is exactly
        // that generation's.
        let inner = self.inner.read();
        let generation = self.generation.load(Ordering::Acquire);
        let found: Arc<[Delivery]> = Self::compute(&inner, kind, path).into();
        drop(inner);
        LOCAL_MATCHES.with(|c| c.borrow_mut().put(self.owner, generation, kind, path, found.clone()));
        found
    }

    fn compute(inner: &Inner, kind: EventKind, path: &str) -> Vec<Delivery> {
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
        for (name, w) in inner.wildcard.matching(kind, path) {
            push_all(name, &w.listeners);
        }
        out
    }

    /// Subscriptions across all subscribers, each (subscriber, channel) pair once (metrics).
    pub fn subscription_count(&self) -> usize {
        self.inner.read().by_subscriber.values().map(|c| c.len()).sum()
    }

    /// How many channels `who` is subscribed to, and whether `channel` is one of them (the
    /// server's per-session subscription limit: another reference to a channel adds none).
    pub fn subscriber_channels(&self, who: Subscriber, channel: &str) -> (usize, bool) {
        let inner = self.inner.read();
        inner.by_subscriber.get(&who).map_or((0, false), |c| (c.len(), c.contains(channel)))
    }

    /// Channels with at least one subscriber (diagnostics).
    pub fn channel_count(&self) -> usize {
        let inner = self.inner.read();
        inner.exact.len() + inner.wildcard.channels.len()
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
    fn instances_never_share_cached_results() {
        let (a, b) = (Subscriptions::new(), Subscriptions::new());
        a.subscribe(s(0), "/SET@/x/*", 0).unwrap();
        b.subscribe(s(1), "/SET@/y", 0).unwrap();
        for _ in 0..2 {
            assert_eq!(names(&a.deliveries(EventKind::Set, "/x/1")), [(0, "/SET@/x/*")]);
            assert!(b.deliveries(EventKind::Set, "/x/1").is_empty());
        }
        b.subscribe(s(1), "/SET@/x/1", 0).unwrap();
        assert_eq!(names(&b.deliveries(EventKind::Set, "/x/1")), [(1, "/SET@/x/1")]);
        assert_eq!(names(&a.deliveries(EventKind::Set, "/x/1")), [(0, "/SET@/x/*")]);
    }

    /// This thread's cache: its accounted bytes, and the bytes its entries add up to.
    fn cache_bytes() -> (usize, usize) {
        LOCAL_MATCHES.with(|c| {
            let c = c.borrow();
            let actual = c
                .results
                .by_kind
                .iter()
                .flat_map(|m| m.iter())
                .map(|(p, l)| entry_bytes(p, l))
                .sum();
            (c.bytes, actual)
        })
    }

    #[test]
    fn the_thread_cache_stays_within_its_byte_budget() {
        let subs = Subscriptions::new();
        for i in 0..200 {
            subs.subscribe(s(i), "/SET@/a/*", 0).unwrap();
            subs.subscribe(s(i), "/ALL@/a/*/b", 0).unwrap();
        }
        for i in 0..MATCH_CACHE_LONGEST + 1 {
            subs.subscribe(s(i), "/SET@/long/*", 0).unwrap();
        }
        let (mut peak, mut cleared) = (0, false);
        for n in 0..3000 {
            // Lists of 200 or 400 deliveries over two channel names, on ever new paths.
            let (path, want) = if n % 3 == 0 {
                (format!("/a/{n}/b"), 400)
            } else {
                (format!("/a/{n}"), 200)
            };
            assert_eq!(subs.deliveries(EventKind::Set, &path).len(), want);
            let (bytes, actual) = cache_bytes();
            assert_eq!(bytes, actual, "accounting matches the entries held");
            assert!(bytes <= MATCH_CACHE_BYTES, "{bytes} bytes cached");
            cleared |= bytes < peak;
            peak = peak.max(bytes);
            let long = subs.deliveries(EventKind::Set, &format!("/long/{n}"));
            assert_eq!(long.len(), MATCH_CACHE_LONGEST + 1);
            assert_eq!(cache_bytes().0, bytes, "a list over the longest cached is not kept");
        }
        assert!(cleared && peak > MATCH_CACHE_BYTES / 2, "the budget was reached (peak {peak})");
        // Short lists are still served from the cache.
        let first = subs.deliveries(EventKind::Set, "/a/x");
        assert!(Arc::ptr_eq(&first, &subs.deliveries(EventKind::Set, "/a/x")));
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
        assert_eq!(names(&subs.deliveries(EventKind::Set, "/b")), [(1, "/SET@/b")]);
    }

    mod index_vs_brute_force {
        use super::*;
        use proptest::prelude::*;

        /// The reference: every channel's subscribers, matched by scanning all channels.
        /// `order` lists live channels by creation (a channel that empties and comes back is new).
        fn brute(subs: &[(usize, String)], order: &[String], kind: EventKind, path: &str) -> Vec<(usize, String)> {
            let first_seen = order;
            let listeners = |c: &str| {
                let mut who: Vec<usize> = subs.iter().filter(|(_, x)| x == c).map(|(i, _)| *i).collect();
                who.sort();
                who.dedup();
                who.into_iter().map(|i| (i, c.to_string())).collect::<Vec<_>>()
            };
            let mut out = Vec::new();
            for exact in [format!("/{}@{}", kind.as_str(), path), format!("/ALL@{path}"), "/ALL@*".to_string()] {
                if first_seen
                    .iter()
                    .any(|c| *c == exact && (!exact.contains('*') || exact == "/ALL@*"))
                {
                    out.extend(listeners(&exact));
                }
            }
            for want in [EventKind::All, kind] {
                for c in first_seen {
                    let ch = Channel::parse(c).unwrap();
                    if c != "/ALL@*" && ch.path.contains('*') && ch.kind == want && Pattern::new(&ch.path).matches(path) {
                        out.extend(listeners(c));
                    }
                }
            }
            out
        }

        fn channel() -> impl Strategy<Value = String> {
            (prop_oneof!["SET", "REMOVE", "ALL"], "[ab/*]{0,5}").prop_map(|(k, p)| format!("/{k}@{p}"))
        }

        proptest! {
            #[test]
            fn same_answers(subs in proptest::collection::vec((0usize..4, channel()), 0..24),
                            removals in proptest::collection::vec(0usize..24, 0..6),
                            paths in proptest::collection::vec("[ab/*]{0,5}", 1..8)) {
                let index = Subscriptions::new();
                let mut live: Vec<(usize, String)> = Vec::new();
                let mut order: Vec<String> = Vec::new();
                for (i, c) in &subs {
                    index.subscribe(Subscriber { index: *i, key: *i as u64 }, c, 1).unwrap();
                    if !order.contains(c) {
                        order.push(c.clone());
                    }
                    live.push((*i, c.clone()));
                    // Query between changes so the cache is exercised and must stay correct.
                    let _ = index.deliveries(EventKind::Set, &paths[0]);
                }
                for r in removals {
                    if r < subs.len() {
                        let (i, c) = &subs[r];
                        index.unsubscribe(Subscriber { index: *i, key: *i as u64 }, c, 1);
                        if let Some(pos) = live.iter().position(|(j, d)| j == i && d == c) {
                            live.remove(pos);
                        }
                        if !live.iter().any(|(_, d)| d == c) {
                            order.retain(|d| d != c);
                        }
                    }
                }
                for p in &paths {
                    for kind in [EventKind::Set, EventKind::Remove] {
                        let got: Vec<(usize, String)> = index.deliveries(kind, p).iter().map(|(s, c)| (s.index, c.to_string())).collect();
                        prop_assert_eq!(got, brute(&live, &order, kind, p), "path {:?} kind {:?}", p, kind);
                    }
                }
            }
        }
    }
}
