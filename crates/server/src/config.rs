//! Server configuration: the original's config keys (a JSON file, `HAPPN_SERVER_CONFIG`, flags),
//! checked for types up front so a wrong value stops the server with a clear message instead of
//! surprising it later. Unknown keys are warned about, not fatal.

pub mod keys;

use happn_engine::security::{GroupSpec, SecurityConfig, UserSpec};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub const DEFAULT_PORT: u16 = 55000;
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// Largest websocket message accepted; the client sends whole values in one frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Outbound bytes queued for one connection before it counts as a slow consumer and is closed.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// The default budget for outbound bytes queued across all connections: a quarter of the
/// memory the server may use (physical memory, or the cgroup's limit when lower), kept between
/// 256 MiB and 16 GiB; 1 GiB where that cannot be read.
pub fn default_total_queue_bytes() -> usize {
    static DEFAULT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *DEFAULT.get_or_init(|| {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let physical = read("/proc/meminfo").and_then(|m| {
            let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
            kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|k| k * 1024)
        });
        let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
            .into_iter()
            .find_map(|p| read(p)?.trim().parse::<u64>().ok());
        match physical.into_iter().chain(cgroup).min() {
            Some(bytes) => (bytes / 4).clamp(256 << 20, 16 << 30) as usize,
            None => 1 << 30,
        }
    })
}

/// Where data lives.
#[derive(Debug, Clone)]
pub struct DataConfig {
    /// The data directory (`--data-dir`, default `./happn-data`).
    pub dir: PathBuf,
    /// No persistence at all (`--memory`).
    pub memory: bool,
    /// File of the default store inside `dir` (the original's `services.data.config.filename`).
    pub file: String,
    /// `durability: "relaxed"`: acknowledge before the fsync (a crash may lose ~100 ms of writes).
    pub relaxed: bool,
    /// The original's `datastores`: path-routed stores.
    pub datastores: Vec<DatastoreSpec>,
    /// `acceptEmptyFile` / `--accept-empty-data-file`: start a new database in a data file of 0
    /// bytes instead of refusing to start (a missing file always becomes a new database).
    pub accept_empty_file: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DatastoreSpec {
    pub name: String,
    pub patterns: Vec<String>,
    pub memory: bool,
    pub file: Option<String>,
    pub is_default: bool,
}

pub const DEFAULT_DATA_DIR: &str = "./happn-data";
pub const DEFAULT_DATA_FILE: &str = "happn.redb";

impl DataConfig {
    /// The binary's default: durable, in `./happn-data`.
    pub fn durable() -> DataConfig {
        DataConfig {
            dir: PathBuf::from(DEFAULT_DATA_DIR),
            memory: false,
            file: DEFAULT_DATA_FILE.into(),
            relaxed: false,
            datastores: Vec::new(),
            accept_empty_file: false,
        }
    }

    /// A file name resolved against the data directory (absolute paths stay as they are).
    pub fn path_of(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data: DataConfig,
    pub port: u16,
    pub host: String,
    pub name: Option<String>,
    pub secure: bool,
    /// `encryptPayloads`: ECIES login and AES-encrypted frames afterwards (needs `secure`).
    pub encrypt_payloads: bool,
    pub max_frame_bytes: usize,
    /// Bytes a connection may have queued for sending before it is closed as a slow consumer.
    pub max_queue_bytes: usize,
    /// Bytes queued for sending across all connections before the largest queues are closed.
    pub max_total_queue_bytes: usize,
    /// Threads serving connections (`threads`): 0 one per core, 1 a single-threaded runtime.
    pub threads: usize,
    pub security: SecurityConfig,
    /// Primus heartbeat: unsolicited pongs allowed before a silent socket is closed (min 2).
    pub allow_skipped_heartbeats: u32,
    /// Primus answers at most one ping per this many ms.
    pub pong_skip_time_ms: u64,
    /// `transport`: plain HTTP or HTTPS/WSS.
    pub transport: crate::tls::Transport,
    /// `middleware.security`: exclusions and the token cookie's name.
    pub http_security: crate::http::guard::SecurityMiddleware,
    /// `static`: a folder served over HTTP (a happn-rs addition).
    pub static_dir: Option<PathBuf>,
    /// `connections`: how many sockets, from where, and how long before a request (happn-rs).
    pub connections: ConnectionLimits,
    /// `cluster` / `--cluster URL`: run as one node of a cluster on PostgreSQL (docs/CLUSTER.md).
    pub cluster: Option<ClusterConfig>,
    /// `limits`: what one session may hold and ask for (happn-rs).
    pub limits: SessionLimits,
    /// `metricsAddr` / `--metrics-addr`: where `/metrics` is served (happn-rs).
    pub metrics: MetricsListen,
}

/// `cluster`: `url` (PostgreSQL, required), `schema` (default `public`), `poolSize` (8),
/// `advertise` (the URL clients reach this node at, shown in `cluster status`; default
/// `ws://host:port`), `retention` (ms or a duration; events kept at least this long for a node
/// that reconnects, default 10 min), `maxEvents` (2,000,000). The node's name is `name`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub url: String,
    pub schema: String,
    pub pool_size: usize,
    pub advertise: Option<String>,
    pub retention: std::time::Duration,
    pub max_events: i64,
}

impl ClusterConfig {
    pub fn new(url: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            url: url.into(),
            schema: "public".into(),
            pool_size: 8,
            advertise: None,
            retention: std::time::Duration::from_secs(600),
            max_events: 2_000_000,
        }
    }
}

/// Subscriptions one session may hold by default: far above what a client watching its own
/// devices needs, far below what would make one session a noticeable share of the registry.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 10_000;

/// `limits`: `maxSubscriptions` (per session; default 10,000; 0 = none), `requestsPerSecond`
/// (per session, a token bucket; default 0 = no limit, as a bulk loader legitimately sends tens
/// of thousands a second) and `requestBurst` (the bucket's size; default one second's worth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionLimits {
    pub max_subscriptions: usize,
    pub requests_per_second: f64,
    pub request_burst: f64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            requests_per_second: 0.0,
            request_burst: 0.0,
        }
    }
}

/// The default metrics address of a secure server: loopback only, so the numbers (which name no
/// user but do show activity) are not public where the data is not.
pub const DEFAULT_SECURE_METRICS_ADDR: &str = "127.0.0.1:9100";

/// Where `/metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MetricsListen {
    /// Insecure servers: on the main port. Secure servers: on [`DEFAULT_SECURE_METRICS_ADDR`],
    /// and a failure to bind it is only a warning (another server on the host may hold it).
    #[default]
    Default,
    /// A listener of its own on this address; failing to bind it stops the start.
    Addr(String),
    /// Not served (`metricsAddr: false`, `--metrics-addr off`).
    Off,
}

impl MetricsListen {
    /// `--metrics-addr`: an address, or `off`.
    pub fn from_flag(v: &str) -> MetricsListen {
        if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("false") {
            MetricsListen::Off
        } else {
            MetricsListen::Addr(v.to_string())
        }
    }
}

/// `connections`: `max` (in all; default: the open-file limit less a reserve), `maxPerIp`
/// (default 1,000, at most half of `max`; 0 = no per-address limit) and `headerTimeout` (ms or a
/// duration; default 10 s). See [`crate::admission`].
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max: Option<usize>,
    pub max_per_ip: Option<usize>,
    pub header_timeout: std::time::Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: None,
            max_per_ip: None,
            header_timeout: crate::admission::DEFAULT_HEADER_TIMEOUT,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // The library default keeps data in memory (tests, embedding); the binary's config
            // loader starts from the durable default instead.
            data: DataConfig {
                memory: true,
                ..DataConfig::durable()
            },
            port: DEFAULT_PORT,
            host: DEFAULT_HOST.to_string(),
            name: None,
            secure: false,
            encrypt_payloads: false,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            max_total_queue_bytes: default_total_queue_bytes(),
            threads: 0,
            security: SecurityConfig::default(),
            allow_skipped_heartbeats: 2,
            pong_skip_time_ms: 1000,
            transport: Default::default(),
            http_security: Default::default(),
            static_dir: None,
            connections: Default::default(),
            cluster: None,
            limits: Default::default(),
            metrics: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("config {source_name} is not valid JSON: {err}")]
    Json { source_name: String, err: serde_json::Error },
    #[error("config key `{key}` must be {expected}, got {got}")]
    Type { key: String, expected: &'static str, got: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Loaded config plus the warnings to log once logging is up.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

pub fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.display().to_string(),
        err,
    })?;
    serde_json::from_str(&text).map_err(|err| ConfigError::Json {
        source_name: path.display().to_string(),
        err,
    })
}

pub fn parse_json(source_name: &str, text: &str) -> Result<Value, ConfigError> {
    serde_json::from_str(text).map_err(|err| ConfigError::Json {
        source_name: source_name.to_string(),
        err,
    })
}

/// Deep-merge `over` into `base` (objects merge key by key; anything else replaces).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

struct Reader<'a> {
    warnings: &'a mut Vec<String>,
}

pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        other => other.to_string(),
    }
}

impl Reader<'_> {
    fn object<'v>(&mut self, key: &str, v: &'v Value) -> Result<&'v Map<String, Value>, ConfigError> {
        v.as_object().ok_or_else(|| ConfigError::Type {
            key: key.into(),
            expected: "an object",
            got: describe(v),
        })
    }
    fn string(&mut self, key: &str, v: &Value) -> Result<String, ConfigError> {
        v.as_str().map(str::to_string).ok_or_else(|| ConfigError::Type {
            key: key.into(),
            expected: "a string",
            got: describe(v),
        })
    }
    fn boolean(&mut self, key: &str, v: &Value) -> Result<bool, ConfigError> {
        v.as_bool().ok_or_else(|| ConfigError::Type {
            key: key.into(),
            expected: "true or false",
            got: describe(v),
        })
    }
    fn uint(&mut self, key: &str, v: &Value, max: u64) -> Result<u64, ConfigError> {
        match v.as_u64() {
            Some(n) if n <= max => Ok(n),
            _ => Err(ConfigError::Type {
                key: key.into(),
                expected: "a whole number in range",
                got: describe(v),
            }),
        }
    }
    /// Whether `key` is one the loader reads ([`keys::KEYS`]); warned about as unknown if not.
    /// Every loop over a config object asks this first, so the list is the one place a key is
    /// accepted.
    fn known(&mut self, key: &str) -> bool {
        keys::check(key, self.warnings)
    }
    fn unknown(&mut self, key: &str) {
        self.warnings.push(format!("unknown config key `{key}` ignored"));
    }
    fn unsupported(&mut self, key: &str, why: &str) {
        self.warnings
            .push(format!("config key `{key}` is not supported by happn-rs ({why}); ignored"));
    }
}

impl Config {
    /// Checks across keys, run once every source (file, environment, flags) is applied.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.encrypt_payloads && !self.secure {
            // The original accepts this and then never answers a login; refuse up front instead.
            return Err(ConfigError::Invalid {
                key: "encryptPayloads".into(),
                message: "payload encryption needs logins: set \"secure\": true (or --secure) as well".into(),
            });
        }
        Ok(())
    }
}

/// A positive duration in milliseconds: a number, or an `ms`-library string such as
/// `"10 minutes"`, `"1.5h"` or `"500"`, as the original's `utils.toMilliseconds` accepts.
fn duration_ms(key: &str, v: &Value) -> Result<u64, ConfigError> {
    match happn_engine::security::policy::duration_ms(v) {
        Ok(Some(ms)) => Ok(ms),
        _ => Err(ConfigError::Type {
            key: key.into(),
            expected: "a positive number of milliseconds, or a duration such as \"10 minutes\"",
            got: describe(v),
        }),
    }
}

/// Interpret a merged config document.
pub fn from_value(doc: &Value) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let mut r = Reader { warnings: &mut warnings };
    let mut c = Config {
        data: DataConfig::durable(),
        ..Config::default()
    };
    let top = r.object("(top level)", doc)?;
    for (key, v) in top {
        if v.is_null() || !r.known(key) {
            continue;
        }
        match key.as_str() {
            "port" => c.port = r.uint("port", v, u16::MAX as u64)? as u16,
            "host" => c.host = r.string("host", v)?,
            "name" => c.name = Some(r.string("name", v)?),
            "secure" => c.secure = r.boolean("secure", v)?,
            "dataDir" => c.data.dir = PathBuf::from(r.string("dataDir", v)?),
            "maxFrameBytes" => c.max_frame_bytes = r.uint("maxFrameBytes", v, 1 << 30)?.max(1024) as usize,
            "maxQueueBytes" => c.max_queue_bytes = r.uint("maxQueueBytes", v, 1 << 34)?.max(64 * 1024) as usize,
            "maxTotalQueueBytes" => c.max_total_queue_bytes = r.uint(key, v, 1 << 44)?.max(1 << 20) as usize,
            "threads" => c.threads = r.uint(key, v, 1024)? as usize,
            "encryptPayloads" => c.encrypt_payloads = r.boolean("encryptPayloads", v)?,
            "transport" => c.transport = crate::tls::Transport::from_value(v, r.warnings)?,
            "static" => c.static_dir = Some(PathBuf::from(r.string("static", v)?)),
            "cluster" => c.cluster = Some(read_cluster(&mut r, v)?),
            "adminUser" => read_admin(&mut r, "adminUser", v, &mut c.security)?,
            "sessionTokenSecret" => c.security.token_secret = Some(r.string(key, v)?),
            "users" => c.security.users = read_users(&mut r, v)?,
            "groups" => c.security.groups = read_groups(&mut r, v)?,
            "services" => read_services(&mut r, v, &mut c)?,
            "utils" => {
                let u = r.object("utils", v)?;
                for (k, lv) in u {
                    if !r.known(&format!("utils.{k}")) {
                        continue;
                    }
                    match k.as_str() {
                        "logLevel" => {
                            r.string("utils.logLevel", lv)?;
                        }
                        other => r.unknown(&format!("utils.{other}")),
                    }
                }
            }
            "deferListen" => r.unsupported(key, "the server always listens"),
            "connections" => read_connections(&mut r, v, &mut c.connections)?,
            "limits" => read_limits(&mut r, v, &mut c.limits)?,
            "metricsAddr" => {
                c.metrics = match v {
                    Value::Bool(false) => MetricsListen::Off,
                    _ => MetricsListen::from_flag(&r.string("metricsAddr", v)?),
                }
            }
            "middleware" => c.http_security = crate::http::guard::SecurityMiddleware::from_middleware("middleware", v, r.warnings)?,
            other => r.unknown(other),
        }
    }
    Ok(Loaded { config: c, warnings })
}

fn read_connections(r: &mut Reader<'_>, v: &Value, limits: &mut ConnectionLimits) -> Result<(), ConfigError> {
    for (k, cv) in r.object("connections", v)? {
        let ck = format!("connections.{k}");
        if !r.known(&ck) {
            continue;
        }
        match k.as_str() {
            "max" => limits.max = Some(r.uint(&ck, cv, u32::MAX as u64)?.max(1) as usize),
            "maxPerIp" => limits.max_per_ip = Some(r.uint(&ck, cv, u32::MAX as u64)? as usize),
            // At most a day: the deadline is an `Instant` sum that must not overflow.
            "headerTimeout" => limits.header_timeout = std::time::Duration::from_millis(duration_ms(&ck, cv)?.min(86_400_000)),
            _ => r.unknown(&ck),
        }
    }
    Ok(())
}

fn read_limits(r: &mut Reader<'_>, v: &Value, limits: &mut SessionLimits) -> Result<(), ConfigError> {
    for (k, lv) in r.object("limits", v)? {
        let lk = format!("limits.{k}");
        if !r.known(&lk) {
            continue;
        }
        let rate = || match lv.as_f64() {
            Some(n) if (0.0..=1e9).contains(&n) => Ok(n),
            _ => Err(ConfigError::Type {
                key: lk.clone(),
                expected: "a number from 0 to 1e9",
                got: describe(lv),
            }),
        };
        match k.as_str() {
            "maxSubscriptions" => limits.max_subscriptions = r.uint(&lk, lv, u32::MAX as u64)? as usize,
            "requestsPerSecond" => limits.requests_per_second = rate()?,
            "requestBurst" => limits.request_burst = rate()?,
            _ => r.unknown(&lk),
        }
    }
    Ok(())
}

fn read_admin(r: &mut Reader<'_>, key: &str, v: &Value, sec: &mut SecurityConfig) -> Result<(), ConfigError> {
    for (k, av) in r.object(key, v)? {
        if !r.known(&format!("{key}.{k}")) {
            continue;
        }
        match k.as_str() {
            "password" => sec.admin_password = Some(r.string(&format!("{key}.password"), av)?),
            "custom_data" | "publicKey" => {}
            other => r.unknown(&format!("{key}.{other}")),
        }
    }
    Ok(())
}

fn read_users(r: &mut Reader<'_>, v: &Value) -> Result<Vec<UserSpec>, ConfigError> {
    let list = v.as_array().ok_or_else(|| ConfigError::Type {
        key: "users".into(),
        expected: "an array",
        got: describe(v),
    })?;
    let mut out = Vec::new();
    for (i, u) in list.iter().enumerate() {
        let key = format!("users[{i}]");
        let o = r.object(&key, u)?;
        let mut spec = UserSpec::default();
        for (k, fv) in o {
            if !r.known(&format!("{key}.{k}")) {
                continue;
            }
            match k.as_str() {
                "username" => spec.username = r.string(&format!("{key}.username"), fv)?,
                "password" => spec.password = Some(r.string(&format!("{key}.password"), fv)?),
                "custom_data" => spec.custom_data = Some(fv.clone()),
                "publicKey" => {
                    let pk = r.string(&format!("{key}.publicKey"), fv)?;
                    happn_engine::security::crypto::parse_public_key(&pk).map_err(|e| ConfigError::Invalid {
                        key: format!("{key}.publicKey"),
                        message: format!("{e} (expected base64 of a secp256k1 public key)"),
                    })?;
                    spec.public_key = Some(pk);
                }
                "groups" => {
                    let gs = fv.as_array().ok_or_else(|| ConfigError::Type {
                        key: format!("{key}.groups"),
                        expected: "an array of group names",
                        got: describe(fv),
                    })?;
                    for g in gs {
                        spec.groups.push(r.string(&format!("{key}.groups"), g)?);
                    }
                }
                other => r.unknown(&format!("{key}.{other}")),
            }
        }
        happn_engine::security::validate_name(&spec.username).map_err(|e| ConfigError::Invalid {
            key: format!("{key}.username"),
            message: e.to_string(),
        })?;
        out.push(spec);
    }
    Ok(out)
}

fn read_groups(r: &mut Reader<'_>, v: &Value) -> Result<Vec<GroupSpec>, ConfigError> {
    let list = v.as_array().ok_or_else(|| ConfigError::Type {
        key: "groups".into(),
        expected: "an array",
        got: describe(v),
    })?;
    let mut out = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let key = format!("groups[{i}]");
        let o = r.object(&key, g)?;
        let mut spec = GroupSpec::default();
        for (k, fv) in o {
            if !r.known(&format!("{key}.{k}")) {
                continue;
            }
            match k.as_str() {
                "name" => spec.name = r.string(&format!("{key}.name"), fv)?,
                "custom_data" => spec.custom_data = Some(fv.clone()),
                "permissions" => {
                    let perms = r.object(&format!("{key}.permissions"), fv)?;
                    for (path, p) in perms {
                        let pk = format!("{key}.permissions[{path:?}]");
                        let actions = r
                            .object(&pk, p)?
                            .get("actions")
                            .and_then(Value::as_array)
                            .ok_or_else(|| ConfigError::Type {
                                key: format!("{pk}.actions"),
                                expected: "an array of actions",
                                got: describe(p),
                            })?;
                        for a in actions {
                            r.string(&format!("{pk}.actions"), a)?;
                        }
                    }
                    spec.permissions = perms.clone();
                }
                other => r.unknown(&format!("{key}.{other}")),
            }
        }
        happn_engine::security::validate_name(&spec.name).map_err(|e| ConfigError::Invalid {
            key: format!("{key}.name"),
            message: e.to_string(),
        })?;
        out.push(spec);
    }
    Ok(out)
}

fn read_services(r: &mut Reader<'_>, v: &Value, c: &mut Config) -> Result<(), ConfigError> {
    for (name, svc) in r.object("services", v)? {
        let key = format!("services.{name}");
        if !r.known(&key) {
            continue;
        }
        let svc = r.object(&key, svc)?;
        let Some(cfg) = svc.get("config") else {
            continue;
        };
        let cfg = r.object(&format!("{key}.config"), cfg)?;
        match name.as_str() {
            "security" | "auth" => {
                for (k, sv) in cfg {
                    let sk = format!("{key}.config.{k}");
                    if !r.known(&sk) {
                        continue;
                    }
                    match k.as_str() {
                        "adminUser" => read_admin(r, &sk, sv, &mut c.security)?,
                        "sessionTokenSecret" => c.security.token_secret = Some(r.string(&sk, sv)?),
                        "adminGroup" => {}
                        "profiles" => {
                            c.security.profiles = happn_engine::security::Profiles::parse(sv).map_err(|e| ConfigError::Invalid {
                                key: sk.clone(),
                                message: e.to_string(),
                            })?
                        }
                        "defaultNonceTTL" => {
                            c.security.nonce_ttl = Some(std::time::Duration::from_millis(duration_ms(&sk, sv)?));
                        }
                        "accountLockout" => {
                            for (lk, lv) in r.object(&sk, sv)? {
                                let lkey = format!("{sk}.{lk}");
                                if !r.known(&lkey) {
                                    continue;
                                }
                                match lk.as_str() {
                                    "enabled" => c.security.lockout.enabled = r.boolean(&lkey, lv)?,
                                    "attempts" => c.security.lockout.attempts = r.uint(&lkey, lv, u32::MAX as u64)? as u32,
                                    "retryInterval" => c.security.lockout.retry_interval_ms = r.uint(&lkey, lv, u64::MAX >> 1)?,
                                    _ => r.unknown(&lkey),
                                }
                            }
                        }
                        _ => r.unsupported(&sk, "arrives with the full security model"),
                    }
                }
            }
            "pubsub" => {
                for (k, pv) in cfg {
                    let pk = format!("{key}.config.{k}");
                    if !r.known(&pk) {
                        continue;
                    }
                    match k.as_str() {
                        "primusOpts" => {
                            for (ok, ov) in r.object(&pk, pv)? {
                                let ok2 = format!("{pk}.{ok}");
                                if !r.known(&ok2) {
                                    continue;
                                }
                                match ok.as_str() {
                                    "allowSkippedHeartBeats" => c.allow_skipped_heartbeats = (r.uint(&ok2, ov, 1000)? as u32).max(2),
                                    "pongSkipTime" => c.pong_skip_time_ms = r.uint(&ok2, ov, 3_600_000)?,
                                    "timeout" => {
                                        r.uint(&ok2, ov, u32::MAX as u64)?;
                                    }
                                    _ => r.unknown(&ok2),
                                }
                            }
                        }
                        _ => r.unknown(&pk),
                    }
                }
            }
            "data" => read_data(r, &format!("{key}.config"), cfg, &mut c.data)?,
            // happn 3's place for the HTTP middleware options; 2.x has them at the top level.
            "connect" => {
                for (k, mv) in cfg {
                    let mk = format!("{key}.config.{k}");
                    if !r.known(&mk) {
                        continue;
                    }
                    match k.as_str() {
                        "middleware" => c.http_security = crate::http::guard::SecurityMiddleware::from_middleware(&mk, mv, r.warnings)?,
                        _ => r.unknown(&mk),
                    }
                }
            }
            _ => r.unknown(&key),
        }
    }
    Ok(())
}

fn read_cluster(r: &mut Reader<'_>, v: &Value) -> Result<ClusterConfig, ConfigError> {
    let mut c = ClusterConfig::new("");
    for (k, cv) in r.object("cluster", v)? {
        let ck = format!("cluster.{k}");
        if !r.known(&ck) {
            continue;
        }
        match k.as_str() {
            "url" => c.url = r.string(&ck, cv)?,
            "schema" => c.schema = r.string(&ck, cv)?,
            "poolSize" => c.pool_size = r.uint(&ck, cv, 1000)?.max(1) as usize,
            "advertise" => c.advertise = Some(r.string(&ck, cv)?),
            "retention" => c.retention = std::time::Duration::from_millis(duration_ms(&ck, cv)?),
            "maxEvents" => c.max_events = r.uint(&ck, cv, i64::MAX as u64)?.max(1000) as i64,
            _ => r.unknown(&ck),
        }
    }
    if c.url.is_empty() {
        return Err(ConfigError::Invalid {
            key: "cluster.url".into(),
            message: "the PostgreSQL URL of the cluster is required".into(),
        });
    }
    Ok(c)
}

fn read_data(r: &mut Reader<'_>, key: &str, cfg: &Map<String, Value>, data: &mut DataConfig) -> Result<(), ConfigError> {
    for (k, v) in cfg {
        let dk = format!("{key}.{k}");
        if !r.known(&dk) {
            continue;
        }
        match k.as_str() {
            "filename" | "dbfile" => data.file = r.string(&dk, v)?,
            "durability" => match r.string(&dk, v)?.as_str() {
                "relaxed" => data.relaxed = true,
                "durable" | "immediate" => data.relaxed = false,
                other => {
                    return Err(ConfigError::Invalid {
                        key: dk,
                        message: format!("{other:?}: expected \"durable\" or \"relaxed\""),
                    })
                }
            },
            "acceptEmptyFile" => data.accept_empty_file = r.boolean(&dk, v)?,
            "compactInterval" => r.unsupported(&dk, "the embedded store reclaims space as it goes"),
            "datastores" => {
                let list = v.as_array().ok_or_else(|| ConfigError::Type {
                    key: dk.clone(),
                    expected: "an array",
                    got: describe(v),
                })?;
                for (i, d) in list.iter().enumerate() {
                    let sk = format!("{dk}[{i}]");
                    let mut spec = DatastoreSpec::default();
                    for (f, fv) in r.object(&sk, d)? {
                        let fk = format!("{sk}.{f}");
                        if !r.known(&fk) {
                            continue;
                        }
                        match f.as_str() {
                            "name" => spec.name = r.string(&fk, fv)?,
                            "isDefault" => spec.is_default = r.boolean(&fk, fv)?,
                            "patterns" => {
                                let ps = fv.as_array().ok_or_else(|| ConfigError::Type {
                                    key: fk.clone(),
                                    expected: "an array of patterns",
                                    got: describe(fv),
                                })?;
                                for p in ps {
                                    let p = r.string(&fk, p)?;
                                    // The original strips a leading '/' from patterns and matches
                                    // unanchored; happn-rs anchors, so keep the path as written.
                                    spec.patterns.push(p);
                                }
                            }
                            "settings" => {
                                for (sf, sv) in r.object(&fk, fv)? {
                                    let sfk = format!("{fk}.{sf}");
                                    if !r.known(&sfk) {
                                        continue;
                                    }
                                    match sf.as_str() {
                                        "filename" | "dbfile" => spec.file = Some(r.string(&sfk, sv)?),
                                        "memory" => spec.memory = r.boolean(&sfk, sv)?,
                                        _ => r.unsupported(&sfk, "nedb-specific setting"),
                                    }
                                }
                            }
                            "provider" => r.unsupported(&fk, "happn-rs has its own stores"),
                            _ => r.unknown(&fk),
                        }
                    }
                    if spec.name.is_empty() {
                        spec.name = format!("datastore{i}");
                    }
                    if !spec.memory && spec.file.is_none() {
                        // A store with neither a file nor memory:true is in memory in the original.
                        spec.memory = true;
                    }
                    data.datastores.push(spec);
                }
            }
            _ => r.unknown(&dk),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_original_keys() {
        let l = from_value(&json!({
            "port": 1234, "host": "127.0.0.1", "name": "n", "secure": true,
            "adminUser": {"password": "pw"},
            "users": [{"username": "u", "password": "p", "groups": ["g"]}],
            "groups": [{"name": "g", "permissions": {"/a/*": {"actions": ["get"]}}}],
            "services": {"pubsub": {"config": {"primusOpts": {"allowSkippedHeartBeats": 5}}}},
            "bogus": 1
        }))
        .unwrap();
        assert_eq!(l.config.port, 1234);
        assert!(l.config.secure);
        assert_eq!(l.config.security.admin_password.as_deref(), Some("pw"));
        assert_eq!(l.config.security.users[0].groups, ["g"]);
        assert_eq!(l.config.allow_skipped_heartbeats, 5);
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].contains("bogus"));
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = from_value(&json!({"port": "abc"})).err().unwrap().to_string();
        assert!(e.contains("`port`") && e.contains("abc"), "{e}");
        let e = from_value(&json!({"secure": "yes"})).err().unwrap().to_string();
        assert!(e.contains("`secure`"), "{e}");
        let e = from_value(&json!({"users": [{"username": "a/b"}]})).err().unwrap().to_string();
        assert!(e.contains("users[0].username"), "{e}");
        assert!(from_value(&json!({"port": 70000})).is_err());
    }

    #[test]
    fn data_keys() {
        let l = from_value(&json!({"services": {"data": {"config": {
        "filename": "main.redb", "durability": "relaxed",
        "datastores": [
            {"name": "live", "patterns": ["/sensors/live/*"], "settings": {"memory": true}},
            {"name": "main", "isDefault": true, "settings": {"filename": "main.redb"}}
        ]}}}}))
        .unwrap();
        assert!(!l.config.data.memory, "the binary is durable by default");
        assert_eq!(l.config.data.file, "main.redb");
        assert!(l.config.data.relaxed);
        assert_eq!(l.config.data.datastores.len(), 2);
        assert!(l.config.data.datastores[0].memory);
        assert_eq!(l.config.data.path_of("x.redb"), PathBuf::from("./happn-data/x.redb"));
        assert!(from_value(&json!({"services": {"data": {"config": {"durability": "sometimes"}}}})).is_err());
        assert!(Config::default().data.memory, "the library default is in memory");
    }

    #[test]
    fn encryption_and_key_pair_keys() {
        let pk = "AiNc+OG9jt6GjoyVkf+J4+yAL5QPk2oqbGmyZKdTXRfS";
        let l = from_value(&json!({
            "secure": true, "encryptPayloads": true,
            "users": [{"username": "k", "publicKey": pk, "groups": []}],
            "services": {"security": {"config": {"defaultNonceTTL": "10 minutes"}}}
        }))
        .unwrap();
        assert!(l.config.encrypt_payloads);
        l.config.check().unwrap();
        assert_eq!(l.config.security.users[0].public_key.as_deref(), Some(pk));
        assert_eq!(l.config.security.nonce_ttl, Some(std::time::Duration::from_secs(600)));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);

        let insecure = from_value(&json!({"encryptPayloads": true})).unwrap();
        let e = insecure.config.check().unwrap_err().to_string();
        assert!(e.contains("encryptPayloads") && e.contains("secure"), "{e}");

        let e = from_value(&json!({"users": [{"username": "k", "publicKey": "not a key"}]}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("users[0].publicKey"), "{e}");
        let ttl = |v: Value| from_value(&json!({"services": {"security": {"config": {"defaultNonceTTL": v}}}}));
        assert_eq!(
            ttl(json!(1500)).unwrap().config.security.nonce_ttl,
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(
            ttl(json!("1.5h")).unwrap().config.security.nonce_ttl,
            Some(std::time::Duration::from_secs(5400))
        );
        assert!(ttl(json!("soon")).is_err());
        assert!(ttl(json!(-1)).is_err());
    }

    #[test]
    fn connection_keys() {
        let l = from_value(&json!({"connections": {"max": 500, "maxPerIp": 0, "headerTimeout": "2s"}})).unwrap();
        let c = l.config.connections;
        assert_eq!((c.max, c.max_per_ip), (Some(500), Some(0)));
        assert_eq!(c.header_timeout, std::time::Duration::from_secs(2));
        assert_eq!(Config::default().connections.header_timeout, std::time::Duration::from_secs(10));
        let e = from_value(&json!({"connections": {"maxPerIp": -1}})).err().unwrap().to_string();
        assert!(e.contains("connections.maxPerIp"), "{e}");
        assert!(from_value(&json!({"connections": {"headerTimeout": 0}})).is_err());
    }

    #[test]
    fn limits_and_metrics_keys() {
        let c = Config::default();
        assert_eq!(c.limits.max_subscriptions, DEFAULT_MAX_SUBSCRIPTIONS);
        assert_eq!((c.limits.requests_per_second, c.metrics.clone()), (0.0, MetricsListen::Default));
        let l = from_value(
            &json!({"limits": {"maxSubscriptions": 5, "requestsPerSecond": 2.5, "requestBurst": 10}, "metricsAddr": "127.0.0.1:9200"}),
        )
        .unwrap();
        assert_eq!(
            l.config.limits,
            SessionLimits {
                max_subscriptions: 5,
                requests_per_second: 2.5,
                request_burst: 10.0
            }
        );
        assert_eq!(l.config.metrics, MetricsListen::Addr("127.0.0.1:9200".into()));
        assert_eq!(
            from_value(&json!({"metricsAddr": false})).unwrap().config.metrics,
            MetricsListen::Off
        );
        let e = from_value(&json!({"limits": {"requestsPerSecond": -1}})).err().unwrap().to_string();
        assert!(e.contains("limits.requestsPerSecond"), "{e}");
        assert!(from_value(&json!({"metricsAddr": 9100})).is_err());
    }

    #[test]
    fn threads() {
        assert_eq!(from_value(&json!({})).unwrap().config.threads, 0, "one per core by default");
        assert_eq!(from_value(&json!({"threads": 1})).unwrap().config.threads, 1);
        assert!(from_value(&json!({"threads": -1})).is_err());
        assert!(from_value(&json!({"threads": 5000})).is_err());
        assert!(from_value(&json!({"threads": "1"})).is_err());
    }

    #[test]
    fn total_queue_budget() {
        let d = default_total_queue_bytes();
        assert!((256 << 20..=16 << 30).contains(&d), "default {d}");
        let l = from_value(&json!({"maxTotalQueueBytes": 64 << 20})).unwrap();
        assert_eq!(l.config.max_total_queue_bytes, 64 << 20);
        assert_eq!(
            from_value(&json!({"maxTotalQueueBytes": 5})).unwrap().config.max_total_queue_bytes,
            1 << 20
        );
        assert!(from_value(&json!({"maxTotalQueueBytes": "1GB"})).is_err());
    }

    #[test]
    fn deep_merge() {
        let mut a = json!({"a": {"b": 1, "c": 2}, "d": 1});
        merge(&mut a, json!({"a": {"b": 5}, "e": 2}));
        assert_eq!(a, json!({"a": {"b": 5, "c": 2}, "d": 1, "e": 2}));
    }
}
