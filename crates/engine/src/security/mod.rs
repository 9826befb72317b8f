//! Users, groups and logins. Security records live in the data store at the original's paths
//! (`/_SYSTEM/_SECURITY/_USER/<name>`, `/_SYSTEM/_SECURITY/_GROUP/<name>`, membership at
//! `/_SYSTEM/_SECURITY/_USER/<name>/_USER_GROUP/<group>`), so any storage backend keeps them.

mod bootstrap;
mod config;
pub mod crypto;
mod directory;
mod http_access;
mod login;
pub mod nonce;
mod password;
mod permissions;
pub mod policy;
mod revocation;
mod session;
mod token;

pub use config::{Credentials, GroupSpec, LockoutConfig, SecurityConfig, UserSpec};
pub use directory::SecurityPath;
pub use http_access::{http_permission_path, HttpDenied, HttpGrant, HTTP_PREFIX};
pub use nonce::{NonceError, DEFAULT_NONCE_TTL};
pub use password::{hash_password, verify_password};
pub use permissions::{PermissionError, Permissions};
pub use policy::{Activity, Policy, PolicyDenial, Profile, Profiles};
pub use session::{AuthorizeError, SessionUser};
pub use token::{TokenClaims, TokenSigner};

use crate::data::DataService;
use crate::error::{AccessError, DataError};
use crate::path::Pattern;
use crate::record::{now_millis, Record};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const SECURITY_PREFIX: &str = "/_SYSTEM/_SECURITY/";
pub const USER_PREFIX: &str = "/_SYSTEM/_SECURITY/_USER/";
pub const GROUP_PREFIX: &str = "/_SYSTEM/_SECURITY/_GROUP/";
pub const ADMIN: &str = "_ADMIN";
pub const REVOKED_PREFIX: &str = "/_SYSTEM/_CACHE/cache_revoked_sessions/";
pub const DEFAULT_ADMIN_PASSWORD: &str = "happn";
/// The server keypair (secp256k1). Never readable over the wire.
pub const KEYPAIR_PATH: &str = "/_SYSTEM/_SECURITY/_SETTINGS/KEYPAIR";
/// The generated session-token secret, persisted so tokens survive restarts. Never readable.
pub const TOKEN_SECRET_PATH: &str = "/_SYSTEM/_SECURITY/_SETTINGS/SESSION_TOKEN_SECRET";

/// How many token sessions' uses are remembered before expired ones are forgotten.
const TOKEN_ACTIVITY_PRUNE_AT: usize = 10_000;

/// Records clients may not write or remove with plain data operations: the security directory
/// (managed through [`Security`]'s directory methods) and the revocation list.
pub fn is_protected(path: &str) -> bool {
    path.starts_with(SECURITY_PREFIX) || path.starts_with(REVOKED_PREFIX)
}

/// A user who has proven who they are.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub username: String,
    pub permissions: Arc<Permissions>,
    /// Group names, in path order.
    pub groups: Vec<String>,
    pub custom_data: Value,
    /// The directory generation the permissions were loaded at.
    pub generation: u64,
    /// The session's public key: the one sent with the credentials, else the user's stored one.
    /// A session with a public key gets a payload-encryption secret.
    pub public_key: Option<String>,
}

impl AuthenticatedUser {
    /// The session object profiles are matched against (semantics §6.7): `id`, `timestamp`,
    /// `info`, and `user` with `username`, `custom_data` and a `groups` map. `type` is added by
    /// [`Profiles::resolve`].
    pub fn session_doc(&self, session_id: &str, timestamp: i64, info: &Map<String, Value>) -> Map<String, Value> {
        let groups: Map<String, Value> = self.groups.iter().map(|g| (g.clone(), Value::Object(Map::new()))).collect();
        let doc = json!({
            "id": session_id,
            "timestamp": timestamp,
            "info": info,
            "user": {"username": self.username, "custom_data": self.custom_data, "groups": groups},
        });
        match doc {
            Value::Object(m) => m,
            _ => unreachable!("built as an object"),
        }
    }
}

/// A session's copy of its user's permissions, refreshed when the directory changes.
#[derive(Debug, Clone)]
pub struct CachedPermissions {
    generation: u64,
    permissions: Arc<Permissions>,
}

pub struct Security {
    data: Arc<DataService>,
    signer: parking_lot::RwLock<Arc<TokenSigner>>,
    lockout: LockoutConfig,
    profiles: Profiles,
    /// username → (failed attempts, time of the last failure). In memory, as the original.
    failures: parking_lot::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
    /// Bumped on every change to users, groups or memberships.
    generation: std::sync::atomic::AtomicU64,
    /// Revoked session ids, loaded from the store at start and kept in step with it, so the
    /// check on every request is a memory lookup.
    revoked: revocation::RevokedSessions,
    /// Token (stateless) sessions' uses, for their inactivity and usage limits, with the time
    /// each token expires (if its policy has a time to live).
    token_activity: parking_lot::Mutex<std::collections::HashMap<String, (Activity, Option<i64>)>>,
    /// Each user's permissions as of a directory generation, shared by all of the user's
    /// sessions (ten thousand device sockets of one user hold one copy, not ten thousand).
    shared_permissions: parking_lot::Mutex<(u64, std::collections::HashMap<String, Arc<Permissions>>)>,
    nonces: nonce::NonceCache,
}

pub fn user_path(name: &str) -> String {
    format!("{USER_PREFIX}{name}")
}

pub fn group_path(name: &str) -> String {
    format!("{GROUP_PREFIX}{name}")
}

pub fn link_path(user: &str, group: &str) -> String {
    format!("{USER_PREFIX}{user}/_USER_GROUP/{group}")
}

/// Why a user or group name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("invalid name {0:?}: '/' and '*' are not allowed")]
    Separator(String),
    #[error("invalid name {0:?}: contains the reserved word {1}")]
    Reserved(String, &'static str),
}

/// Names may not contain `/` or the reserved words the original refuses.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains('/') || name.contains('*') {
        return Err(NameError::Separator(name.to_string()));
    }
    for reserved in ["_SYSTEM", "_GROUP", "_PERMISSION", "_USER_GROUP"] {
        if name.contains(reserved) {
            return Err(NameError::Reserved(name.to_string(), reserved));
        }
    }
    Ok(())
}

impl Security {
    pub fn new(data: Arc<DataService>, config: &SecurityConfig) -> Security {
        let secret = match &config.token_secret {
            Some(s) => s.clone().into_bytes(),
            None => {
                let mut b = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
                b.to_vec()
            }
        };
        Security {
            data,
            signer: parking_lot::RwLock::new(Arc::new(TokenSigner::new(&secret))),
            lockout: config.lockout.clone(),
            profiles: config.profiles.clone(),
            failures: Default::default(),
            generation: Default::default(),
            revoked: Default::default(),
            token_activity: Default::default(),
            shared_permissions: Default::default(),
            nonces: nonce::NonceCache::new(config.nonce_ttl.unwrap_or(DEFAULT_NONCE_TTL)),
        }
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn directory_changed(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Users, groups or memberships changed through another node of a cluster: live sessions
    /// here reload their permissions on their next request, as after a change made here.
    pub fn directory_changed_elsewhere(&self) {
        self.directory_changed();
    }

    /// A session revoked through another node of a cluster: refused here from now on.
    pub fn note_revoked(&self, session_id: &str) {
        self.revoked.extend([session_id.to_string()]);
    }

    /// The user's permissions as of now: the cached copy while the directory is unchanged,
    /// reloaded after any change, so grants and revocations reach live sessions at once.
    /// Borrowed from the connection's cache: the shared `Arc` is the same for every connection
    /// of a user, and counting a reference to it on each request would bounce its cache line
    /// between cores.
    pub async fn current_permissions<'c>(&self, username: &str, cached: &'c mut CachedPermissions) -> Result<&'c Permissions, DataError> {
        let generation = self.generation();
        if cached.generation != generation {
            *cached = CachedPermissions {
                generation,
                permissions: self.user_permissions(username, generation).await?,
            };
        }
        Ok(&cached.permissions)
    }

    /// The user's permissions at directory `generation`, loaded once and shared.
    async fn user_permissions(&self, username: &str, generation: u64) -> Result<Arc<Permissions>, DataError> {
        {
            let cache = self.shared_permissions.lock();
            if cache.0 == generation {
                if let Some(p) = cache.1.get(username) {
                    return Ok(p.clone());
                }
            }
        }
        let permissions = Arc::new(self.permissions_of(username).await?);
        let mut cache = self.shared_permissions.lock();
        // Only a load that no change overtook may be shared.
        if self.generation() == generation {
            if cache.0 != generation {
                *cache = (generation, Default::default());
            }
            cache.1.insert(username.to_string(), permissions.clone());
        }
        Ok(permissions)
    }

    /// A cache that starts from the permissions loaded at login.
    pub fn cache_permissions(&self, user: &AuthenticatedUser) -> CachedPermissions {
        CachedPermissions {
            generation: user.generation,
            permissions: user.permissions.clone(),
        }
    }

    /// The names of the groups a user is linked to, in path order.
    pub async fn groups_of(&self, username: &str) -> Result<Vec<String>, DataError> {
        let links = self
            .data
            .store()
            .find(&Pattern::new(&format!("{USER_PREFIX}{username}/_USER_GROUP/*")))
            .await?;
        Ok(links
            .iter()
            .filter_map(|l| match SecurityPath::parse(&l.path) {
                Some(SecurityPath::Membership { user, group }) if user == username => Some(group.to_string()),
                _ => None,
            })
            .collect())
    }

    /// The union of the permissions of every group the user belongs to.
    pub async fn permissions_of(&self, username: &str) -> Result<Permissions, DataError> {
        let mut perms = Permissions::default();
        if self.data.get_record(&user_path(username)).await?.is_none() {
            return Ok(perms);
        }
        for group in self.groups_of(username).await? {
            if let Some(rec) = self.data.get_record(&group_path(&group)).await? {
                if let Some(p) = rec.data.get("permissions").and_then(Value::as_object) {
                    perms.add_group(p);
                }
            }
        }
        Ok(perms)
    }
}

#[cfg(test)]
mod digest_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStore;

    async fn security(cfg: &SecurityConfig) -> Security {
        let data = Arc::new(DataService::new(Arc::new(MemoryStore::new())));
        let s = Security::new(data, cfg);
        s.bootstrap(cfg).await.unwrap();
        s
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: Some(u.into()),
            password: Some(p.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn admin_and_config_users_log_in() {
        let cfg = SecurityConfig {
            admin_password: Some("secret".into()),
            users: vec![
                UserSpec {
                    username: "u".into(),
                    password: Some("pu".into()),
                    groups: vec!["g".into()],
                    ..Default::default()
                },
                UserSpec {
                    username: "u1".into(),
                    password: Some("pu1".into()),
                    groups: vec![],
                    ..Default::default()
                },
            ],
            groups: vec![GroupSpec {
                name: "g".into(),
                permissions: json!({"/g/*": {"actions": ["get"]}}).as_object().unwrap().clone(),
                custom_data: None,
            }],
            token_secret: None,
            ..Default::default()
        };
        let s = security(&cfg).await;
        let admin = s.authenticate(&creds(ADMIN, "secret")).await.unwrap();
        assert!(admin.permissions.allows("/anything", "set"));
        assert_eq!(
            s.authenticate(&creds(ADMIN, "happn")).await.unwrap_err(),
            AccessError::InvalidCredentials
        );
        let u = s.authenticate(&creds("u", "pu")).await.unwrap();
        assert_eq!(u.username, "u", "exact lookup, not the prefix match of the original");
        assert!(u.permissions.allows("/g/1", "get") && !u.permissions.allows("/g/1", "set"));
        assert_eq!(
            s.authenticate(&creds("nobody", "x")).await.unwrap_err(),
            AccessError::InvalidCredentials
        );
        assert_eq!(
            s.authenticate(&Credentials::default()).await.unwrap_err(),
            AccessError::InvalidCredentials
        );

        let token = s.issue_token(&TokenClaims {
            id: "x".into(),
            username: "u".into(),
            timestamp: 1,
            ..Default::default()
        });
        let by_token = s
            .authenticate(&Credentials {
                token: Some(token),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_token.username, "u");
        assert!(s
            .authenticate(&Credentials {
                token: Some("bad".into()),
                ..Default::default()
            })
            .await
            .is_err());
        s.revoke("x").await.unwrap();
        let revoked = s.issue_token(&TokenClaims {
            id: "x".into(),
            username: "u".into(),
            timestamp: 1,
            ..Default::default()
        });
        assert!(s
            .authenticate(&Credentials {
                token: Some(revoked),
                ..Default::default()
            })
            .await
            .is_err());
    }

    #[tokio::test]
    async fn lockout_after_failed_attempts() {
        let cfg = SecurityConfig {
            lockout: LockoutConfig {
                enabled: true,
                attempts: 2,
                retry_interval_ms: 1500,
            },
            ..Default::default()
        };
        let s = security(&cfg).await;
        assert_eq!(
            s.authenticate(&creds(ADMIN, "bad")).await.unwrap_err(),
            AccessError::InvalidCredentials
        );
        assert_eq!(
            s.authenticate(&creds(ADMIN, "bad")).await.unwrap_err(),
            AccessError::InvalidCredentials
        );
        assert_eq!(s.authenticate(&creds(ADMIN, "happn")).await.unwrap_err(), AccessError::LockedOut);
        tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
        assert!(s.authenticate(&creds(ADMIN, "happn")).await.is_ok(), "the lock lapses");
    }

    #[tokio::test]
    async fn token_uses_are_remembered_only_when_a_policy_needs_them() {
        let cfg = SecurityConfig {
            profiles: Profiles::parse(&json!([
                {"name": "counted", "session": {"user.username": "u", "type": 0}, "policy": {"usage_limit": 2, "ttl": 1000}},
            ]))
            .unwrap(),
            users: vec![UserSpec {
                username: "u".into(),
                password: Some("p".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = security(&cfg).await;
        let token = |id: &str, user: &str, profile: &str, timestamp: i64| {
            s.issue_token(&TokenClaims {
                id: id.into(),
                username: user.into(),
                timestamp,
                profile: Some(profile.into()),
            })
        };
        let by_token = |t: String| Credentials {
            token: Some(t),
            ..Default::default()
        };
        let now = now_millis();
        // The default stateless policy limits nothing: no entry is kept.
        assert!(s.authenticate(&by_token(token("a", ADMIN, "default-stateless", now))).await.is_ok());
        assert!(s.token_activity.lock().is_empty());
        // A usage limit is counted per token session, and enforced.
        let counted = token("b", "u", "counted", now);
        assert!(s.authenticate(&by_token(counted.clone())).await.is_ok());
        assert!(s.authenticate(&by_token(counted.clone())).await.is_ok());
        assert!(s.authenticate(&by_token(counted)).await.is_err(), "the third use is over the limit");
        // Entries of tokens past their time to live are forgotten once the map is large.
        {
            let mut a = s.token_activity.lock();
            for i in 0..TOKEN_ACTIVITY_PRUNE_AT {
                a.insert(format!("old{i}"), (Activity::new(0), Some(1)));
            }
        }
        assert!(s.authenticate(&by_token(token("c", "u", "counted", now))).await.is_ok());
        let a = s.token_activity.lock();
        assert!(a.len() <= 3 && a.contains_key("b") && a.contains_key("c"), "{}", a.len());
    }

    #[tokio::test]
    async fn revocation_is_seen_by_the_next_check() {
        let s = security(&SecurityConfig::default()).await;
        assert!(!s.is_revoked("a"), "nothing revoked: the lock-free path answers");
        s.revoke("a").await.unwrap();
        assert!(s.is_revoked("a"));
        assert!(!s.is_revoked("b") && !s.is_revoked(""), "only the revoked session");
        s.revoke("a").await.unwrap();
        s.revoke("c").await.unwrap();
        assert_eq!(
            s.revoked.count.load(Ordering::Acquire),
            2,
            "the count follows the set, not the calls"
        );
        assert!(s.is_revoked("a") && s.is_revoked("c") && !s.is_revoked("b"));
    }

    #[tokio::test]
    async fn revocations_are_reloaded_at_start() {
        let s = security(&SecurityConfig::default()).await;
        s.revoke("kept").await.unwrap();
        let reloaded = Security::new(s.data.clone(), &SecurityConfig::default());
        assert!(!reloaded.is_revoked("kept"), "not loaded yet");
        reloaded.bootstrap(&SecurityConfig::default()).await.unwrap();
        assert!(reloaded.is_revoked("kept") && !reloaded.is_revoked("other"));
    }

    #[test]
    fn names() {
        assert!(validate_name("ok_name").is_ok());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("x_SYSTEM").is_err());
    }
}
