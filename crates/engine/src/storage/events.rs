//! The event log of a cluster store: every write a client's subscribers must hear of is logged in
//! the same transaction as the write, under one order (commit order) that every node reads back
//! and delivers from — the node the write came through included. See docs/CLUSTER.md.
//!
//! A store offers it through [`super::Store::event_log`]; single-node stores do not (their
//! writes are published by the server straight to the local subscriptions).

use super::WriteBatch;
use crate::body::Body;
use crate::error::StoreError;
use crate::path::Pattern;
use crate::pubsub::EventKind;
use crate::record::{Millis, Record};
use async_trait::async_trait;

/// Where a logged event's id comes from: ascending in commit order, with holes (a rolled-back
/// transaction's ids are never used).
pub type EventId = i64;

/// One event, as logged. What only the write knows — the `created`/`modified` a plain set keeps,
/// the number of records a remove took — the store fills in ([`Event::fill`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `Set` or `Remove` for a client's write, which subscribers hear of. [`EventKind::All`]
    /// marks a *change note*: a system record (`/_SYSTEM/…`) written without a client event,
    /// which other nodes read to refresh what they cache of it (users, groups, revocations) and
    /// which is never delivered to a client.
    pub kind: EventKind,
    /// The path the write named: the event's action (`/SET@path`) and the path subscriptions
    /// match.
    pub path: String,
    /// Where the record went when not to `path` (a tag's snapshot, a sibling): the `_meta.path`.
    pub moved_to: Option<String>,
    /// The event's `data` as JSON text (`None` until filled: a remove's `{"removed":n}`).
    pub data: Option<String>,
    /// A set's stamps (`None` for a `noStore` set, and until filled for a plain set); a remove's
    /// time in `modified`.
    pub created: Option<Millis>,
    pub modified: Option<Millis>,
    pub tag: Option<String>,
    /// Who hears of it and how it is rendered, as the server encodes it; kept as is.
    pub publish: String,
}

impl Event {
    /// An event of `kind` at `path` with nothing filled in yet.
    pub fn pending(kind: EventKind, path: &str, publish: String) -> Event {
        Event {
            kind,
            path: path.to_string(),
            moved_to: None,
            data: None,
            created: None,
            modified: None,
            tag: None,
            publish,
        }
    }

    /// A change note for a system record written or removed without a client event.
    pub fn change(path: &str) -> Event {
        Event::pending(EventKind::All, path, String::new())
    }

    pub fn is_change_note(&self) -> bool {
        self.kind == EventKind::All
    }

    /// Fill in what the write decided: a plain set's stamps, a remove's count, the record an
    /// update wrote.
    pub fn fill(&mut self, outcome: Filled<'_>) {
        match outcome {
            Filled::Record(r) if self.kind == EventKind::Set && self.data.is_none() => {
                self.data = Some(r.data.json().to_string());
                self.created = Some(r.created);
                self.modified = Some(r.modified);
                self.tag = r.tag.clone();
                self.moved_to = (r.path != self.path).then(|| r.path.clone());
            }
            Filled::Stamps(created, modified) if self.kind == EventKind::Set && self.created.is_none() => {
                self.created = Some(created);
                self.modified = Some(modified);
            }
            Filled::Removed(n) if self.kind == EventKind::Remove && self.data.is_none() => {
                self.data = Some(format!("{{\"removed\":{n}}}"));
            }
            _ => {}
        }
    }
}

/// What a write tells its event (see [`Event::fill`]).
#[derive(Debug, Clone, Copy)]
pub enum Filled<'a> {
    Stamps(Millis, Millis),
    Removed(usize),
    /// The record an update put last: the event's data and `_meta`.
    Record(&'a Record),
}

/// A read-modify-write of one path ([`EventLog::update_logged`]): given the record there (if
/// any), the records to put, the one the event describes last. It may run more than once (a
/// retried transaction); only the run that commits counts.
pub type Update = Box<dyn Fn(Option<&Record>) -> Vec<Record> + Send + Sync>;

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub id: EventId,
    /// The name of the node the write came through.
    pub origin: String,
    pub event: Event,
}

/// What a node's reader of the log hands on, in log order.
#[derive(Debug)]
pub enum TailItem {
    /// Events in ascending id order, none skipped, none repeated.
    Events(Vec<LoggedEvent>),
    /// The reader fell behind the log's trim horizon: events after `after` up to `resumed_at`
    /// are gone, and delivery resumes after `resumed_at`. Subscribers missed events; the server
    /// tells them so (see docs/CLUSTER.md).
    Gap { after: EventId, resumed_at: EventId },
}

/// Writes that log their event in the same transaction, and the log's reader.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// This node's name in the log (`origin` of what it writes).
    fn node_name(&self) -> &str;

    /// [`super::Store::replace`], logging `event` (its stamps filled in) with it.
    async fn replace_logged(&self, path: &str, body: Body, now: Millis, event: Event) -> Result<((Millis, Millis), EventId), StoreError>;

    /// [`super::Store::write`], logging `event` with it.
    async fn write_logged(&self, batch: WriteBatch, event: Event) -> Result<EventId, StoreError>;

    /// [`super::Store::remove_matching`], logging `event` (its count filled in) with it.
    async fn remove_matching_logged(&self, pattern: &Pattern, event: Event) -> Result<(Vec<String>, EventId), StoreError>;

    /// Read-modify-write `path` atomically across nodes (the record is locked in the
    /// transaction), logging `event` (filled from the last record `update` put) with it. Merges
    /// and tags: a per-process lock cannot keep two nodes' merges apart. Returns that record.
    async fn update_logged(&self, path: &str, update: Update, event: Event) -> Result<(Record, EventId), StoreError>;

    /// Log an event that changes no record (a `noStore` set, a security record's event).
    async fn append(&self, event: Event) -> Result<EventId, StoreError>;

    /// The log from now on, in order. One reader per node: a second call gets `None`.
    fn tail(&self) -> Option<tokio::sync::mpsc::Receiver<TailItem>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_event() -> Event {
        Event {
            kind: EventKind::Set,
            path: "/a".into(),
            moved_to: None,
            data: Some("{}".into()),
            created: None,
            modified: None,
            tag: None,
            publish: "{}".into(),
        }
    }

    #[test]
    fn fill_takes_only_what_the_event_lacks() {
        let mut e = set_event();
        e.fill(Filled::Removed(3));
        assert_eq!(e, set_event(), "a set takes no count");
        e.fill(Filled::Stamps(1, 2));
        assert_eq!((e.created, e.modified), (Some(1), Some(2)));
        e.fill(Filled::Stamps(5, 6));
        assert_eq!((e.created, e.modified), (Some(1), Some(2)), "stamps given by the caller stay");
        let mut r = Event {
            kind: EventKind::Remove,
            data: None,
            ..set_event()
        };
        r.fill(Filled::Removed(2));
        assert_eq!(r.data.as_deref(), Some("{\"removed\":2}"));
        let mut note = Event::change("/_SYSTEM/x");
        note.fill(Filled::Stamps(1, 1));
        note.fill(Filled::Removed(1));
        assert!(note.is_change_note() && note.data.is_none() && note.created.is_none());
    }
}
