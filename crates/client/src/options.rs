//! Per-call options and how each turns into the request's `options` object. Keys are only
//! written when set, so the frames match what the JS client sends for the same call.

use serde_json::{Map, Value};

/// Options of [`Client::set`](crate::Client::set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetOptions {
    /// Merge into the existing document (one level deep) instead of replacing it.
    pub merge: bool,
    /// Take a tagged snapshot of the existing document instead of writing data.
    pub tag: Option<String>,
    /// Store under a new generated child path (`<path>/<id>`).
    pub sibling: bool,
    /// Publish without storing.
    pub no_store: bool,
    /// Store without publishing.
    pub no_publish: bool,
    /// Publish only to these session ids.
    pub target_clients: Option<Vec<String>>,
    /// Do not publish to cluster peers.
    pub no_cluster: bool,
}

impl SetOptions {
    /// `merge: true`.
    pub fn merge() -> Self {
        SetOptions {
            merge: true,
            ..Default::default()
        }
    }

    /// `no_publish: true` on top of these options.
    pub fn no_publish(mut self) -> Self {
        self.no_publish = true;
        self
    }

    /// `no_store: true` on top of these options.
    pub fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// Publish only to these sessions.
    pub fn target_clients(mut self, sessions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.target_clients = Some(sessions.into_iter().map(Into::into).collect());
        self
    }

    pub(crate) fn to_wire(&self) -> Map<String, Value> {
        let mut o = Map::new();
        if self.merge {
            o.insert("merge".into(), true.into());
        }
        if let Some(tag) = &self.tag {
            o.insert("tag".into(), tag.clone().into());
        }
        if self.sibling {
            o.insert("set_type".into(), "sibling".into());
        }
        if self.no_store {
            o.insert("noStore".into(), true.into());
        }
        if self.no_publish {
            o.insert("noPublish".into(), true.into());
        }
        if let Some(t) = &self.target_clients {
            o.insert("targetClients".into(), t.clone().into());
        }
        if self.no_cluster {
            o.insert("noCluster".into(), true.into());
        }
        o
    }
}

/// Options of [`Client::get`](crate::Client::get).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetOptions {
    /// A MongoDB-style filter on the documents' fields (and `_meta.created`, `_meta.modified`,
    /// `_meta.path`). Any criteria make the reply a list, even for an exact path.
    pub criteria: Option<Value>,
    /// A projection, e.g. `{"name": 1}`.
    pub fields: Option<Value>,
    /// Sort keys, e.g. `{"_meta.modified": -1}`.
    pub sort: Option<Value>,
    /// Skip this many results (happn-rs; the original server ignores it).
    pub skip: Option<u64>,
    /// Return at most this many results.
    pub limit: Option<u64>,
    /// Return only the number of matches ([`Get::Count`](crate::Get::Count)).
    pub count: bool,
    /// Return only paths (as items with empty data).
    pub path_only: bool,
}

impl GetOptions {
    /// Options with these criteria.
    pub fn criteria(criteria: Value) -> Self {
        GetOptions {
            criteria: Some(criteria),
            ..Default::default()
        }
    }

    /// Set the projection.
    pub fn fields(mut self, fields: Value) -> Self {
        self.fields = Some(fields);
        self
    }

    /// Set the sort keys.
    pub fn sort(mut self, sort: Value) -> Self {
        self.sort = Some(sort);
        self
    }

    /// Set the number of results to skip.
    pub fn skip(mut self, skip: u64) -> Self {
        self.skip = Some(skip);
        self
    }

    /// Set the maximum number of results.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Ask for the count only.
    pub fn count(mut self) -> Self {
        self.count = true;
        self
    }

    /// Ask for paths only.
    pub fn path_only(mut self) -> Self {
        self.path_only = true;
        self
    }

    /// `{criteria, options: {fields, sort, skip, limit, count, path_only}}`: the query options
    /// are nested one level down, as happn expects.
    pub(crate) fn to_wire(&self) -> Map<String, Value> {
        let mut query = Map::new();
        if let Some(f) = &self.fields {
            query.insert("fields".into(), f.clone());
        }
        if let Some(s) = &self.sort {
            query.insert("sort".into(), s.clone());
        }
        if let Some(s) = self.skip {
            query.insert("skip".into(), s.into());
        }
        if let Some(l) = self.limit {
            query.insert("limit".into(), l.into());
        }
        if self.count {
            query.insert("count".into(), true.into());
        }
        if self.path_only {
            query.insert("path_only".into(), true.into());
        }
        let mut o = Map::new();
        if let Some(c) = &self.criteria {
            o.insert("criteria".into(), c.clone());
        }
        if !query.is_empty() {
            o.insert("options".into(), Value::Object(query));
        }
        o
    }
}

/// Options of [`Client::remove`](crate::Client::remove).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoveOptions {
    /// Remove without publishing.
    pub no_publish: bool,
    /// Publish only to these session ids.
    pub target_clients: Option<Vec<String>>,
    /// Do not publish to cluster peers.
    pub no_cluster: bool,
}

impl RemoveOptions {
    pub(crate) fn to_wire(&self) -> Map<String, Value> {
        let mut o = Map::new();
        if self.no_publish {
            o.insert("noPublish".into(), true.into());
        }
        if let Some(t) = &self.target_clients {
            o.insert("targetClients".into(), t.clone().into());
        }
        if self.no_cluster {
            o.insert("noCluster".into(), true.into());
        }
        o
    }
}

/// Which changes a subscription receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Sets only (channel `/SET@<path>`).
    Set,
    /// Removes only (channel `/REMOVE@<path>`).
    Remove,
    /// Both (channel `/ALL@<path>`).
    #[default]
    All,
}

impl EventType {
    /// The channel prefix word: `SET`, `REMOVE` or `ALL`.
    pub fn channel_word(self) -> &'static str {
        match self {
            EventType::Set => "SET",
            EventType::Remove => "REMOVE",
            EventType::All => "ALL",
        }
    }

    /// The `event_type` option value: `set`, `remove` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Set => "set",
            EventType::Remove => "remove",
            EventType::All => "all",
        }
    }

    /// The subscription channel for a path: `"/" + EVENT + "@" + path`.
    pub fn channel(self, path: &str) -> String {
        format!("/{}@{}", self.channel_word(), path)
    }
}

/// Options of [`Client::on`](crate::Client::on).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnOptions {
    /// Sets, removes or both (default both).
    pub event_type: EventType,
    /// Unsubscribe by itself after this many events.
    pub count: Option<u64>,
    /// Return the current values under the path with the subscription
    /// ([`Subscription::initial_values`](crate::Subscription::initial_values)).
    pub initial_callback: bool,
    /// Deliver the current values as events ([`EventKind::Initial`](crate::EventKind::Initial))
    /// before any change.
    pub initial_emit: bool,
}

impl OnOptions {
    /// Options for one event type.
    pub fn event_type(event_type: EventType) -> Self {
        OnOptions {
            event_type,
            ..Default::default()
        }
    }

    /// Stop after `n` events.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// Ask for the current values with the reply.
    pub fn initial_callback(mut self) -> Self {
        self.initial_callback = true;
        self
    }

    /// Ask for the current values as events.
    pub fn initial_emit(mut self) -> Self {
        self.initial_emit = true;
        self
    }

    /// `{event_type, count, refCount, initialCallback?, initialEmit?}`. Each `on` adds exactly one
    /// reference on the server (refCount 1), which keeps the server's count equal to the number
    /// of local subscriptions on the channel.
    pub(crate) fn to_wire(&self) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("event_type".into(), self.event_type.as_str().into());
        o.insert("count".into(), self.count.unwrap_or(0).into());
        o.insert("refCount".into(), 1.into());
        if self.initial_callback {
            o.insert("initialCallback".into(), true.into());
        }
        if self.initial_emit {
            o.insert("initialEmit".into(), true.into());
        }
        o
    }
}

/// Options of [`Client::disconnect_with`](crate::Client::disconnect_with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DisconnectOptions {
    /// Revoke the session token on the server before closing, so it cannot log in again.
    pub revoke_session: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_options() {
        assert_eq!(Value::Object(SetOptions::default().to_wire()), json!({}));
        let o = SetOptions {
            merge: true,
            tag: Some("T".into()),
            sibling: true,
            no_store: true,
            no_publish: true,
            target_clients: Some(vec!["s".into()]),
            no_cluster: true,
        };
        assert_eq!(
            Value::Object(o.to_wire()).to_string(),
            r#"{"merge":true,"tag":"T","set_type":"sibling","noStore":true,"noPublish":true,"targetClients":["s"],"noCluster":true}"#
        );
    }

    #[test]
    fn get_options_nest_query_options() {
        let o = GetOptions::criteria(json!({"a":1}))
            .sort(json!({"a":1}))
            .limit(2)
            .skip(1)
            .count()
            .path_only();
        assert_eq!(
            Value::Object(o.to_wire()),
            json!({"criteria":{"a":1},"options":{"sort":{"a":1},"skip":1,"limit":2,"count":true,"path_only":true}})
        );
        assert_eq!(Value::Object(GetOptions::default().to_wire()), json!({}));
    }

    #[test]
    fn on_options_and_channels() {
        assert_eq!(EventType::Set.channel("/a/*"), "/SET@/a/*");
        assert_eq!(EventType::All.channel("*"), "/ALL@*");
        assert_eq!(
            Value::Object(OnOptions::event_type(EventType::Remove).count(1).to_wire()).to_string(),
            r#"{"event_type":"remove","count":1,"refCount":1}"#
        );
        assert_eq!(
            Value::Object(OnOptions::default().initial_emit().to_wire()).to_string(),
            r#"{"event_type":"all","count":0,"refCount":1,"initialEmit":true}"#
        );
    }
}
