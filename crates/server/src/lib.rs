//! happn-rs: the server. HTTP + websocket front end (axum), one task per connection, over the
//! engine services. `main.rs` is only argument parsing and signals; tests start servers here.

pub mod admin;
pub mod admission;
pub mod cli;
pub mod cluster;
pub mod config;
pub(crate) mod conn;
pub(crate) mod encryption;
pub(crate) mod handler;
pub(crate) mod http;
pub(crate) mod outbox;
pub mod progress;
pub(crate) mod session;
pub mod state;
pub(crate) mod system;
pub mod telemetry;
pub(crate) mod tls;
pub mod tools;
pub(crate) mod websocket;

/// The hand-written parsers on the untrusted path, reachable for the cargo-fuzz targets in
/// `fuzz/` (docs/FUZZING.md); not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::encryption::FrameCipher;
    pub use crate::websocket::frame;
    pub use crate::websocket::{Incoming, WsSocket};
}

use config::Config;
use happn_engine::data::DataService;
use happn_engine::security::Security;
use happn_engine::storage::{MemoryStore, Route, RoutedStore, Store};
use happn_engine::Pattern;
use happn_store_redb::{DurabilityOptions, OpenOptions, RedbStore};
use state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {err}")]
    Bind { addr: String, err: std::io::Error },
    #[error("cannot initialise the data store: {0}")]
    Data(#[from] happn_engine::DataError),
    #[error("cannot open the data store {path}: {err}")]
    Store { path: String, err: happn_engine::StoreError },
    #[error(
        "the data file {path} is empty (0 bytes): it holds no database, and the server will not start on it as a \
         new, empty one in case its data was lost. To start with an empty database, delete the file (a new one \
         is created), or pass --accept-empty-data-file (services.data.config.acceptEmptyFile: true)"
    )]
    EmptyDataFile { path: String },
    #[error("cannot join the cluster: {0}")]
    Cluster(happn_engine::StoreError),
    #[error("https: {0}")]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Static(#[from] http::static_files::StaticDirError),
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot listen for metrics on {addr} (metricsAddr): {err}")]
    MetricsBind { addr: String, err: std::io::Error },
}

impl StartError {
    /// The process exit code for this failure: 2 when the operator must fix the configuration or
    /// a data file the server refuses (an empty or corrupt one), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::EmptyDataFile { .. } | StartError::Config(_) => 2,
            StartError::Store {
                err: happn_engine::StoreError::Corrupt(_),
                ..
            } => 2,
            _ => 1,
        }
    }
}

/// Open the stores the config asks for: one durable file by default, everything in memory with
/// `--memory`, or path-routed datastores. Opening may repair a file after a crash, so it runs on
/// the blocking pool.
pub async fn open_store(data: &config::DataConfig) -> Result<Arc<dyn Store>, StartError> {
    let data = data.clone();
    tokio::task::spawn_blocking(move || open_store_blocking(&data))
        .await
        .expect("store opening task panicked")
}

fn open_file(data: &config::DataConfig, file: &str) -> Result<Arc<dyn Store>, StartError> {
    if data.memory {
        return Ok(Arc::new(MemoryStore::new()));
    }
    let options = if data.relaxed {
        DurabilityOptions::RELAXED
    } else {
        DurabilityOptions::DURABLE
    };
    let path = data.path_of(file);
    let open = OpenOptions {
        durability: options,
        accept_empty_file: data.accept_empty_file,
    };
    let store = RedbStore::open_with(&path, open).map_err(|err| {
        let empty = std::fs::metadata(&path).is_ok_and(|m| m.len() == 0);
        let path = path.display().to_string();
        match err {
            happn_engine::StoreError::Corrupt(_) if empty => StartError::EmptyDataFile { path },
            err => StartError::Store { path, err },
        }
    })?;
    tracing::info!(file = %path.display(), relaxed = data.relaxed, "durable store open");
    Ok(Arc::new(store))
}

fn open_store_blocking(data: &config::DataConfig) -> Result<Arc<dyn Store>, StartError> {
    if data.datastores.is_empty() {
        return open_file(data, &data.file);
    }
    // The original's choice of default: isDefault, else the first with a file, else the first.
    let default_at = data
        .datastores
        .iter()
        .position(|d| d.is_default)
        .or_else(|| data.datastores.iter().position(|d| d.file.is_some()))
        .unwrap_or(0);
    let mut stores = Vec::new();
    for d in &data.datastores {
        let store: Arc<dyn Store> = if d.memory {
            Arc::new(MemoryStore::new())
        } else {
            open_file(data, d.file.as_deref().unwrap_or(&data.file))?
        };
        stores.push(store);
    }
    let default = stores[default_at].clone();
    let routes = data
        .datastores
        .iter()
        .zip(stores)
        .filter(|(d, _)| !d.patterns.is_empty())
        .map(|(d, store)| Route {
            name: d.name.clone(),
            patterns: d.patterns.iter().map(|p| Pattern::new(p)).collect(),
            store,
        })
        .collect();
    Ok(Arc::new(RoutedStore::new(routes, default)))
}

/// How a stop tells clients to behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Clients are told and then closed; they reconnect (SIGTERM).
    Reconnect,
    /// Clients get `primus::server::close` before the close and do not reconnect (SIGINT).
    NoReconnect,
}

pub struct Server {
    pub local_addr: SocketAddr,
    pub state: Arc<AppState>,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    /// Set when the server stops: every plain HTTP connection then finishes its request in
    /// flight and closes (websockets are closed through the peer registry).
    stopping: tokio::sync::watch::Sender<bool>,
    limiter: Arc<admission::Limiter>,
    task: tokio::task::JoinHandle<()>,
    /// The separate `/metrics` listener, if any: it stops when this is dropped.
    _metrics_listener: Option<http::ops::MetricsListener>,
}

/// How long a stop waits for connections to finish their close handshakes.
const DRAIN_TIME: Duration = Duration::from_secs(3);

/// Bootstrap the engine and start listening.
pub async fn start(config: Config) -> Result<Server, StartError> {
    config.check()?;
    // A cluster node's name is its own (the database is shared); a single node keeps its name
    // in its store.
    let (store, cluster_store) = match &config.cluster {
        Some(c) => {
            let name = config.name.clone().unwrap_or_else(system::random_name);
            let advertise = c
                .advertise
                .clone()
                .unwrap_or_else(|| format!("{}://{}:{}", config.transport.scheme(), config.host, config.port));
            let pg = cluster::Cluster::open(c, &name, advertise).await.map_err(StartError::Cluster)?;
            (pg.clone() as Arc<dyn Store>, Some((pg, name)))
        }
        None => (open_store(&config.data).await?, None),
    };
    let data = Arc::new(DataService::new(store));
    let name = match &cluster_store {
        Some((_, name)) => name.clone(),
        None => system::system_name(&data, config.name.as_deref()).await?,
    };
    // Nodes starting at once create the shared records (keypair, token secret, _ADMIN) in turn.
    let startup_lock = match &cluster_store {
        Some((pg, _)) => Some(pg.startup_lock().await.map_err(StartError::Cluster)?),
        None => None,
    };
    let keypair = system::server_keypair(&data).await?;
    let security = Security::new(data.clone(), &config.security);
    security.bootstrap(&config.security).await?;
    drop(startup_lock);
    if config.secure && config.security.admin_password.is_none() {
        tracing::warn!("the _ADMIN user still has the default password 'happn': set adminUser.password in the config");
    }
    // Certificates and the static folder are checked before listening, so a bad path stops the
    // start with a clear message instead of failing requests later.
    let tls = match &config.transport {
        tls::Transport::Http => None,
        tls::Transport::Https(source) => {
            let (cert, key) = tls::load_pem(source, &config.host)?;
            Some(tls::acceptor(&cert, &key)?)
        }
    };
    let static_files = config
        .static_dir
        .as_deref()
        .map(http::static_files::StaticFiles::open)
        .transpose()?;
    if let Some(files) = &static_files {
        tracing::info!(root = %files.root().display(), "serving static files");
    }
    let addr = format!("{}:{}", config.host, config.port);
    let listener = bind(&addr).await.map_err(|err| StartError::Bind { addr: addr.clone(), err })?;
    let local_addr = listener.local_addr().map_err(|err| StartError::Bind { addr, err })?;
    let mut state = AppState::new(config, name, keypair, data, security);
    let mut tail = None;
    if let Some((pg, name)) = cluster_store {
        tail = pg.event_log().and_then(|log| log.tail());
        state.cluster = Some(cluster::Cluster::new(pg, name));
    }
    let state = Arc::new(state);
    if let Some(tail) = tail {
        tokio::spawn(cluster::deliver_events(Arc::downgrade(&state), tail));
    }
    tokio::spawn(state::shed_queues_task(Arc::downgrade(&state)));
    tokio::spawn(telemetry::upkeep_task(Arc::downgrade(&state)));
    let app = http::router(state.clone(), static_files);
    let limits = &state.config.connections;
    let max = limits
        .max
        .unwrap_or_else(|| admission::default_max_connections(admission::open_file_limit()));
    let max_per_ip = limits.max_per_ip.unwrap_or_else(|| admission::default_max_per_ip(max));
    let header_timeout = limits.header_timeout;
    tracing::info!(max, max_per_ip, ?header_timeout, "connection limits");
    let limiter = admission::Limiter::new(max, max_per_ip);
    state.telemetry.watch_limiter(limiter.clone());
    let metrics_listener = http::ops::listen_metrics(&state, header_timeout).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        app,
        tls,
        limiter.clone(),
        header_timeout,
        stop_rx,
        stopping_rx,
    ));
    Ok(Server {
        local_addr,
        state,
        stop_tx,
        stopping,
        limiter,
        task,
        _metrics_listener: metrics_listener,
    })
}

/// Connections the kernel completes and queues for `accept` (capped by `net.core.somaxconn`).
/// Larger than the usual 128: the queue is where clients wait while the server is briefly out of
/// descriptors, or when many devices reconnect at once after a restart.
const LISTEN_BACKLOG: u32 = 1024;

/// Listen on the first address `addr` resolves to that binds, as `TcpListener::bind` does, with
/// [`LISTEN_BACKLOG`].
pub(crate) async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing")))
}

/// A TLS client gets this long to finish its handshake before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve HTTP/1.1 with upgrades, over TLS when `tls` is set. hyper is driven directly (not
/// `axum::serve`) so that header names go out title-cased and the 101 reply carries no `Date`,
/// as the reference's does.
///
/// Each socket needs a [`admission::Slot`] first, held until it closes. hyper's header timer
/// runs whenever the connection waits for a request head — from the accept, and again after
/// each response — so one timeout closes silent sockets, slowly dribbled heads and idle
/// kept-alive connections alike; after the upgrade the websocket heartbeat takes over.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limiter: Arc<admission::Limiter>,
    header_timeout: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .title_case_headers(true)
        .auto_date_header(false)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    let mut backoff = admission::Backoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if admission::is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    let delay = backoff.failed(&e, limiter.open());
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            },
        };
        backoff.succeeded();
        let slot = match limiter.admit(peer.ip()) {
            Ok(slot) => Arc::new(slot),
            Err(why) => {
                limiter.log_refusal(peer.ip(), why);
                if tls.is_none() {
                    admission::refuse_plain(stream, why);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, builder, stopping) = (app.clone(), builder.clone(), stopping.clone());
        match &tls {
            None => {
                tokio::spawn(serve_connection(builder, app, stream, slot, stopping));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                // The handshake runs in the connection's task so a slow client never holds up
                // the accept loop.
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_connection(builder, app, tls_stream, slot, stopping).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Serve one HTTP connection. Every request carries the connection's slot (an extension), so a
/// websocket upgrade can keep it for as long as the websocket lives. When the server stops, the
/// connection finishes the request in flight and closes (hyper's graceful shutdown).
async fn serve_connection<S>(
    builder: Arc<hyper::server::conn::http1::Builder>,
    app: axum::Router,
    stream: S,
    slot: Arc<admission::Slot>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::TokioIo;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(slot.clone());
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    let stop = async move {
        while !*stopping.borrow_and_update() {
            if stopping.changed().await.is_err() {
                // The server is gone without stopping (tests dropping it): serve on.
                std::future::pending::<()>().await;
            }
        }
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection error");
    }
}

impl Server {
    /// Announce the shutdown to every client, close their sockets, stop listening.
    pub async fn stop(self, mode: StopMode) {
        let reconnect = mode == StopMode::Reconnect;
        let reason = if reconnect {
            "server shutting down; reconnect"
        } else {
            "server shutting down"
        };
        let mut preface = vec![happn_protocol::system_message(
            "server-side-disconnect",
            &serde_json::Value::String(reason.into()),
            Some(reconnect),
        )];
        if !reconnect {
            preface.push(happn_protocol::encode_control("primus::server::close"));
        }
        self.state.stopping.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.stop_tx.send(());
        let _ = self.stopping.send(true);
        self.state.close_all(&preface);
        // Every connection holds an admission slot until it has closed: wait for the last one
        // (websockets finishing their close handshakes, HTTP requests in flight), for a bounded
        // time.
        if tokio::time::timeout(DRAIN_TIME, self.limiter.drained()).await.is_err() {
            tracing::warn!(
                open = self.limiter.open(),
                "stopping with connections still open after {DRAIN_TIME:?}"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}
