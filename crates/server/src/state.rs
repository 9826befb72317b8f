//! Shared server state: the engine services plus the registry of live connections that events
//! and shutdown notices are delivered through.

use crate::config::Config;
pub(crate) use crate::outbox::{Outbox, QueueBudget};
use crate::session::Identity;
use happn_engine::data::DataService;
use happn_engine::pubsub::Subscriptions;
use happn_engine::security::Security;
use happn_engine::session::SessionIndexes;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A connection as other tasks see it: where its output goes, and who it is logged in as
/// (the session's own [`Identity`], shared; `None` before login).
pub(crate) struct Peer {
    pub tx: Outbox,
    pub identity: Option<Arc<Identity>>,
}

pub struct AppState {
    pub config: Config,
    pub name: String,
    pub(crate) public_key: String,
    /// The server's private key (opens encrypted logins, seals their replies).
    pub(crate) server_key: k256::SecretKey,
    pub(crate) data: Arc<DataService>,
    pub(crate) security: Security,
    pub subscriptions: Subscriptions,
    pub(crate) indexes: SessionIndexes,
    /// Outbound bytes queued across all connections (`maxTotalQueueBytes`), with the count of
    /// connections closed to keep within it.
    pub(crate) queue_budget: Arc<QueueBudget>,
    peers: RwLock<HashMap<u64, Peer>>,
    next_key: AtomicU64,
    /// Cluster mode: this node's side of the event log (`crate::cluster`).
    pub cluster: Option<crate::cluster::Cluster>,
    /// Operating metrics (`/metrics`).
    pub telemetry: crate::telemetry::Telemetry,
    /// Set when the server starts stopping: `/ready` answers 503 from then on.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// `/_admin/export`: one at a time (each holds a copy of the record list while it sends).
    pub(crate) exports: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub(crate) fn new(
        config: Config,
        name: String,
        keypair: crate::system::ServerKeyPair,
        data: Arc<DataService>,
        security: Security,
    ) -> Self {
        AppState {
            queue_budget: QueueBudget::new(config.max_total_queue_bytes),
            config,
            name,
            public_key: keypair.public_key,
            server_key: keypair.secret,
            data,
            security,
            subscriptions: Subscriptions::new(),
            indexes: SessionIndexes::new(),
            peers: RwLock::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            cluster: None,
            telemetry: Default::default(),
            stopping: Default::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    pub(crate) fn register(&self, tx: Outbox) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.peers.write().insert(key, Peer { tx, identity: None });
        key
    }

    pub(crate) fn unregister(&self, key: u64) {
        self.peers.write().remove(&key);
    }

    /// Only `Session::begin` and `Session::end` call this.
    pub(crate) fn set_identity(&self, key: u64, identity: Option<Arc<Identity>>) {
        if let Some(p) = self.peers.write().get_mut(&key) {
            p.identity = identity;
        }
    }

    /// Close every socket logged in as `username`: the `server-side-disconnect` system message,
    /// then `primus::server::close` so the client does not reconnect, then the close.
    pub(crate) fn disconnect_user(&self, username: &str, reason: &str) -> usize {
        let preface = vec![
            happn_protocol::system_message("server-side-disconnect", &serde_json::Value::String(reason.into()), None),
            happn_protocol::encode_control("primus::server::close"),
        ];
        let peers = self.peers.read();
        let mut closed = 0;
        let of_user = |p: &&Peer| p.identity.as_ref().and_then(|i| i.username.as_deref()) == Some(username);
        for p in peers.values().filter(of_user) {
            p.tx.close(preface.clone(), 1000, String::new());
            closed += 1;
        }
        if closed > 0 {
            tracing::info!(username, sessions = closed, "closed the sessions of a deleted user");
        }
        closed
    }

    /// Run `f` over the peers without cloning them (publish fan-out).
    pub(crate) fn with_peers<R>(&self, f: impl FnOnce(&HashMap<u64, Peer>) -> R) -> R {
        f(&self.peers.read())
    }

    pub fn connection_count(&self) -> usize {
        self.peers.read().len()
    }

    /// Close the connections holding the most queued output until the rest fit the server-wide
    /// budget with an eighth to spare: clients that stop reading tend to do so together (a
    /// stalled network, a paused process), and closing only just enough would have the next
    /// one over the budget a moment later, each time after the memory was spent. Runs when a
    /// push finds the total over the budget (never per push) and looks at every connection once.
    /// Connections already closing for it are left out: their queues go when their tasks end.
    /// Returns how many were closed.
    pub(crate) fn shed_queues(&self) -> usize {
        use crate::outbox::BUDGET_STEP;
        let budget = &self.queue_budget;
        let peers = self.peers.read();
        let mut total = 0;
        let mut largest: Vec<(usize, u64)> = Vec::new();
        for (key, p) in peers.iter().filter(|(_, p)| !p.tx.evicted()) {
            // Counted as the budget counts them: in whole steps.
            let counted = p.tx.held_bytes() / BUDGET_STEP * BUDGET_STEP;
            if counted > 0 {
                total += counted;
                largest.push((counted, *key));
            }
        }
        if total <= budget.limit() {
            return 0;
        }
        largest.sort_unstable_by(|a, b| b.cmp(a));
        let target = budget.limit() - budget.limit() / 8;
        let mut closed = 0;
        for (counted, key) in largest {
            if total <= target {
                break;
            }
            let p = &peers[&key];
            if !p.tx.evict() {
                continue;
            }
            let queued = p.tx.held_bytes();
            budget.evictions.fetch_add(1, Ordering::Relaxed);
            budget.evicted_bytes.fetch_add(queued as u64, Ordering::Relaxed);
            tracing::warn!(
                conn = key,
                session = p.identity.as_ref().map_or("(not logged in)", |i| &i.id),
                queued,
                total,
                budget = budget.limit(),
                "closing connection: queued output and input buffers of all connections over the server-wide budget (maxTotalQueueBytes), this one holds the most"
            );
            total -= counted;
            closed += 1;
        }
        closed
    }

    /// Ask every connection to close, with the given frames first.
    pub(crate) fn close_all(&self, preface: &[String]) {
        for p in self.peers.read().values() {
            p.tx.close(preface.to_vec(), 1000, String::new());
        }
    }
}

/// Keeps queued output within the server-wide budget for as long as the server lives: woken by
/// a push that finds the total over it, it closes the largest queues, then rests a moment so a
/// burst of pushes costs at most one look at the connections per 10 ms.
pub(crate) async fn shed_queues_task(state: Weak<AppState>) {
    let Some(wake) = state.upgrade().map(|s| s.queue_budget.wake_handle()) else {
        return;
    };
    loop {
        // Also woken when the budget is dropped with the state: then the upgrade fails.
        wake.notified().await;
        let Some(state) = state.upgrade() else { return };
        state.queue_budget.rearm();
        state.shed_queues();
        drop(state);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
