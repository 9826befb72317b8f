//! A socket's session: what it is logged in as, its security state and its payload cipher. One
//! type owns these; the peer registry (`state.rs`) holds only the connection's outbox and the
//! session's [`Identity`], the same shared value the session holds, set and cleared only here
//! ([`Session::begin`], [`Session::end`]).

use crate::encryption::FrameCipher;
use crate::state::AppState;
use happn_engine::pubsub::Subscriber;
use happn_engine::security::SessionUser;
use std::sync::Arc;

/// Who a logged-in socket is, as other connections' tasks see it: events are addressed by `id`
/// (and filtered by `targetClients` and `noCluster`), and a deleted user's sockets are found by
/// `username`. Immutable: a new login makes a new one.
#[derive(Debug)]
pub(crate) struct Identity {
    pub id: Arc<str>,
    /// The session's user (secure mode).
    pub username: Option<Arc<str>>,
    /// The login's `info.clusterName` was set (skipped by `noCluster` publishes).
    pub cluster_member: bool,
}

/// A logged-in session.
pub(crate) struct Login {
    pub identity: Arc<Identity>,
    /// The session's slot number (`index` in the login reply).
    pub index: usize,
    /// `None` in insecure mode.
    pub user: Option<SessionUser>,
}

/// Per-socket session state, from connect to close.
pub(crate) struct Session {
    /// The connection's key in the peer registry.
    pub key: u64,
    pub login: Option<Login>,
    /// The session's payload cipher after an encrypted login (`encryptPayloads`).
    pub cipher: Option<Arc<FrameCipher>>,
}

impl Session {
    pub fn new(key: u64) -> Self {
        Session {
            key,
            login: None,
            cipher: None,
        }
    }

    /// The session id, once logged in.
    pub fn id(&self) -> Option<&Arc<str>> {
        self.login.as_ref().map(|l| &l.identity.id)
    }

    /// The subscription registry's name for this session.
    pub fn subscriber(&self) -> Option<Subscriber> {
        self.login.as_ref().map(|l| Subscriber {
            index: l.index,
            key: self.key,
        })
    }

    /// Start a logged-in session (a previous one must have been ended), published to the peer
    /// registry so events reach it.
    pub fn begin(&mut self, state: &AppState, login: Login, cipher: Option<Arc<FrameCipher>>) {
        state.set_identity(self.key, Some(login.identity.clone()));
        self.login = Some(login);
        self.cipher = cipher;
    }

    /// Forget the session: its subscriptions, its index slot, its entry's identity. The cipher
    /// stays until a new login replaces it (the connection's writer holds its own copy).
    pub fn end(&mut self, state: &AppState) {
        if let Some(sub) = self.subscriber() {
            state.subscriptions.remove_subscriber(sub);
        }
        if let Some(login) = self.login.take() {
            state.indexes.release(login.index);
            state.set_identity(self.key, None);
        }
    }
}
