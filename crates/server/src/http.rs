//! The HTTP side: the Primus endpoint (`/primus*`: websocket upgrade, `/primus/spec`, 426 for
//! anything else), happn's small routes (`/version`, `/ping`), the operating routes ([`ops`]:
//! `/health`, `/ready`, `/metrics`), the online backup ([`admin`]: `/_admin/export`, for
//! administrators only, ahead of the security middleware and its exclusions) and the browser
//! client's scripts
//! ([`browser`], public like the original's). Then, in secure mode, the
//! security middleware ([`guard`]: `/auth/login`, and a session token for everything else), and
//! last the static folder ([`static_files`]) and the 404 — the original's middleware order.

mod admin;
mod auth;
mod browser;
pub mod guard;
pub(crate) mod ops;
mod params;
pub mod static_files;

use crate::conn::{self, Heartbeat};
use crate::state::AppState;
use crate::websocket::Upgrade;
use axum::extract::{Extension, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use static_files::StaticFiles;
use std::sync::Arc;

pub fn router(state: Arc<AppState>, static_files: Option<StaticFiles>) -> Router {
    browser::init();
    Router::new()
        .fallback(dispatch)
        .layer(Extension(static_files.map(Arc::new)))
        .layer(axum::middleware::map_response(shape_headers))
        .with_state(state)
}

/// Header order and `Date` as the reference sends them: the 101 reply lists Upgrade,
/// Connection, Sec-WebSocket-Accept and nothing else; other replies get a `Date`.
async fn shape_headers(mut resp: Response) -> Response {
    let upgrade = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    if upgrade {
        let mut ordered = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for name in [header::UPGRADE, header::CONNECTION, header::SEC_WEBSOCKET_ACCEPT] {
            if let Some(v) = h.remove(&name) {
                ordered.insert(name, v);
            }
        }
        ordered.extend(h.drain());
        *resp.headers_mut() = ordered;
    } else if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        h.insert(header::DATE, date);
    }
    resp
}

const PRIMUS_SPEC: &str = r#"{"version":"6.0.1","pathname":"/primus","timeout":35000,"parser":"json","transformer":"websockets"}"#;

async fn dispatch(
    State(state): State<Arc<AppState>>,
    Extension(static_files): Extension<Option<Arc<StaticFiles>>>,
    mut req: Request,
) -> Response {
    // Primus claims every path that starts with /primus, any query.
    if req.uri().path().starts_with("/primus") {
        if let Some(upgrade) = Upgrade::from_request(&mut req) {
            let heartbeat = Heartbeat::from_query(req.uri().query());
            // The connection's admission slot stays taken while the websocket is open.
            let slot = req.extensions_mut().remove::<Arc<crate::admission::Slot>>();
            return upgrade.respond(move |stream, preread| {
                let serve = conn::serve(stream, preread, state, heartbeat);
                async move {
                    let _slot = slot;
                    serve.await
                }
            });
        }
        return primus_http(req.method(), req.uri().path(), req.headers());
    }
    let (method, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers().clone());
    let path = uri.path();
    if path.eq_ignore_ascii_case("/version") {
        return json(StatusCode::OK, r#"{"version":"2.21.0"}"#.to_string());
    }
    if path == "/ping" {
        return text(StatusCode::OK, "pong");
    }
    if path == admin::EXPORT_PATH {
        let peer = req.extensions().get::<Arc<crate::admission::Slot>>().map(|s| s.peer_ip());
        return admin::export(&state, &method, &uri, &headers, peer).await;
    }
    if let Some(resp) = ops::serve_main(&state, &method, path) {
        return resp;
    }
    if let Some(resp) = browser::serve(&method, path, &headers) {
        return resp;
    }
    if state.config.secure {
        if let guard::Gate::Respond(resp) = guard::gate(&state, &method, &uri, &headers).await {
            return resp;
        }
    }
    if let Some(files) = &static_files {
        if let Some(resp) = files.serve(&method, &uri).await {
            return resp;
        }
    }
    text(StatusCode::NOT_FOUND, &format!("Cannot {} {}", method, path))
}

/// `/primus*` without a websocket upgrade: the spec, CORS preflight, or 426.
fn primus_http(method: &Method, path: &str, headers: &HeaderMap) -> Response {
    let origin = headers.get(header::ORIGIN).cloned();
    let mut resp = if method == Method::OPTIONS && origin.is_some() && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let mut r = StatusCode::OK.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("2592000"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, PUT, POST, DELETE, OPTIONS"),
        );
        r
    } else if path == "/primus/spec" {
        json(StatusCode::OK, PRIMUS_SPEC.to_string())
    } else {
        let mut r = text(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
        let h = r.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
        );
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        r
    };
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    resp
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.to_string()).into_response()
}
