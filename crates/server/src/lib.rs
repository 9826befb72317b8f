//! happn-rs: the server. HTTP + websocket front end (axum), one task per connection, over the
//! engine services. `main.rs` is only argument parsing and signals; tests start servers here.

pub mod config;
pub mod conn;
pub mod handler;
pub mod http;
pub mod outbox;
pub mod state;
pub mod system;

use config::Config;
use happn_engine::data::DataService;
use happn_engine::security::Security;
use happn_engine::storage::MemoryStore;
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
    let data = Arc::new(DataService::new(Arc::new(MemoryStore::new())));
    let name = system::system_name(&data, config.name.as_deref()).await?;
    let public_key = system::server_public_key(&data).await?;
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
    let state = Arc::new(AppState::new(config, name, public_key, data, security));
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
