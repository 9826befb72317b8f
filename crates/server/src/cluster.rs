//! Cluster mode: this node's side of the event log (docs/CLUSTER.md).
//!
//! Every write that publishes is logged with its event in the write's own transaction
//! (`DataService::set_logged`/`remove_logged`, or [`Cluster::append`] for security records); the
//! handler then waits until this node's reader has *delivered* the event before it queues the
//! reply, so the writer's own subscriptions see the event first, as on a single node. Events are
//! delivered here, from the log, on every node — the one the write came through included — so
//! every node's subscribers see one order: the log's.
//!
//! The log also carries change notes of system records written on other nodes; they refresh
//! what this node caches of users, groups and revocations, and close the sessions of a user
//! deleted elsewhere.

use crate::config::ClusterConfig;
use crate::handler::publish::{deliver, Event as Delivery};
use crate::state::AppState;
use happn_engine::pubsub::EventKind;
use happn_engine::security::{self, SecurityPath};
use happn_engine::storage::events::{Event, EventId, LoggedEvent, TailItem};
use happn_engine::StoreError;
use happn_protocol::{PublishOptions, RecordMeta};
use happn_store_postgres::{ClusterOptions, PgOptions, PgStore};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Longest a writer's reply waits for its event to be delivered here. The write is committed
/// either way; past this (the node's reader is reconnecting) the reply goes first.
const DELIVERY_WAIT: Duration = Duration::from_secs(5);

/// `/ready` and `/metrics` read the members table at most this often (answers in between are
/// the last read's), so probes and scrapes cost the database one query a second at most.
const MEMBERS_EVERY: Duration = Duration::from_secs(1);

/// Longest wait for the members table; past it the answer says the read failed.
const MEMBERS_TIMEOUT: Duration = Duration::from_secs(2);

/// This node in the cluster.
pub struct Cluster {
    pub(crate) store: Arc<PgStore>,
    /// This node's name in the log.
    name: String,
    /// The id of the last event delivered here.
    delivered: watch::Sender<EventId>,
    /// The last read of the members table, and when it was made (see [`Cluster::members`]).
    members: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Members>)>>,
}

/// The cluster's nodes as the members table showed them, or why it could not be read.
pub(crate) type Members = Result<Vec<happn_store_postgres::Member>, String>;

impl Cluster {
    /// Open the cluster store as node `node`, reachable at `advertise`.
    pub async fn open(config: &ClusterConfig, node: &str, advertise: String) -> Result<Arc<PgStore>, StoreError> {
        let mut options = PgOptions::new(config.url.clone());
        options.schema = config.schema.clone();
        options.pool_size = config.pool_size;
        options.application_name = format!("happn-rs {node}");
        let mut cluster = ClusterOptions::new(node, advertise);
        cluster.retention = config.retention;
        cluster.max_events = config.max_events;
        options.cluster = Some(cluster);
        Ok(Arc::new(PgStore::open(options).await?))
    }

    pub(crate) fn new(store: Arc<PgStore>, name: String) -> Cluster {
        Cluster {
            store,
            name,
            delivered: watch::channel(0).0,
            members: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The id of the last event delivered on this node.
    pub(crate) fn delivered_id(&self) -> EventId {
        *self.delivered.borrow()
    }

    /// The cluster's nodes, read at most once per [`MEMBERS_EVERY`]: callers meanwhile get the
    /// last read (a failed read too, so a database that is down is not asked again at once).
    /// Concurrent callers wait for the one read in flight.
    pub(crate) async fn members(&self) -> Arc<Members> {
        let mut cached = self.members.lock().await;
        if let Some((at, members)) = &*cached {
            if at.elapsed() < MEMBERS_EVERY {
                return members.clone();
            }
        }
        let read = match tokio::time::timeout(MEMBERS_TIMEOUT, self.store.members()).await {
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the members table did not answer within {MEMBERS_TIMEOUT:?}")),
        };
        let members = Arc::new(read);
        *cached = Some((std::time::Instant::now(), members.clone()));
        members
    }

    /// Wait until the event `id` was delivered on this node (bounded by [`DELIVERY_WAIT`]).
    pub(crate) async fn delivered(&self, id: EventId) {
        let mut rx = self.delivered.subscribe();
        if tokio::time::timeout(DELIVERY_WAIT, rx.wait_for(|d| *d >= id)).await.is_err() {
            tracing::warn!(
                event = id,
                "a write's event was not delivered on this node within {DELIVERY_WAIT:?}; replying first"
            );
        }
    }

    /// Log an event that goes with no record change of its own (a security record's), and wait
    /// for its delivery here.
    pub(crate) async fn append(&self, event: Event) -> Result<(), StoreError> {
        use happn_engine::storage::Store;
        let log = self
            .store
            .event_log()
            .ok_or_else(|| StoreError::Io("cluster store: no event log".into()))?;
        let id = log.append(event).await?;
        self.delivered(id).await;
        Ok(())
    }
}

/// `happn-rs cluster …`: looks at a cluster from the command line.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// List the nodes: name, URL, up or down, started, last heartbeat
    Status {
        /// The cluster's PostgreSQL database
        #[arg(long, value_name = "URL", env = "HAPPN_CLUSTER")]
        cluster: String,
        /// The schema the cluster's tables are in
        #[arg(long, default_value = "public")]
        schema: String,
        /// One JSON object per node instead of a table
        #[arg(long)]
        json: bool,
    },
}

/// Run a `cluster` subcommand; the process's exit code.
pub fn run(command: ClusterCommand) -> std::process::ExitCode {
    let ClusterCommand::Status { cluster, schema, json } = command;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let mut options = PgOptions::new(cluster);
        options.schema = schema;
        options.pool_size = 1;
        options.application_name = "happn-rs cluster status".into();
        PgStore::open(options).await?.members().await
    });
    match result {
        Ok(members) => {
            for m in &members {
                if json {
                    let line = serde_json::json!({"name": m.name, "url": m.url, "alive": m.alive,
                        "startedAt": (m.started_at * 1000.0) as i64, "heartbeatAgeMs": (m.heartbeat_age * 1000.0) as i64});
                    println!("{line}");
                } else {
                    println!(
                        "{:<24} {:<32} {:<5} heartbeat {:.1} s ago",
                        m.name,
                        m.url,
                        if m.alive { "up" } else { "down" },
                        m.heartbeat_age
                    );
                }
            }
            if members.is_empty() && !json {
                println!("(no nodes have joined this cluster)");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("happn-rs: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Who hears of an event and how it is rendered, as logged with it.
#[derive(Serialize, Deserialize, Default)]
struct Publish {
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    target_clients: Option<Vec<String>>,
    #[serde(rename = "c", default, skip_serializing_if = "std::ops::Not::not")]
    no_cluster: bool,
    #[serde(rename = "s", default, skip_serializing_if = "std::ops::Not::not")]
    session_before_action: bool,
}

/// The `publish` text logged with a write's event.
pub(crate) fn publish_text(options: &PublishOptions, session_before_action: bool) -> String {
    let p = Publish {
        target_clients: options.target_clients.clone(),
        no_cluster: options.no_cluster,
        session_before_action,
    };
    serde_json::to_string(&p).expect("JSON")
}

/// A client event for the log, as a single node would publish it (see `publish_and_reply`).
pub(crate) fn client_event(kind: EventKind, path: &str, data_json: &str, meta: &RecordMeta<'_>, publish: String) -> Event {
    Event {
        kind,
        path: path.to_string(),
        moved_to: meta.path.filter(|p| *p != path).map(str::to_string),
        data: Some(data_json.to_string()),
        created: meta.created,
        modified: if kind == EventKind::Remove { meta.timestamp } else { meta.modified },
        tag: meta.tag.map(str::to_string),
        publish,
    }
}

/// Deliver what this node's reader hands on, for as long as the server lives.
pub(crate) async fn deliver_events(state: Weak<AppState>, mut tail: mpsc::Receiver<TailItem>) {
    while let Some(item) = tail.recv().await {
        let Some(state) = state.upgrade() else { return };
        let Some(cluster) = &state.cluster else { return };
        match item {
            TailItem::Events(events) => {
                let last = events.last().map(|e| e.id);
                for e in &events {
                    apply(&state, cluster, e).await;
                }
                if let Some(last) = last {
                    cluster.delivered.send_replace(last);
                }
            }
            TailItem::Gap { after, resumed_at } => {
                // Subscribers here missed events: tell them, then have them reconnect (and so
                // re-read what they need), rather than carry on as if nothing was lost.
                tracing::error!(
                    after,
                    resumed_at,
                    "events were trimmed before this node delivered them; closing its client connections so they reconnect"
                );
                let message = serde_json::json!({"after": after, "resumedAt": resumed_at});
                let preface = vec![happn_protocol::system_message("cluster-events-lost", &message, None)];
                state.close_all(&preface);
                cluster.delivered.send_replace(resumed_at);
            }
        }
    }
}

/// One logged event on this node.
async fn apply(state: &AppState, cluster: &Cluster, logged: &LoggedEvent) {
    let e = &logged.event;
    if e.is_change_note() {
        if logged.origin != cluster.name {
            system_change(state, &e.path).await;
        }
        return;
    }
    let publish: Publish = serde_json::from_str(&e.publish).unwrap_or_default();
    // `noCluster`: as in happn-cluster, only the clients of the node the write came through hear
    // of it (there it also skips sessions that logged in as cluster peers, as on a single node).
    if publish.no_cluster && logged.origin != cluster.name {
        return;
    }
    let options = PublishOptions {
        no_publish: false,
        target_clients: publish.target_clients,
        no_cluster: publish.no_cluster,
    };
    let meta_path = e.moved_to.as_deref().unwrap_or(&e.path);
    let meta = match (e.kind, e.created, e.modified) {
        (EventKind::Remove, _, timestamp) => RecordMeta::removed(timestamp.unwrap_or_default(), meta_path),
        (_, Some(created), Some(modified)) => RecordMeta::stored(created, modified, meta_path, e.tag.as_deref()),
        _ => RecordMeta::at(meta_path),
    };
    let kind_name = if e.kind == EventKind::Remove { "REMOVE" } else { "SET" };
    let action = format!("/{kind_name}@{}", e.path);
    let delivery = Delivery {
        kind: e.kind,
        path: &e.path,
        action: &action,
        data_json: e.data.as_deref().unwrap_or("null"),
        meta: &meta,
        session_before_action: publish.session_before_action,
    };
    state.telemetry.published(deliver(state, &options, &delivery));
}

/// A system record changed on another node: refresh what this node holds of it.
async fn system_change(state: &AppState, path: &str) {
    if let Some(id) = path.strip_prefix(security::REVOKED_PREFIX) {
        state.security.note_revoked(id);
        return;
    }
    match SecurityPath::parse(path) {
        Some(SecurityPath::User(name)) => {
            state.security.directory_changed_elsewhere();
            // A note does not say whether the record was written or removed: the store does.
            if matches!(state.data.get_record(path).await, Ok(None)) {
                state.disconnect_user(name, "security directory update: user deleted");
            }
        }
        Some(_) => state.security.directory_changed_elsewhere(),
        None if path.starts_with("/_SYSTEM/_SECURITY/") => state.security.directory_changed_elsewhere(),
        None => {}
    }
}
