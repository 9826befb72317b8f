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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{GroupSpec, Profiles, SecurityConfig, UserSpec};
    use crate::storage::MemoryStore;

    async fn security(profiles: Value) -> Security {
        let cfg = SecurityConfig {
            users: vec![UserSpec {
                username: "u".into(),
                password: Some("pw".into()),
                groups: vec!["readers".into()],
                ..Default::default()
            }],
            groups: vec![GroupSpec {
                name: "readers".into(),
                permissions: json!({"/r/*": {"actions": ["get"]}}).as_object().unwrap().clone(),
                custom_data: None,
            }],
            profiles: Profiles::parse(&profiles).unwrap(),
            ..Default::default()
        };
        let s = Security::new(Arc::new(DataService::new(Arc::new(MemoryStore::new()))), &cfg);
        s.bootstrap(&cfg).await.unwrap();
        s
    }

    async fn open(s: &Security, username: &str, password: &str) -> SessionUser {
        let user = s
            .authenticate(&Credentials::from_value(&json!({"username": username, "password": password})))
            .await
            .unwrap();
        s.open_session(&user, "sid", now_millis(), &Map::new()).0
    }

    fn reason(e: AuthorizeError) -> Option<String> {
        match e {
            AuthorizeError::Denied(AccessError::Unauthorized { reason }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn permissions_then_revocation() {
        let s = security(json!([])).await;
        let mut u = open(&s, "u", "pw").await;
        s.authorize_session("sid", &mut u, Some("/r/a"), "get").await.unwrap();
        assert_eq!(
            reason(s.authorize_session("sid", &mut u, Some("/r/a"), "set").await.unwrap_err()),
            None
        );
        // A grant reaches the live session on its next request.
        s.upsert_group(
            "readers",
            json!({"permissions": {"/r/*": {"actions": ["get", "set"]}}})
                .as_object()
                .unwrap()
                .clone(),
            true,
        )
        .await
        .unwrap();
        s.authorize_session("sid", &mut u, Some("/r/a"), "set").await.unwrap();
        // Without a path only revocation is checked.
        s.authorize_session("sid", &mut u, None, "set").await.unwrap();
        s.revoke("sid").await.unwrap();
        let denied = reason(s.authorize_session("sid", &mut u, None, "get").await.unwrap_err());
        assert_eq!(denied.as_deref(), Some("session with id sid has been revoked"));
    }

    #[tokio::test]
    async fn the_stateful_policy_governs_the_socket() {
        let s = security(json!([
            {"name": "twice", "session": {"user.username": "u", "type": 1}, "policy": {"usage_limit": 2}},
            {"name": "limited", "session": {"user.username": "_ADMIN", "type": 1}, "policy": {"permissions": {"/only": {"actions": ["get"]}}}},
        ]))
        .await;
        let mut u = open(&s, "u", "pw").await;
        assert_eq!(u.profile.name, "twice");
        for _ in 0..2 {
            s.authorize_session("sid", &mut u, Some("/r/a"), "get").await.unwrap();
        }
        let denied = reason(s.authorize_session("sid", &mut u, Some("/r/a"), "get").await.unwrap_err());
        assert_eq!(denied.as_deref(), Some("session usage limit reached"));
        // A policy's own permissions decide alone: even the admin is limited by them.
        let mut admin = open(&s, ADMIN, DEFAULT_ADMIN_PASSWORD).await;
        s.authorize_session("sid", &mut admin, Some("/only"), "get").await.unwrap();
        let denied = reason(s.authorize_session("sid", &mut admin, Some("/other"), "get").await.unwrap_err());
        assert_eq!(denied.as_deref(), Some("token permissions limited"));
    }
}
