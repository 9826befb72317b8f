//! Logins (password, token, key-pair digest) and account lockout.

use super::*;

/// Run a slow hash off the async threads so logins never stall other connections. At most one
/// hash per core runs at a time: a burst of logins queues here instead of spawning a blocking
/// thread per login (each with its own stack) and starving request handling of CPU.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::sync::Semaphore::new(cores)
    });
    let _permit = permits.acquire().await.expect("the hashing semaphore is never closed");
    tokio::task::spawn_blocking(f).await.expect("hashing task panicked")
}

impl Security {
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
    pub(super) async fn load_user(&self, username: &str) -> Result<Option<Record>, AccessError> {
        if validate_name(username).is_err() && username != ADMIN {
            return Ok(None);
        }
        self.data
            .get_record(&user_path(username))
            .await
            .map_err(|_| AccessError::InvalidCredentials)
    }
}
