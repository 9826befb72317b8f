//! Login nonces for key-pair (digest) login, cached per public key. As in the original, a nonce
//! is not consumed by a login: it stays valid for its whole TTL, and asking again replaces it
//! with a fresh one (TTL restarting). In memory only, as the original's cache.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The original's `defaultNonceTTL`.
pub const DEFAULT_NONCE_TTL: Duration = Duration::from_millis(60_000);

/// Anyone may ask for nonces (it is allowed before login), so the cache is bounded: past this many
/// live keys, the oldest entry gives way.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// The original's text, as the client sees it: `Error: no public key with request`.
    #[error("no public key with request")]
    MissingPublicKey,
    #[error("invalid public key with request: {0}")]
    InvalidPublicKey(super::crypto::CryptoError),
}

pub struct NonceCache {
    ttl: Duration,
    max_entries: usize,
    /// public key (as sent, base64) → (nonce, issued at)
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl NonceCache {
    pub fn new(ttl: Duration) -> NonceCache {
        NonceCache::with_capacity(ttl, MAX_ENTRIES)
    }

    fn with_capacity(ttl: Duration, max_entries: usize) -> NonceCache {
        NonceCache {
            ttl,
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh nonce for `public_key`, replacing any earlier one.
    pub fn issue(&self, public_key: &str) -> String {
        let nonce = super::crypto::new_nonce();
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= self.max_entries && !entries.contains_key(public_key) {
            entries.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
            if entries.len() >= self.max_entries {
                let oldest = entries.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(public_key.to_string(), (nonce.clone(), now));
        nonce
    }

    /// The live nonce for `public_key`, if one was issued less than a TTL ago.
    pub fn current(&self, public_key: &str) -> Option<String> {
        let mut entries = self.entries.lock();
        match entries.get(public_key) {
            Some((nonce, at)) if at.elapsed() < self.ttl => Some(nonce.clone()),
            Some(_) => {
                entries.remove(public_key);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_nonces_are_reusable_until_the_ttl() {
        let cache = NonceCache::new(Duration::from_millis(80));
        assert_eq!(cache.current("k"), None);
        let n = cache.issue("k");
        assert_eq!(cache.current("k").as_deref(), Some(n.as_str()));
        assert_eq!(cache.current("k").as_deref(), Some(n.as_str()), "not consumed by a read");
        assert_eq!(cache.current("other"), None, "per public key");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(cache.current("k"), None, "expired");
    }

    #[test]
    fn asking_again_replaces_the_nonce() {
        let cache = NonceCache::new(DEFAULT_NONCE_TTL);
        let a = cache.issue("k");
        let b = cache.issue("k");
        assert_ne!(a, b);
        assert_eq!(cache.current("k"), Some(b));
    }

    #[test]
    fn bounded() {
        let cache = NonceCache::with_capacity(DEFAULT_NONCE_TTL, 3);
        for k in ["a", "b", "c"] {
            cache.issue(k);
            std::thread::sleep(Duration::from_millis(2));
        }
        cache.issue("d");
        assert_eq!(cache.entries.lock().len(), 3);
        assert_eq!(cache.current("a"), None, "the oldest gave way");
        assert!(cache.current("b").is_some() && cache.current("d").is_some());
    }
}
