//! A socket session's security: who it is, the stateful policy it matched at login, its use of
//! that policy and its cached permissions; and the check every request on it passes
//! ([`Security::authorize_session`]). Its stateless twin, for tokens on HTTP routes and token
//! logins, is `check_token_policy` (`revocation.rs`, used by `http_access.rs`); both ask the
//! policy's own permissions the same way ([`Policy::own_permissions`]).

use super::*;

/// The security state of a logged-in socket (secure mode).
pub struct SessionUser {
    pub username: Arc<str>,
    /// Login time, epoch ms: the policy's time to live counts from here.
    pub timestamp: i64,
    /// The stateful profile the session matched at login.
    pub profile: Arc<Profile>,
    pub activity: Activity,
    pub permissions: CachedPermissions,
    /// The key presented at login or stored on the user (payload encryption, digest logins).
    pub public_key: Option<String>,
}

impl Security {
    /// Open a socket session for an authenticated user: profiles are matched once, here, for
    /// the socket (type 1, kept by the session) and for its token (type 0, named in the token,
    /// so HTTP routes and token logins apply the stateless policy). Returns the session and
    /// its token.
    pub fn open_session(
        &self,
        user: &AuthenticatedUser,
        session_id: &str,
        timestamp: i64,
        info: &Map<String, Value>,
    ) -> (SessionUser, String) {
        let doc = user.session_doc(session_id, timestamp, info);
        let token = self.issue_token(&TokenClaims {
            id: session_id.to_string(),
            username: user.username.clone(),
            timestamp,
            profile: Some(self.profiles.resolve(&doc, policy::STATELESS).name.clone()),
        });
        let session = SessionUser {
            username: Arc::from(user.username.as_str()),
            timestamp,
            profile: self.profiles.resolve(&doc, policy::STATEFUL),
            activity: Activity::new(timestamp),
            permissions: self.cache_permissions(user),
            public_key: user.public_key.clone(),
        };
        (session, token)
    }

    /// May this socket session do `action` on `path`? The original's order: not revoked, the
    /// session policy (time to live, inactivity, usage), then permissions — the policy's own
    /// when it has them, otherwise the user's groups as they are now (cached permissions are
    /// reloaded first when the directory changed). Without a path only revocation is checked
    /// (the action reports the missing path). A request that passes counts as a use of the
    /// policy; nothing is read from the store unless the directory changed.
    pub async fn authorize_session(
        &self,
        session_id: &str,
        user: &mut SessionUser,
        path: Option<&str>,
        action: &str,
    ) -> Result<(), AuthorizeError> {
        if self.is_revoked(session_id) {
            return Err(unauthorized(format!("session with id {session_id} has been revoked")).into());
        }
        let Some(path) = path else {
            return Ok(());
        };
        let policy = &user.profile.policy;
        let now = if policy.needs_time() { now_millis() } else { user.activity.last_ms };
        policy
            .check(user.timestamp, &user.activity, now)
            .map_err(|d| unauthorized(d.reason().to_string()))?;
        match policy.own_permissions(path, action) {
            Some(decided) => decided.map_err(|d| unauthorized(d.reason().to_string()))?,
            None => {
                let permissions = self.current_permissions(&user.username, &mut user.permissions).await?;
                if !permissions.allows(path, action) {
                    return Err(AccessError::Unauthorized { reason: None }.into());
                }
            }
        }
        Policy::record_use(&mut user.activity, now);
        Ok(())
    }
}

/// Why [`Security::authorize_session`] refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error(transparent)]
    Denied(#[from] AccessError),
    /// The user's permissions could not be read (after a directory change).
    #[error(transparent)]
    Data(#[from] DataError),
}

fn unauthorized(reason: String) -> AccessError {
    AccessError::Unauthorized { reason: Some(reason) }
}
