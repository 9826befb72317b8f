//! The HTTP side of security: `/auth/login` hands out a stateless session token, and every
//! other guarded HTTP request presents such a token and is checked against `/@HTTP<pathname>`
//! with the lower-case HTTP method as the action (semantics §8).

use super::{policy, AuthenticatedUser, Credentials, Security, TokenClaims};
use crate::error::AccessError;
use crate::record::now_millis;
use crate::session::new_session_id;

/// The permission path prefix of HTTP routes.
pub const HTTP_PREFIX: &str = "/@HTTP";

/// Why an HTTP request carrying a token is refused. The texts are the original's response
/// bodies, so the server can send `to_string()` as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpDenied {
    /// The token does not decode (bad signature, garbage, another server's secret).
    #[error("invalid token format or null token")]
    InvalidToken,
    /// The token is genuine but its session may not do this: revoked, user gone, or no
    /// permission. `path` is the permission path (`/@HTTP...`); `reason` is for the logs only,
    /// as the original answers all of these alike.
    #[error("unauthorized access to path {path}")]
    Unauthorized { path: String, reason: Option<String> },
    /// The security records could not be read.
    #[error("security records unavailable: {0}")]
    Internal(String),
}

/// Who an authorised HTTP request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    pub username: String,
    pub session_id: String,
}

/// The permission path of an HTTP request: `/@HTTP` + the raw pathname, as the original builds it.
pub fn http_permission_path(pathname: &str) -> String {
    format!("{HTTP_PREFIX}{pathname}")
}

impl Security {
    /// `/auth/login`: authenticate (with lockout, like a socket login) and mint a token for a
    /// brand-new stateless session. The token works for HTTP routes and for a websocket
    /// `login({token})`.
    pub async fn login_for_token(&self, creds: &Credentials) -> Result<(String, AuthenticatedUser), AccessError> {
        let user = self.authenticate(creds).await?;
        let id = new_session_id();
        let timestamp = now_millis();
        let doc = user.session_doc(&id, timestamp, &serde_json::Map::new());
        let token = self.issue_token(&TokenClaims {
            profile: Some(self.profiles.resolve(&doc, policy::STATELESS).name.clone()),
            id,
            username: user.username.clone(),
            timestamp,
        });
        Ok((token, user))
    }

    /// May the holder of `token` use `method` on the HTTP route `pathname`? The checks follow
    /// the original's order: decode, revocation, the user still exists, the token's stateless
    /// policy (ttl, inactivity, usage, and its own permissions when it has them), then the
    /// user's current permissions (read fresh, so group changes and deleted users take effect on
    /// the next request).
    pub async fn authorize_http(&self, token: &str, pathname: &str, method: &str) -> Result<HttpGrant, HttpDenied> {
        let claims = self.signer.read().verify(token).ok_or(HttpDenied::InvalidToken)?;
        let path = http_permission_path(pathname);
        let action = method.to_ascii_lowercase();
        let denied = |reason: Option<String>| HttpDenied::Unauthorized {
            path: path.clone(),
            reason,
        };
        let internal = |e: crate::error::DataError| HttpDenied::Internal(e.to_string());
        if self.is_revoked(&claims.id) {
            return Err(denied(Some(format!("session with id {} has been revoked", claims.id))));
        }
        let exists = self
            .load_user(&claims.username)
            .await
            .map_err(|e| HttpDenied::Internal(e.to_string()))?
            .is_some();
        if !exists {
            return Err(denied(Some(format!("user {} has been deleted or does not exist", claims.username))));
        }
        let limited = self.token_policy(&claims).policy.permissions.is_some();
        self.check_token_policy(&claims, Some((&path, &action)))
            .map_err(|d| denied(Some(d.reason().to_string())))?;
        if !limited {
            let permissions = self.permissions_of(&claims.username).await.map_err(internal)?;
            if !permissions.allows(&path, &action) {
                return Err(denied(None));
            }
        }
        Ok(HttpGrant {
            username: claims.username,
            session_id: claims.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataService;
    use crate::security::{GroupSpec, SecurityConfig, UserSpec, ADMIN};
    use crate::storage::MemoryStore;
    use serde_json::json;
    use std::sync::Arc;

    async fn security() -> Security {
        let cfg = SecurityConfig {
            users: vec![UserSpec {
                username: "web".into(),
                password: Some("pw".into()),
                groups: vec!["webGroup".into()],
                ..Default::default()
            }],
            groups: vec![GroupSpec {
                name: "webGroup".into(),
                permissions: json!({"/@HTTP/pages/*": {"actions": ["get"]}}).as_object().unwrap().clone(),
                custom_data: None,
            }],
            ..Default::default()
        };
        let data = Arc::new(DataService::new(Arc::new(MemoryStore::new())));
        let s = Security::new(data, &cfg);
        s.bootstrap(&cfg).await.unwrap();
        s
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials::from_value(&json!({"username": u, "password": p}))
    }

    #[tokio::test]
    async fn token_from_login_is_checked_against_http_paths() {
        let s = security().await;
        let (token, user) = s.login_for_token(&creds("web", "pw")).await.unwrap();
        assert_eq!(user.username, "web");
        let grant = s.authorize_http(&token, "/pages/a.html", "GET").await.unwrap();
        assert_eq!(grant.username, "web");
        assert_eq!(
            s.authorize_http(&token, "/pages/a.html", "POST").await.unwrap_err(),
            HttpDenied::Unauthorized {
                path: "/@HTTP/pages/a.html".into(),
                reason: None
            }
        );
        let other = s.authorize_http(&token, "/other", "GET").await.unwrap_err();
        assert_eq!(other.to_string(), "unauthorized access to path /@HTTP/other");
        assert_eq!(
            s.authorize_http("garbage", "/pages/a", "GET").await.unwrap_err(),
            HttpDenied::InvalidToken
        );
        assert_eq!(
            s.login_for_token(&creds("web", "wrong")).await.unwrap_err(),
            AccessError::InvalidCredentials
        );
    }

    #[tokio::test]
    async fn admin_passes_and_revocation_denies() {
        let s = security().await;
        let (token, _) = s.login_for_token(&creds(ADMIN, "happn")).await.unwrap();
        let grant = s.authorize_http(&token, "/anything/at/all", "delete").await.unwrap();
        s.revoke(&grant.session_id).await.unwrap();
        match s.authorize_http(&token, "/anything/at/all", "get").await.unwrap_err() {
            HttpDenied::Unauthorized { reason: Some(r), .. } => assert!(r.contains("revoked"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_stateless_policy_governs_http_tokens() {
        let cfg = SecurityConfig {
            profiles: crate::security::Profiles::parse(&json!([
                {"name": "one-shot", "session": {"user.username": "_ADMIN", "type": 0}, "policy": {"usage_limit": 1}},
                {"name": "pages-only", "session": {"user.username": "web", "type": 0}, "policy": {"permissions": {"/@HTTP/pages/x": {"actions": ["get"]}}}},
            ]))
            .unwrap(),
            ..Default::default()
        };
        let s = security().await;
        let s = Security::new(s.data.clone(), &cfg);
        s.bootstrap(&cfg).await.unwrap();
        let (token, _) = s.login_for_token(&creds(ADMIN, "happn")).await.unwrap();
        assert!(s.authorize_http(&token, "/a", "get").await.is_ok());
        match s.authorize_http(&token, "/a", "get").await.unwrap_err() {
            HttpDenied::Unauthorized { reason: Some(r), .. } => assert_eq!(r, "session usage limit reached"),
            other => panic!("{other:?}"),
        }
        let (web, _) = s.login_for_token(&creds("web", "pw")).await.unwrap();
        assert!(s.authorize_http(&web, "/pages/x", "get").await.is_ok());
        match s.authorize_http(&web, "/pages/y", "get").await.unwrap_err() {
            HttpDenied::Unauthorized { reason: Some(r), .. } => assert_eq!(r, "token permissions limited"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_token_of_a_missing_user_is_unauthorized() {
        let s = security().await;
        let token = s.issue_token(&TokenClaims {
            id: "s".into(),
            username: "ghost".into(),
            timestamp: 1,
            ..Default::default()
        });
        assert!(matches!(
            s.authorize_http(&token, "/pages/a", "get").await.unwrap_err(),
            HttpDenied::Unauthorized { reason: Some(_), .. }
        ));
    }
}
