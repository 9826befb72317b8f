//! `GET /_admin/export`: an online backup. The store's records, as one consistent state
//! ([`Store::snapshot`]), streamed as a happn 2.x database file (nedb JSON lines, what
//! `happn-rs export` writes and `happn-rs import --nedb` reads), while the server goes on serving.
//!
//! The file holds every record, security records with their password hashes and the server's
//! own secrets (`/_SYSTEM/_SECURITY/_SETTINGS/`: the keypair, the token secret) included: that is
//! what makes it a backup that restores logins and tokens. It is also why it never goes over the
//! websocket, where `engine::visibility` strips exactly these, and why it is served to
//! administrators only:
//! - **secure server**: a session token (`Authorization: Bearer`, the session cookie, or
//!   `?happn_token=`) that `/@HTTP` authorisation accepts (not revoked, user not deleted, its
//!   policy allows `GET /@HTTP/_admin/export`) *and* whose user is in the `_ADMIN` group. A
//!   permission alone is not enough (a group granted `/@HTTP/*` for a web app must not get every
//!   password hash), and `middleware.security.exclusions` do not apply to this route.
//! - **insecure server**: there are no users to tell an administrator by, so only connections
//!   from a loopback address get it: whoever runs the backup on the server's host (or through an
//!   SSH tunnel). Anything else is refused, as the hashes of a server's users (an insecure server
//!   still keeps `_ADMIN`) are not for whoever can reach the port. A reverse proxy on the same
//!   host makes every client look local: do not proxy `/_admin/` to an insecure server.
//!
//! One export runs at a time (a second is answered 503): each holds a copy of the record list
//! (bodies are shared text, not copied) until it has been sent.

use super::guard::Refusal;
use super::{params, text};
use crate::state::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use happn_engine::security::{HttpDenied, ADMIN};
use happn_engine::{nedb, Record};
use std::net::IpAddr;

/// The route.
pub(super) const EXPORT_PATH: &str = "/_admin/export";

/// Bytes of nedb lines gathered into one chunk of the response body.
const CHUNK_BYTES: usize = 64 * 1024;

/// The number of records in the file, sent before it: a client checks it got them all.
pub const RECORDS_HEADER: &str = "x-happn-records";

/// `GET /_admin/export`, for the peer at `peer`.
pub(super) async fn export(state: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap, peer: Option<IpAddr>) -> Response {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, &format!("Cannot {method} {}", uri.path()));
    }
    let who = match allowed(state, uri, headers, peer).await {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    let Ok(permit) = state.exports.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "an export is already running; try again when it is done",
        );
    };
    let started = std::time::Instant::now();
    let records = match state.data.store().snapshot().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "export failed: the store could not be read");
            return text(StatusCode::SERVICE_UNAVAILABLE, &format!("the store could not be read: {e}"));
        }
    };
    tracing::info!(by = %who, records = records.len(), took = ?started.elapsed(), "export: snapshot taken, sending");
    let count = records.len();
    let chunks = Chunks {
        records: records.into_iter(),
        _permit: Some(permit),
    };
    let stream = futures_util::stream::iter(chunks.map(Ok::<Bytes, std::convert::Infallible>));
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(RECORDS_HEADER, HeaderValue::from(count));
    let file = format!("attachment; filename=\"{}.nedb\"", file_stem(&state.name));
    if let Ok(v) = HeaderValue::from_str(&file) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// Who may have the export, or the refusal. `Ok` names them for the log.
async fn allowed(state: &AppState, uri: &Uri, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<String, Response> {
    if !state.config.secure {
        return match peer {
            Some(ip) if is_loopback(ip) => Ok(format!("{ip} (insecure server, loopback)")),
            _ => {
                tracing::warn!(peer = ?peer, "export refused: an insecure server exports to loopback clients only");
                Err(text(
                    StatusCode::FORBIDDEN,
                    "an insecure server serves /_admin/export to loopback clients only",
                ))
            }
        };
    }
    let Some(token) = token(state, uri, headers) else {
        return Err(Refusal::TokenMissing.into_response());
    };
    let grant = state
        .security
        .authorize_http(&token, EXPORT_PATH, "GET")
        .await
        .map_err(|d| Refusal::Denied(d).into_response())?;
    let groups = state
        .security
        .groups_of(&grant.username)
        .await
        .map_err(|e| Refusal::Denied(HttpDenied::Internal(e.to_string())).into_response())?;
    if !groups.iter().any(|g| g == ADMIN) {
        tracing::warn!(user = %grant.username, "export refused: the user is not in the _ADMIN group");
        return Err(Refusal::Denied(HttpDenied::Unauthorized {
            path: happn_engine::security::http_permission_path(EXPORT_PATH),
            reason: Some(format!("user {} is not in the {ADMIN} group", grant.username)),
        })
        .into_response());
    }
    Ok(grant.username)
}

/// The session token: `Authorization: Bearer`, else the session cookie, else `?happn_token=`.
fn token(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    bearer
        .or_else(|| params::cookie(headers, &state.config.http_security.cookie_name))
        .or_else(|| {
            params::query_pairs(uri.query())
                .into_iter()
                .find(|(k, v)| k == "happn_token" && !v.is_empty())
                .map(|(_, v)| v)
        })
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The server's name, reduced to characters safe in a file name.
fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if stem.is_empty() {
        "happn".into()
    } else {
        stem
    }
}

/// The records as nedb lines, [`CHUNK_BYTES`] at a time.
struct Chunks {
    records: std::vec::IntoIter<Record>,
    /// The export's turn: given back when the body is dropped (sent, or the client went away).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Iterator for Chunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let mut chunk = String::new();
        for r in self.records.by_ref() {
            chunk.push_str(&nedb::line(&r));
            chunk.push('\n');
            if chunk.len() >= CHUNK_BYTES {
                break;
            }
        }
        (!chunk.is_empty()).then(|| Bytes::from(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_means_loopback() {
        for ip in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "fe80::1", "0.0.0.0"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn chunks_carry_every_record_once() {
        let records: Vec<Record> = (0..5000)
            .map(|i| Record::new(&format!("/r/{i:05}"), serde_json::Map::new(), i))
            .collect();
        let chunks: Vec<Bytes> = Chunks {
            records: records.clone().into_iter(),
            _permit: None,
        }
        .collect();
        assert!(chunks.len() > 1, "a large export is sent in several chunks");
        assert!(chunks.iter().all(|c| c.len() < CHUNK_BYTES + 1024));
        let text: String = chunks.iter().map(|c| std::str::from_utf8(c).unwrap()).collect();
        let loaded = nedb::parse(&text).unwrap();
        assert_eq!(loaded.records, records);
        assert_eq!(file_stem("a b/c"), "a_b_c");
    }
}
