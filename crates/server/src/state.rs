//! Shared server state: the engine services plus the registry of live connections that events
//! and shutdown notices are delivered through.

use crate::config::Config;
pub use crate::outbox::{Outbound, Outbox};
use happn_engine::data::DataService;
use happn_engine::pubsub::Subscriptions;
use happn_engine::security::Security;
use happn_engine::session::SessionIndexes;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A connection as other tasks see it.
#[derive(Clone)]
pub struct Peer {
    pub tx: Outbox,
    /// The logged-in session id (events carry the recipient's).
    pub session_id: Option<Arc<str>>,
    /// The login `info.clusterName` was set (skipped by `noCluster` publishes).
    pub cluster_member: bool,
    /// The session's user (secure mode), so a deleted user's sockets can be found.
    pub username: Option<Arc<str>>,
}

pub struct AppState {
    pub config: Config,
    pub name: String,
    pub public_key: String,
    /// The server's private key (opens encrypted logins, seals their replies).
    pub server_key: k256::SecretKey,
    pub data: Arc<DataService>,
    pub security: Security,
    pub subscriptions: Subscriptions,
    pub indexes: SessionIndexes,
    peers: RwLock<HashMap<u64, Peer>>,
    next_key: AtomicU64,
}

impl AppState {
    pub fn new(config: Config, name: String, keypair: crate::system::ServerKeyPair, data: Arc<DataService>, security: Security) -> Self {
        AppState {
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
        }
    }

    pub fn register(&self, tx: Outbox) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.peers.write().insert(
            key,
            Peer {
                tx,
                session_id: None,
                cluster_member: false,
                username: None,
            },
        );
        key
    }

    pub fn unregister(&self, key: u64) {
        self.peers.write().remove(&key);
    }

    pub fn set_session(&self, key: u64, session_id: Option<Arc<str>>, cluster_member: bool, username: Option<Arc<str>>) {
        if let Some(p) = self.peers.write().get_mut(&key) {
            p.session_id = session_id;
            p.cluster_member = cluster_member;
            p.username = username;
        }
    }

    /// Close every socket logged in as `username`: the `server-side-disconnect` system message,
    /// then `primus::server::close` so the client does not reconnect, then the close.
    pub fn disconnect_user(&self, username: &str, reason: &str) -> usize {
        let preface = vec![
            happn_protocol::system_message("server-side-disconnect", &serde_json::Value::String(reason.into()), None),
            happn_protocol::encode_control("primus::server::close"),
        ];
        let peers = self.peers.read();
        let mut closed = 0;
        for p in peers.values().filter(|p| p.username.as_deref() == Some(username)) {
            p.tx.close(preface.clone(), 1000, String::new());
            closed += 1;
        }
        if closed > 0 {
            tracing::info!(username, sessions = closed, "closed the sessions of a deleted user");
        }
        closed
    }

    pub fn peer(&self, key: u64) -> Option<Peer> {
        self.peers.read().get(&key).cloned()
    }

    /// Run `f` over the peers without cloning them (publish fan-out).
    pub fn with_peers<R>(&self, f: impl FnOnce(&HashMap<u64, Peer>) -> R) -> R {
        f(&self.peers.read())
    }

    pub fn connection_count(&self) -> usize {
        self.peers.read().len()
    }

    /// Ask every connection to close, with the given frames first.
    pub fn close_all(&self, preface: &[String]) {
        for p in self.peers.read().values() {
            p.tx.close(preface.to_vec(), 1000, String::new());
        }
    }
}
