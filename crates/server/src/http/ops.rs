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
pub(super) fn serve_main(state: &AppState, method: &Method, path: &str) -> Option<Response> {
    let metrics_here = state.config.metrics == MetricsListen::Default && !state.config.secure;
    serve(state, method, path, metrics_here)
}

fn serve(state: &AppState, method: &Method, path: &str, metrics: bool) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    match path {
        "/health" => Some(health(state)),
        "/ready" => Some(ready(state)),
        "/metrics" if metrics => Some(
            (
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                state.telemetry.render(state),
            )
                .into_response(),
        ),
        _ => None,
    }
}

fn health(state: &AppState) -> Response {
    let body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": state.telemetry.uptime().as_secs(),
    });
    super::json(StatusCode::OK, body.to_string())
}

fn ready(state: &AppState) -> Response {
    let not_ready = if state.stopping.load(Ordering::Acquire) {
        Some("server stopping".to_string())
    } else {
        match state.data.store().health() {
            StoreHealth::Healthy => None,
            StoreHealth::Unwritable { reason } => Some(format!("store unavailable: {reason}")),
        }
    };
    match not_ready {
        None => super::json(StatusCode::OK, json!({"status": "ready", "store": "ok"}).to_string()),
        Some(reason) => super::json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "reason": reason}).to_string(),
        ),
    }
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
        .unwrap_or_else(|| super::text(StatusCode::NOT_FOUND, &format!("Cannot {} {}", req.method(), req.uri().path())))
}
