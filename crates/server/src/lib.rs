//! happn-rs: the server. HTTP + websocket front end (axum), one task per connection, over the
//! engine services. `main.rs` is only argument parsing and signals; tests start servers here.

pub mod config;
pub mod conn;
pub mod encryption;
pub mod handler;
pub mod http;
pub mod outbox;
pub mod state;
pub mod system;
pub mod tools;

use config::Config;
use happn_engine::data::DataService;
use happn_engine::security::Security;
use happn_engine::storage::{MemoryStore, Route, RoutedStore, Store};
use happn_engine::Pattern;
use happn_store_redb::{DurabilityOptions, RedbStore};
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
    #[error("{0}")]
    Config(#[from] config::ConfigError),
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
    let store = RedbStore::open(&path, options).map_err(|err| StartError::Store {
        path: path.display().to_string(),
        err,
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
    task: tokio::task::JoinHandle<()>,
}

/// Bootstrap the engine and start listening.
pub async fn start(config: Config) -> Result<Server, StartError> {
    config.check()?;
    let data = Arc::new(DataService::new(open_store(&config.data).await?));
    let name = system::system_name(&data, config.name.as_deref()).await?;
    let keypair = system::server_keypair(&data).await?;
    let security = Security::new(data.clone(), &config.security);
    security.bootstrap(&config.security).await?;
    if config.secure && config.security.admin_password.is_none() {
        tracing::warn!("the _ADMIN user still has the default password 'happn': set adminUser.password in the config");
    }
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|err| StartError::Bind { addr: addr.clone(), err })?;
    let local_addr = listener.local_addr().map_err(|err| StartError::Bind { addr, err })?;
    let state = Arc::new(AppState::new(config, name, keypair, data, security));
    let app = http::router(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(accept_loop(listener, app, stop_rx));
    Ok(Server {
        local_addr,
        state,
        stop_tx,
        task,
    })
}

/// Serve HTTP/1.1 with upgrades. hyper is driven directly (not `axum::serve`) so that header
/// names go out title-cased and the 101 reply carries no `Date`, as the reference's does.
async fn accept_loop(listener: tokio::net::TcpListener, app: axum::Router, mut stop: tokio::sync::oneshot::Receiver<()>) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.title_case_headers(true).auto_date_header(false);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection error");
            }
        });
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
        let _ = self.stop_tx.send(());
        self.state.close_all(&preface);
        // Give sockets a moment to finish their close handshakes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.state.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}
