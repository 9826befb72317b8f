//! Session tokens (issue, verify, their stateless policy) and revoked sessions.

use super::*;

impl Security {
    pub fn issue_token(&self, claims: &TokenClaims) -> String {
        self.signer.read().sign(claims)
    }

    /// Verify a token's signature and that its session was not revoked.
    pub fn verify_token(&self, token: &str) -> Option<TokenClaims> {
        let claims = self.signer.read().verify(token)?;
        (!self.is_revoked(&claims.id)).then_some(claims)
    }

    /// The policy a token was issued under (its stateless profile).
    pub fn token_policy(&self, claims: &TokenClaims) -> Arc<Profile> {
        self.profiles.named(claims.profile.as_deref().unwrap_or(""), policy::STATELESS)
    }

    /// The stateless policy checks for one use of a token, counting the use when they pass.
    /// `permission` is `(path, action)` when the use is a request on a path.
    pub(super) fn check_token_policy(&self, claims: &TokenClaims, permission: Option<(&str, &str)>) -> Result<(), PolicyDenial> {
        let profile = self.token_policy(claims);
        let policy = &profile.policy;
        let now = now_millis();
        let check_permission = || match permission {
            Some((path, action)) => policy.own_permissions(path, action).unwrap_or(Ok(())),
            None => Ok(()),
        };
        // Only inactivity and usage limits need to remember a token's uses.
        if policy.inactivity_ms.is_none() && policy.usage_limit.is_none() {
            policy.check(claims.timestamp, &Activity::new(now), now)?;
            return check_permission();
        }
        let mut activity = self.token_activity.lock();
        if activity.len() >= TOKEN_ACTIVITY_PRUNE_AT && !activity.contains_key(&claims.id) {
            // Tokens past their time to live are refused anyway: forget their uses.
            activity.retain(|_, (_, expires)| expires.is_none_or(|e| e > now));
        }
        let expires = policy.ttl_ms.map(|ttl| claims.timestamp.saturating_add(ttl as i64));
        let (entry, _) = activity
            .entry(claims.id.clone())
            .or_insert_with(|| (Activity::new(claims.timestamp), expires));
        policy.check(claims.timestamp, entry, now)?;
        check_permission()?;
        Policy::record_use(entry, now);
        Ok(())
    }

    /// `revoke-session`: the session (and every token minted for it) is refused from now on.
    /// Kept in the store at the original's path so it survives wherever the data does.
    pub async fn revoke(&self, session_id: &str) -> Result<(), DataError> {
        let data = json!({"data": {"reason": "CLIENT", "id": session_id}, "key": session_id});
        self.put(&format!("{REVOKED_PREFIX}{session_id}"), data, now_millis()).await?;
        self.revoked.extend([session_id.to_string()]);
        Ok(())
    }

    pub fn is_revoked(&self, session_id: &str) -> bool {
        self.revoked.contains(session_id)
    }
}

/// The revoked session ids, checked on every request by every worker thread. Sessions are rarely
/// revoked, so a count of the set's entries lets the check skip the lock (and the cache-line
/// traffic of taking it shared from every core) while the set is empty. The set is only mutated
/// through these methods, which keep the count in step with it.
#[derive(Default)]
pub(super) struct RevokedSessions {
    ids: parking_lot::RwLock<ahash::AHashSet<String>>,
    pub(super) count: AtomicUsize,
}

impl RevokedSessions {
    pub(super) fn extend(&self, ids: impl IntoIterator<Item = String>) {
        let mut set = self.ids.write();
        set.extend(ids);
        // Stored before the write lock is released (and before `revoke` returns), so a check
        // that starts after that sees a non-zero count and looks the id up under the lock.
        self.count.store(set.len(), Ordering::Release);
    }

    pub(super) fn contains(&self, session_id: &str) -> bool {
        self.count.load(Ordering::Acquire) != 0 && self.ids.read().contains(session_id)
    }
}
