//! Client configuration: where to connect, who to log in as, and the timers (heartbeat, request
//! timeout, reconnect backoff). Defaults are the JS client's.

use crate::error::{Error, Result};
use rand::Rng;
use serde_json::{Map, Value};
use std::time::Duration;

/// Default server port of happn.
pub const DEFAULT_PORT: u16 = 55000;

/// How the client proves who it is in the `login` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// Username and password.
    Password {
        /// The happn user name.
        username: String,
        /// The user's password.
        password: String,
    },
    /// A session token from an earlier login (the `token` of a [`Session`](crate::Session)).
    Token(String),
    /// No credentials: for servers running without security (`secure: false`), which accept
    /// any login.
    #[default]
    Anonymous,
}

impl Credentials {
    /// `Credentials::Password` from anything string-like.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Password {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// When and how often to reconnect after losing the socket.
///
/// Attempt 1 waits exactly `min_delay`; attempt *n* waits
/// `min(max_delay, min_delay · factor^(n−1) · (1 + random))`, as Primus' backoff does.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Reconnect at all. When false, losing the socket ends the client.
    pub enabled: bool,
    /// Delay before the first attempt (500 ms).
    pub min_delay: Duration,
    /// Upper bound of any delay (180 s).
    pub max_delay: Duration,
    /// Growth factor per attempt (2).
    pub factor: f64,
    /// Give up (and end the client) after this many failed attempts; `None` = never give up.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(180),
            factor: 2.0,
            max_attempts: None,
        }
    }
}

/// Everything [`Client::connect`](crate::Client::connect) needs.
///
/// ```
/// use happn_client::{ClientConfig, Credentials};
/// let config = ClientConfig::new("127.0.0.1", 55000)
///     .with_credentials(Credentials::password("_ADMIN", "happn"));
/// assert_eq!(config.port, 55000);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// A full server URL (`ws://`, `wss://`, `http://` or `https://`, host and port). When set,
    /// it wins over `host`/`port`/`secure`. Its path is ignored (the socket is always on
    /// `/primus`); its query parameters are kept.
    pub url: Option<String>,
    /// Server host (default `127.0.0.1`).
    pub host: String,
    /// Server port (default 55000).
    pub port: u16,
    /// Connect with `wss://` (TLS) instead of `ws://`. Needs the `tls` cargo feature.
    pub secure: bool,
    /// Login credentials.
    pub credentials: Credentials,
    /// The `info` object sent with the login (the server echoes it in the session);
    /// `_browser: false` is added when absent, as the node client does.
    pub info: Map<String, Value>,
    /// Heartbeat: send `"primus::ping::<now>"` this often (25 s). `None` (or zero) turns
    /// pinging off, and tells the server (`ping=false`) not to expect pings.
    pub ping_interval: Option<Duration>,
    /// Heartbeat: a ping unanswered for this long (10 s) means the socket is dead.
    pub pong_timeout: Duration,
    /// How long a request waits for its reply (20 s).
    pub request_timeout: Duration,
    /// How long opening the websocket may take, per attempt (10 s).
    pub connect_timeout: Duration,
    /// Reconnect behaviour.
    pub reconnect: ReconnectPolicy,
    /// A custom rustls configuration for `wss://` (for private roots or client certificates).
    /// `None` uses the webpki roots.
    #[cfg(feature = "tls")]
    pub tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: None,
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            secure: false,
            credentials: Credentials::Anonymous,
            info: Map::new(),
            ping_interval: Some(Duration::from_millis(25_000)),
            pong_timeout: Duration::from_millis(10_000),
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            #[cfg(feature = "tls")]
            tls_config: None,
        }
    }
}

impl ClientConfig {
    /// A config for `ws://host:port` with the default timers and anonymous login.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ClientConfig {
            host: host.into(),
            port,
            ..Default::default()
        }
    }

    /// A config for a full URL, e.g. `wss://happn.example.com:443`.
    pub fn from_url(url: impl Into<String>) -> Self {
        ClientConfig {
            url: Some(url.into()),
            ..Default::default()
        }
    }

    /// Set the credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Log in with a username and password.
    pub fn with_password(self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.with_credentials(Credentials::password(username, password))
    }

    /// Log in with a session token.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.with_credentials(Credentials::Token(token.into()))
    }

    /// Set the login `info` object.
    pub fn with_info(mut self, info: Map<String, Value>) -> Self {
        self.info = info;
        self
    }

    /// Set the heartbeat timers (`None` turns pinging off).
    pub fn with_heartbeat(mut self, ping_interval: Option<Duration>, pong_timeout: Duration) -> Self {
        self.ping_interval = ping_interval;
        self.pong_timeout = pong_timeout;
        self
    }

    /// Set the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Set the reconnect policy.
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The websocket URL of one connection attempt:
    /// `ws(s)://host:port/primus?_primuscb=<x>&ping=<ms>&pong=<ms>`, with a fresh cache-buster
    /// each time (Primus does the same; the server ignores it).
    pub(crate) fn socket_url(&self) -> Result<String> {
        let (tls, authority, query) = self.endpoint()?;
        let scheme = if tls { "wss" } else { "ws" };
        let mut url = format!("{scheme}://{authority}/primus?");
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push_str(&q);
            url.push('&');
        }
        let ping = match self.ping_interval {
            Some(p) if !p.is_zero() => p.as_millis().to_string(),
            _ => "false".into(),
        };
        url.push_str(&format!(
            "_primuscb={}&ping={ping}&pong={}",
            cache_buster(),
            self.pong_timeout.as_millis()
        ));
        Ok(url)
    }

    /// `(tls, authority, user query)` from `url`, or from host/port/secure.
    fn endpoint(&self) -> Result<(bool, String, Option<String>)> {
        let Some(url) = &self.url else {
            if self.host.is_empty() {
                return Err(Error::InvalidUrl("empty host".into()));
            }
            // Bare IPv6 addresses need brackets in a URL.
            let host = if self.host.contains(':') && !self.host.starts_with('[') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            };
            return Ok((self.secure, format!("{host}:{}", self.port), None));
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::InvalidUrl(format!("{url}: missing scheme")))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            other => return Err(Error::InvalidUrl(format!("{url}: unsupported scheme {other}"))),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() {
            return Err(Error::InvalidUrl(format!("{url}: missing host")));
        }
        let query = rest[end..].split_once('?').map(|(_, q)| q.to_string());
        Ok((tls, authority.to_string(), query))
    }

    /// The login `data` for a set of credentials, in the field order the JS client uses.
    pub(crate) fn login_data(&self, credentials: &Credentials) -> Value {
        let mut info = self.info.clone();
        info.entry("_browser").or_insert(Value::Bool(false));
        let mut data = Map::new();
        match credentials {
            Credentials::Password { username, password } => {
                data.insert("username".into(), username.clone().into());
                data.insert("info".into(), Value::Object(info));
                data.insert("password".into(), password.clone().into());
            }
            Credentials::Token(token) => {
                data.insert("token".into(), token.clone().into());
                data.insert("info".into(), Value::Object(info));
            }
            Credentials::Anonymous => {
                data.insert("info".into(), Value::Object(info));
            }
        }
        Value::Object(data)
    }
}

/// About 7 url-safe characters, like the `yeast` ids Primus uses.
fn cache_buster() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
    let mut rng = rand::thread_rng();
    (0..7).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_host_and_port() {
        let url = ClientConfig::new("localhost", 1234).socket_url().unwrap();
        assert!(url.starts_with("ws://localhost:1234/primus?_primuscb="), "{url}");
        assert!(url.ends_with("&ping=25000&pong=10000"), "{url}");
        let mut c = ClientConfig::new("::1", 1);
        c.secure = true;
        c.ping_interval = None;
        let url = c.socket_url().unwrap();
        assert!(url.starts_with("wss://[::1]:1/primus?"), "{url}");
        assert!(url.ends_with("&ping=false&pong=10000"), "{url}");
    }

    #[test]
    fn urls_from_url() {
        let url = ClientConfig::from_url("https://h.example:8443/some/path?a=1#frag")
            .socket_url()
            .unwrap();
        assert!(url.starts_with("wss://h.example:8443/primus?a=1&_primuscb="), "{url}");
        let url = ClientConfig::from_url("http://h:1").socket_url().unwrap();
        assert!(url.starts_with("ws://h:1/primus?_primuscb="), "{url}");
        assert!(ClientConfig::from_url("ftp://h").socket_url().is_err());
        assert!(ClientConfig::from_url("h:1").socket_url().is_err());
        assert!(ClientConfig::from_url("ws:///x").socket_url().is_err());
    }

    #[test]
    fn cache_busters_differ() {
        assert_ne!(cache_buster(), cache_buster());
        assert_eq!(cache_buster().len(), 7);
    }

    #[test]
    fn login_data_shapes() {
        let c = ClientConfig::default();
        assert_eq!(
            c.login_data(&Credentials::password("u", "p")).to_string(),
            r#"{"username":"u","info":{"_browser":false},"password":"p"}"#
        );
        assert_eq!(
            c.login_data(&Credentials::Token("t".into())).to_string(),
            r#"{"token":"t","info":{"_browser":false}}"#
        );
        assert_eq!(c.login_data(&Credentials::Anonymous).to_string(), r#"{"info":{"_browser":false}}"#);
    }
}
