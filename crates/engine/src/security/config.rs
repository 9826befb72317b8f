//! What configures security (the config file's users, groups, lockout and secrets) and what a
//! login request carries.

use super::policy::Profiles;
use serde_json::{Map, Value};

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
