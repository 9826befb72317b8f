//! Users, groups and logins. Security records live in the data store at the original's paths
//! (`/_SYSTEM/_SECURITY/_USER/<name>`, `/_SYSTEM/_SECURITY/_GROUP/<name>`, membership at
//! `/_SYSTEM/_SECURITY/_USER/<name>/_USER_GROUP/<group>`), so any storage backend keeps them.

pub mod crypto;
mod directory;
mod http_access;
pub mod nonce;
mod password;
mod permissions;
pub mod policy;
mod token;

pub use directory::SecurityPath;
pub use http_access::{http_permission_path, HttpDenied, HttpGrant, HTTP_PREFIX};
pub use nonce::{NonceError, DEFAULT_NONCE_TTL};
pub use password::{hash_password, verify_password};
pub use permissions::Permissions;
pub use policy::{Activity, Policy, PolicyDenial, Profile, Profiles};
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
    /// HS256 secret for session tokens; generated once and persisted when absent.
    pub token_secret: Option<String>,
    /// Session profiles (`security.config.profiles`), the defaults appended.
    pub profiles: Profiles,
    /// How long a `request-nonce` nonce stays valid (`defaultNonceTTL`; 60 s when absent).
    pub nonce_ttl: Option<std::time::Duration>,
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
    signer: parking_lot::RwLock<Arc<TokenSigner>>,
    lockout: LockoutConfig,
    profiles: Profiles,
    /// username → (failed attempts, time of the last failure). In memory, as the original.
    failures: parking_lot::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
    /// Bumped on every change to users, groups or memberships.
    generation: std::sync::atomic::AtomicU64,
    /// Revoked session ids, loaded from the store at start and kept in step with it, so the
    /// check on every request is a memory lookup.
    revoked: RevokedSessions,
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

    /// Create the `_ADMIN` user and group when missing (the configured password applies only
    /// then, as in the original), and upsert the users and groups of the config file.
    pub async fn bootstrap(&self, config: &SecurityConfig) -> Result<(), DataError> {
        let now = now_millis();
        if config.token_secret.is_none() {
            let secret = match self
                .data
                .get_record(TOKEN_SECRET_PATH)
                .await?
                .and_then(|r| r.data.get("value").and_then(Value::as_str).map(str::to_string))
            {
                Some(s) => s,
                None => {
                    let mut b = [0u8; 32];
                    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
                    let s = hex::encode(b);
                    self.put(TOKEN_SECRET_PATH, json!({"value": s}), now).await?;
                    s
                }
            };
            *self.signer.write() = Arc::new(TokenSigner::new(secret.as_bytes()));
        }
        let revoked = self.data.store().find(&Pattern::new(&format!("{REVOKED_PREFIX}*"))).await?;
        self.revoked.extend(
            revoked
                .iter()
                .filter_map(|r| r.path.strip_prefix(REVOKED_PREFIX).map(str::to_string)),
        );
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
        self.directory_changed();
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
                data: data.into(),
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
            // A token login is the token's (stateless) session authorising `login`: signature,
            // revocation, and the policy it was issued under.
            let claims = self.verify_token(token).ok_or(AccessError::InvalidCredentials)?;
            self.check_token_policy(&claims, None)
                .map_err(|_| AccessError::InvalidCredentials)?;
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
        self.user_by_name(&username, creds.public_key.as_deref()).await
    }

    /// The user as a session sees it: groups, permissions, custom data and public key (the one
    /// sent with the credentials, else the stored one). Token logins need the user to still
    /// exist (a deleted user's tokens die with it).
    async fn user_by_name(&self, username: &str, presented_key: Option<&str>) -> Result<AuthenticatedUser, AccessError> {
        let generation = self.generation();
        let record = self.load_user(username).await?.ok_or(AccessError::InvalidCredentials)?;
        let groups = self.groups_of(username).await.map_err(|_| AccessError::InvalidCredentials)?;
        let permissions = self
            .user_permissions(username, generation)
            .await
            .map_err(|_| AccessError::InvalidCredentials)?;
        let public_key = presented_key
            .map(str::to_string)
            .or_else(|| record.data.get("publicKey").and_then(Value::as_str).map(str::to_string));
        Ok(AuthenticatedUser {
            username: username.to_string(),
            permissions,
            groups,
            custom_data: record.data.get("custom_data").cloned().unwrap_or_else(|| json!({})),
            generation,
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
    fn check_token_policy(&self, claims: &TokenClaims, permission: Option<(&str, &str)>) -> Result<(), PolicyDenial> {
        let profile = self.token_policy(claims);
        let policy = &profile.policy;
        let now = now_millis();
        let check_permission = || match (&policy.permissions, permission) {
            (Some(perms), Some((path, action))) if !perms.allows(path, action) => Err(PolicyDenial::PermissionsLimited),
            _ => Ok(()),
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
struct RevokedSessions {
    ids: parking_lot::RwLock<ahash::AHashSet<String>>,
    count: AtomicUsize,
}

impl RevokedSessions {
    fn extend(&self, ids: impl IntoIterator<Item = String>) {
        let mut set = self.ids.write();
        set.extend(ids);
        // Stored before the write lock is released (and before `revoke` returns), so a check
        // that starts after that sees a non-zero count and looks the id up under the lock.
        self.count.store(set.len(), Ordering::Release);
    }

    fn contains(&self, session_id: &str) -> bool {
        self.count.load(Ordering::Acquire) != 0 && self.ids.read().contains(session_id)
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
