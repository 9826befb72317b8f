//! Users, groups and logins. Security records live in the data store at the original's paths
//! (`/_SYSTEM/_SECURITY/_USER/<name>`, `/_SYSTEM/_SECURITY/_GROUP/<name>`, membership at
//! `/_SYSTEM/_SECURITY/_USER/<name>/_USER_GROUP/<group>`), so any storage backend keeps them.

pub mod crypto;
pub mod nonce;
mod password;
mod permissions;
mod token;

pub use nonce::{NonceError, DEFAULT_NONCE_TTL};
pub use password::{hash_password, verify_password};
pub use permissions::Permissions;
pub use token::{TokenClaims, TokenSigner};

use crate::data::DataService;
use crate::error::{AccessError, DataError};
use crate::path::Pattern;
use crate::record::{now_millis, Record};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const SECURITY_PREFIX: &str = "/_SYSTEM/_SECURITY/";
pub const USER_PREFIX: &str = "/_SYSTEM/_SECURITY/_USER/";
pub const GROUP_PREFIX: &str = "/_SYSTEM/_SECURITY/_GROUP/";
pub const ADMIN: &str = "_ADMIN";
pub const REVOKED_PREFIX: &str = "/_SYSTEM/_CACHE/cache_revoked_sessions/";
pub const DEFAULT_ADMIN_PASSWORD: &str = "happn";

#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    pub username: String,
    pub password: Option<String>,
    pub groups: Vec<String>,
    pub custom_data: Option<Value>,
    /// base64 secp256k1 public key for key-pair (digest) login.
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    pub name: String,
    pub permissions: Map<String, Value>,
    pub custom_data: Option<Value>,
}

/// Account lockout: after `attempts` failed logins a username is refused, even with the right
/// password, until `retry_interval_ms` pass without another failure (the original's defaults:
/// enabled, 4 attempts, 10 minutes).
#[derive(Debug, Clone)]
pub struct LockoutConfig {
    pub enabled: bool,
    pub attempts: u32,
    pub retry_interval_ms: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            enabled: true,
            attempts: 4,
            retry_interval_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    pub lockout: LockoutConfig,
    pub admin_password: Option<String>,
    pub users: Vec<UserSpec>,
    pub groups: Vec<GroupSpec>,
    /// HS256 secret for session tokens; random per start when absent.
    pub token_secret: Option<String>,
    /// How long a `request-nonce` nonce stays valid (`defaultNonceTTL`; 60 s when absent).
    pub nonce_ttl: Option<std::time::Duration>,
}

/// A user who has proven who they are.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub username: String,
    pub permissions: Arc<Permissions>,
    /// The session's public key: the one sent with the credentials, else the user's stored one.
    /// A session with a public key gets a payload-encryption secret.
    pub public_key: Option<String>,
}

/// What a login request carries (`data` of the login message).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// Key-pair login: base64 DER signature of the nonce issued for `public_key`.
    pub digest: Option<String>,
    pub public_key: Option<String>,
    /// `"password"` or `"digest"`, as the client labels it; informational (a digest decides).
    pub login_type: Option<String>,
}

impl Credentials {
    pub fn from_value(data: &Value) -> Credentials {
        // Empty strings count as absent, as the original's truthiness checks do.
        let s = |k: &str| data.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        Credentials {
            username: s("username"),
            password: s("password"),
            token: s("token"),
            digest: s("digest"),
            public_key: s("publicKey"),
            login_type: s("loginType"),
        }
    }
}

pub struct Security {
    data: Arc<DataService>,
    signer: TokenSigner,
    lockout: LockoutConfig,
    /// username → (failed attempts, time of the last failure). In memory, as the original.
    failures: parking_lot::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
    nonces: nonce::NonceCache,
}

fn user_path(name: &str) -> String {
    format!("{USER_PREFIX}{name}")
}

fn group_path(name: &str) -> String {
    format!("{GROUP_PREFIX}{name}")
}

fn link_path(user: &str, group: &str) -> String {
    format!("{USER_PREFIX}{user}/_USER_GROUP/{group}")
}

/// Names may not contain `/` or the reserved words the original refuses.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.contains('/') || name.contains('*') {
        return Err(format!("invalid name {name:?}: '/' and '*' are not allowed"));
    }
    for reserved in ["_SYSTEM", "_GROUP", "_PERMISSION", "_USER_GROUP"] {
        if name.contains(reserved) {
            return Err(format!("invalid name {name:?}: contains the reserved word {reserved}"));
        }
    }
    Ok(())
}

/// Run a slow hash off the async threads so logins never stall other connections. At most one
/// hash per core runs at a time: a burst of logins queues here instead of spawning a blocking
/// thread per login (each with its own stack) and starving request handling of CPU.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::sync::Semaphore::new(cores)
    });
    let _permit = permits.acquire().await.expect("the hashing semaphore is never closed");
    tokio::task::spawn_blocking(f).await.expect("hashing task panicked")
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
            signer: TokenSigner::new(&secret),
            lockout: config.lockout.clone(),
            failures: Default::default(),
            nonces: nonce::NonceCache::new(config.nonce_ttl.unwrap_or(DEFAULT_NONCE_TTL)),
        }
    }

    /// Create the `_ADMIN` user and group when missing (the configured password applies only
    /// then, as in the original), and upsert the users and groups of the config file.
    pub async fn bootstrap(&self, config: &SecurityConfig) -> Result<(), DataError> {
        let now = now_millis();
        let admin_group = json!({
            "custom_data": {"description": "the default administration group for happn"},
            "name": ADMIN,
            "permissions": {"*": {"actions": ["*"]}}
        });
        self.put(&group_path(ADMIN), admin_group, now).await?;
        if self.data.get_record(&user_path(ADMIN)).await?.is_none() {
            let pw = config.admin_password.clone().unwrap_or_else(|| DEFAULT_ADMIN_PASSWORD.to_string());
            let hash = blocking(move || hash_password(&pw)).await;
            self.put(
                &user_path(ADMIN),
                json!({"custom_data": {}, "username": ADMIN, "password": hash}),
                now,
            )
            .await?;
        }
        self.put(&link_path(ADMIN, ADMIN), json!({}), now).await?;
        for g in &config.groups {
            validate_name(&g.name).map_err(DataError::BadRequest)?;
            let mut rec = json!({"name": g.name, "permissions": g.permissions});
            if let Some(c) = &g.custom_data {
                rec["custom_data"] = c.clone();
            }
            self.put(&group_path(&g.name), rec, now).await?;
        }
        for u in &config.users {
            validate_name(&u.username).map_err(DataError::BadRequest)?;
            let mut rec = json!({"username": u.username, "custom_data": u.custom_data.clone().unwrap_or(json!({}))});
            if let Some(pk) = &u.public_key {
                rec["publicKey"] = Value::String(pk.clone());
            }
            match &u.password {
                Some(pw) => {
                    let pw = pw.clone();
                    rec["password"] = Value::String(blocking(move || hash_password(&pw)).await);
                }
                None => {
                    if let Some(old) = self.data.get_record(&user_path(&u.username)).await? {
                        if let Some(h) = old.data.get("password") {
                            rec["password"] = h.clone();
                        }
                    }
                }
            }
            self.put(&user_path(&u.username), rec, now).await?;
            for g in &u.groups {
                self.put(&link_path(&u.username, g), json!({}), now).await?;
            }
        }
        Ok(())
    }

    async fn put(&self, path: &str, data: Value, now: i64) -> Result<(), DataError> {
        let created = self.data.get_record(path).await?.map(|r| r.created).unwrap_or(now);
        let Value::Object(data) = data else {
            unreachable!("security records are objects")
        };
        self.data
            .put_record(Record {
                path: path.to_string(),
                data,
                created,
                modified: now,
                tag: None,
            })
            .await
    }

    /// Password, token or key-pair (digest) login, with account lockout. Unknown users, wrong
    /// passwords, bad tokens and bad digests are all `Invalid credentials`; failures count against
    /// the username given. A digest login without a live nonce is `NonceExpired` (not counted).
    pub async fn authenticate(&self, creds: &Credentials) -> Result<AuthenticatedUser, AccessError> {
        let counted = creds
            .username
            .clone()
            .filter(|_| self.lockout.enabled && (creds.password.is_some() || creds.token.is_some() || creds.digest.is_some()));
        if let Some(name) = &counted {
            if self.locked_out(name) {
                return Err(AccessError::LockedOut);
            }
        }
        let result = self.check_credentials(creds).await;
        if let (Err(AccessError::InvalidCredentials), Some(name)) = (&result, &counted) {
            let mut failures = self.failures.lock();
            let now = std::time::Instant::now();
            let window = std::time::Duration::from_millis(self.lockout.retry_interval_ms);
            let entry = failures.entry(name.clone()).or_insert((0, now));
            // The TTL restarts on every failure; an expired count starts again from zero.
            if now.duration_since(entry.1) > window {
                entry.0 = 0;
            }
            *entry = (entry.0 + 1, now);
        }
        result
    }

    fn locked_out(&self, username: &str) -> bool {
        let mut failures = self.failures.lock();
        let window = std::time::Duration::from_millis(self.lockout.retry_interval_ms);
        match failures.get(username) {
            Some((n, at)) if at.elapsed() <= window => *n >= self.lockout.attempts,
            Some(_) => {
                failures.remove(username);
                false
            }
            None => false,
        }
    }

    async fn check_credentials(&self, creds: &Credentials) -> Result<AuthenticatedUser, AccessError> {
        let username = if let Some(token) = &creds.token {
            let claims = self.verify_token(token).await.ok_or(AccessError::InvalidCredentials)?;
            claims.username
        } else if let (Some(username), Some(digest)) = (&creds.username, &creds.digest) {
            self.check_digest(username, digest, creds.public_key.as_deref()).await?;
            username.clone()
        } else {
            let (Some(username), Some(password)) = (&creds.username, &creds.password) else {
                return Err(AccessError::InvalidCredentials);
            };
            let user = self.load_user(username).await?.ok_or(AccessError::InvalidCredentials)?;
            let hash = user.data.get("password").and_then(Value::as_str).unwrap_or("").to_string();
            let password = password.clone();
            if !blocking(move || verify_password(&password, &hash)).await {
                return Err(AccessError::InvalidCredentials);
            }
            username.clone()
        };
        // Token logins still need the user to exist (a deleted user's tokens die with it).
        let Some(user) = self.load_user(&username).await? else {
            return Err(AccessError::InvalidCredentials);
        };
        let public_key = creds
            .public_key
            .clone()
            .or_else(|| user.data.get("publicKey").and_then(Value::as_str).map(str::to_string));
        let permissions = Arc::new(self.permissions_of(&username).await.map_err(|_| AccessError::InvalidCredentials)?);
        Ok(AuthenticatedUser {
            username,
            permissions,
            public_key,
        })
    }

    /// Key-pair login: the user's stored public key must be the one presented, a nonce must have
    /// been issued to that key within the TTL, and the digest must be that key's signature of it.
    async fn check_digest(&self, username: &str, digest: &str, public_key: Option<&str>) -> Result<(), AccessError> {
        let user = self.load_user(username).await?.ok_or(AccessError::InvalidCredentials)?;
        let stored = user.data.get("publicKey").and_then(Value::as_str);
        let Some(public_key) = public_key.filter(|pk| Some(*pk) == stored) else {
            return Err(AccessError::InvalidCredentials);
        };
        let nonce = self.nonces.current(public_key).ok_or(AccessError::NonceExpired)?;
        let key = crypto::parse_public_key(public_key).map_err(|_| AccessError::InvalidCredentials)?;
        if crypto::verify_digest(&nonce, digest, &key) {
            Ok(())
        } else {
            Err(AccessError::InvalidCredentials)
        }
    }

    /// `request-nonce` (and its HTTP twin `/auth/request-nonce`): a fresh nonce for `public_key`
    /// (base64 secp256k1 point), valid for `defaultNonceTTL` and reusable until then; asking again
    /// replaces it. The client signs it and logs in with `{username, publicKey, digest}`.
    /// An empty key is [`NonceError::MissingPublicKey`]; allowed in insecure mode too.
    pub fn request_nonce(&self, public_key: &str) -> Result<String, NonceError> {
        if public_key.is_empty() {
            return Err(NonceError::MissingPublicKey);
        }
        crypto::parse_public_key(public_key).map_err(NonceError::InvalidPublicKey)?;
        Ok(self.nonces.issue(public_key))
    }

    /// Exact lookup by name (the original's prefix lookup picked the wrong user).
    async fn load_user(&self, username: &str) -> Result<Option<Record>, AccessError> {
        if validate_name(username).is_err() && username != ADMIN {
            return Ok(None);
        }
        self.data
            .get_record(&user_path(username))
            .await
            .map_err(|_| AccessError::InvalidCredentials)
    }

    /// The union of the permissions of every group the user belongs to.
    pub async fn permissions_of(&self, username: &str) -> Result<Permissions, DataError> {
        let links = self
            .data
            .store()
            .find(&Pattern::new(&format!("{USER_PREFIX}{username}/_USER_GROUP/*")))
            .await?;
        let mut perms = Permissions::default();
        for link in links {
            let Some(group) = link.path.rsplit('/').next() else {
                continue;
            };
            if let Some(rec) = self.data.get_record(&group_path(group)).await? {
                if let Some(p) = rec.data.get("permissions").and_then(Value::as_object) {
                    perms.add_group(p);
                }
            }
        }
        Ok(perms)
    }

    pub fn issue_token(&self, claims: &TokenClaims) -> String {
        self.signer.sign(claims)
    }

    /// Verify a token's signature and that its session was not revoked.
    pub async fn verify_token(&self, token: &str) -> Option<TokenClaims> {
        let claims = self.signer.verify(token)?;
        match self.is_revoked(&claims.id).await {
            Ok(false) => Some(claims),
            _ => None,
        }
    }

    /// `revoke-session`: the session (and every token minted for it) is refused from now on.
    /// Kept in the store at the original's path so it survives wherever the data does.
    pub async fn revoke(&self, session_id: &str) -> Result<(), DataError> {
        let data = json!({"data": {"reason": "CLIENT", "id": session_id}, "key": session_id});
        self.put(&format!("{REVOKED_PREFIX}{session_id}"), data, now_millis()).await
    }

    pub async fn is_revoked(&self, session_id: &str) -> Result<bool, DataError> {
        Ok(self.data.get_record(&format!("{REVOKED_PREFIX}{session_id}")).await?.is_some())
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

    #[test]
    fn names() {
        assert!(validate_name("ok_name").is_ok());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("x_SYSTEM").is_err());
    }
}
