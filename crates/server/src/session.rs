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
    /// The request-rate bucket (`limits.requestsPerSecond`), made on the first request when a
    /// rate is configured: a connection without the limit carries one pointer.
    pub rate: Option<Box<RateBucket>>,
}

/// A token bucket: `burst` tokens, refilled at `rate` a second; a request takes one.
pub(crate) struct RateBucket {
    tokens: f64,
    last: std::time::Instant,
}

impl RateBucket {
    pub fn full(burst: f64) -> RateBucket {
        RateBucket {
            tokens: burst,
            last: std::time::Instant::now(),
        }
    }

    /// Take a token if there is one.
    pub fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl crate::config::SessionLimits {
    /// The bucket's size: `requestBurst`, or one second's worth (at least one request).
    pub fn burst(&self) -> f64 {
        if self.request_burst >= 1.0 {
            self.request_burst
        } else {
            self.requests_per_second.max(1.0)
        }
    }
}

impl Session {
    pub fn new(key: u64) -> Self {
        Session {
            key,
            login: None,
            cipher: None,
            rate: None,
        }
    }

    /// The session id, once logged in.
    pub fn id(&self) -> Option<&Arc<str>> {
        self.login.as_ref().map(|l| &l.identity.id)
    }

    /// Whether the session may make one more request under `limits.requestsPerSecond` (always,
    /// when no rate is set).
    pub fn within_rate(&mut self, state: &AppState) -> bool {
        let limits = &state.config.limits;
        if limits.requests_per_second <= 0.0 {
            return true;
        }
        let burst = limits.burst();
        self.rate
            .get_or_insert_with(|| Box::new(RateBucket::full(burst)))
            .take(limits.requests_per_second, burst)
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
        // The connection task's span (`conn::serve`) names the session from here on.
        let span = tracing::Span::current();
        span.record("session", &*login.identity.id);
        span.record("user", login.identity.username.as_deref().unwrap_or("(none)"));
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

#[cfg(test)]
mod tests {
    use super::RateBucket;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = RateBucket::full(3.0);
        let taken = (0..10).filter(|_| b.take(1000.0, 3.0)).count();
        // Three at once, plus whatever 1,000/s refilled during the loop (well under a token).
        assert!((3..=4).contains(&taken), "{taken}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        // 20 ms at 1,000/s refills the bucket, but never past its size.
        assert_eq!((0..10).filter(|_| b.take(1000.0, 3.0)).count(), 3);
    }
}
