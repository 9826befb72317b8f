//! Operating routes: `/health` (the process answers), `/ready` (it can serve: the store accepts
//! writes and the server is not stopping) and `/metrics` (Prometheus text, see
//! [`crate::telemetry`]). `/health` and `/ready` are public in secure mode, for load balancers
//! and service managers; `/metrics` is served on the main port only by insecure servers, and
//! otherwise on a listener of its own (`metricsAddr`), by default on loopback for secure servers.

use crate::admission::Limiter;
use crate::config::{MetricsListen, DEFAULT_SECURE_METRICS_ADDR};
use crate::state::AppState;
use crate::StartError;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use happn_engine::storage::StoreHealth;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Sockets the metrics listener holds at once: a scraper or two and someone with curl.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// The operating routes on the main port: `/health`, `/ready`, and `/metrics` when it is served
/// there. `None`: not one of them.
pub(super) async fn serve_main(state: &AppState, method: &Method, path: &str) -> Option<Response> {
    let metrics_here = state.config.metrics == MetricsListen::Default && !state.config.secure;
    serve(state, method, path, metrics_here).await
}

async fn serve(state: &AppState, method: &Method, path: &str, metrics: bool) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    match path {
        "/health" => Some(health(state)),
        "/ready" => Some(ready(state).await),
        "/metrics" if metrics => {
            let members = match &state.cluster {
                Some(c) => Some(c.members().await),
                None => None,
            };
            Some(
                (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    state.telemetry.render(state, members.as_deref()),
                )
                    .into_response(),
            )
        }
        _ => None,
    }
}

fn health(state: &AppState) -> Response {
    let body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": state.telemetry.uptime().as_secs(),
        "connections": state.connection_count(),
    });
    super::json(StatusCode::OK, body.to_string())
}

async fn ready(state: &AppState) -> Response {
    let not_ready = if state.stopping.load(Ordering::Acquire) {
        Some("server stopping".to_string())
    } else {
        match state.data.store().health() {
            StoreHealth::Healthy => None,
            StoreHealth::Unwritable { reason } => Some(format!("store unavailable: {reason}")),
        }
    };
    let (status, mut body) = match not_ready {
        None => (StatusCode::OK, json!({"status": "ready", "store": "ok"})),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "not ready", "reason": reason})),
    };
    if let Some(cluster) = &state.cluster {
        body["cluster"] = cluster_view(cluster).await;
    }
    super::json(status, body.to_string())
}

/// `/ready`'s `cluster`: this node's name and the members as last read (at most once a second).
async fn cluster_view(cluster: &crate::cluster::Cluster) -> serde_json::Value {
    let mut view = json!({"node": cluster.name()});
    match &*cluster.members().await {
        Ok(members) => {
            view["members"] = members
                .iter()
                .map(|m| {
                    json!({"name": m.name, "url": m.url, "alive": m.alive,
                        "heartbeatAgeMs": (m.heartbeat_age * 1000.0) as i64})
                })
                .collect();
        }
        Err(e) => {
            view["members"] = serde_json::Value::Null;
            view["membersError"] = e.as_str().into();
        }
    }
    view
}

/// The separate metrics listener; it stops accepting when dropped.
pub struct MetricsListener {
    _stop: tokio::sync::oneshot::Sender<()>,
    _stopping: tokio::sync::watch::Sender<bool>,
}

/// Start the metrics listener the config asks for (none when `/metrics` is on the main port or
/// off). It serves `/metrics`, `/health` and `/ready` through the main port's accept loop, with
/// its own small connection limit and the same header timeout.
pub(crate) async fn listen_metrics(state: &Arc<AppState>, header_timeout: Duration) -> Result<Option<MetricsListener>, StartError> {
    let (addr, required) = match &state.config.metrics {
        MetricsListen::Off => return Ok(None),
        MetricsListen::Default if !state.config.secure => return Ok(None),
        MetricsListen::Default => (DEFAULT_SECURE_METRICS_ADDR.to_string(), false),
        MetricsListen::Addr(a) => (a.clone(), true),
    };
    let listener = match crate::bind(&addr).await.and_then(|l| Ok((l.local_addr()?, l))) {
        Ok(l) => l,
        Err(err) if !required => {
            tracing::warn!(%addr, error = %err, "cannot serve /metrics on the default address of a secure server; set metricsAddr (or --metrics-addr) to another address, or false to turn it off");
            return Ok(None);
        }
        Err(err) => return Err(StartError::MetricsBind { addr, err }),
    };
    let (local, listener) = listener;
    tracing::info!(addr = %local, "serving /metrics");
    let app = axum::Router::new().fallback(metrics_dispatch).with_state(state.clone());
    let (stop, stop_rx) = tokio::sync::oneshot::channel();
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(crate::accept_loop(
        listener,
        app,
        None,
        Limiter::new(METRICS_MAX_CONNECTIONS, 0),
        header_timeout,
        stop_rx,
        stopping_rx,
    ));
    Ok(Some(MetricsListener {
        _stop: stop,
        _stopping: stopping,
    }))
}

async fn metrics_dispatch(axum::extract::State(state): axum::extract::State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    serve(&state, req.method(), req.uri().path(), true)
        .await
        .unwrap_or_else(|| super::text(StatusCode::NOT_FOUND, &format!("Cannot {} {}", req.method(), req.uri().path())))
}
