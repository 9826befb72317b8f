//! The browser client's three scripts, happn-rs' own (sources and build in `clients/browser/`):
//! `/browser_client` (`window.HappnClient`), `/browser_primus.js` (`Primus`) and
//! `/browser_crypto.js` (`window.Crypto`). They are embedded at compile time from the committed
//! bundles, so building the server needs no npm, and served before the security middleware:
//! pages load them before they can log in, as with the original.
//!
//! Each answer carries an `ETag` (a hash of the bundle, computed at compile time) and a
//! `Last-Modified` (when this process started: the bundles cannot change while it runs), and a
//! conditional request that still matches gets `304 Not Modified`.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use std::time::SystemTime;

struct Script {
    path: &'static str,
    body: &'static str,
    content_type: &'static str,
    etag: &'static str,
}

/// FNV-1a, 64 bits: enough to tell two builds of a bundle apart, and a `const fn`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"<length>-<hash>"` in hex, written at compile time into a fixed buffer.
const fn etag_bytes(body: &str) -> [u8; 35] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 35];
    out[0] = b'"';
    let len = body.len() as u64;
    let hash = fnv1a(body.as_bytes());
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((len >> (60 - 4 * i)) & 0xf) as usize];
        out[18 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out[17] = b'-';
    out[34] = b'"';
    out
}

macro_rules! script {
    ($path:literal, $file:literal, $type:literal) => {{
        const BODY: &str = include_str!(concat!("../../../../clients/browser/dist/", $file));
        const ETAG: [u8; 35] = etag_bytes(BODY);
        Script {
            path: $path,
            body: BODY,
            content_type: $type,
            etag: match std::str::from_utf8(&ETAG) {
                Ok(s) => s,
                Err(_) => panic!("etag is ascii"),
            },
        }
    }};
}

static SCRIPTS: [Script; 3] = [
    script!("/browser_client", "browser_client.js", "application/javascript"),
    script!("/browser_primus.js", "browser_primus.js", "application/javascript; charset=UTF-8"),
    script!("/browser_crypto.js", "browser_crypto.js", "application/javascript"),
];

static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Fixes `Last-Modified` at server start (called when the router is built).
pub fn init() {
    STARTED.get_or_init(SystemTime::now);
}

/// The script for a GET or HEAD of one of the three paths, or `None`.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let script = SCRIPTS.iter().find(|s| s.path == path)?;
    let started = *STARTED.get_or_init(SystemTime::now);
    let last_modified = httpdate::fmt_http_date(started);
    let fresh = match headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tags) => tags.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == script.etag
        }),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            // HTTP dates have whole seconds
            .is_some_and(|since| httpdate::fmt_http_date(since) == last_modified || since > started),
    };
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(script.body.len()));
        r
    } else {
        (StatusCode::OK, script.body).into_response()
    };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(script.content_type));
    }
    h.insert(header::ETAG, HeaderValue::from_static(script.etag));
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=0"));
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &[(&'static str, &str)]) -> Option<Response> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        serve(&Method::GET, path, &map)
    }

    #[test]
    fn serves_the_three_scripts_with_validators() {
        for (path, global) in [
            ("/browser_client", "HappnClient"),
            ("/browser_primus.js", "Primus"),
            ("/browser_crypto.js", "Crypto"),
        ] {
            let resp = get(path, &[]).expect(path);
            assert_eq!(resp.status(), StatusCode::OK);
            let h = resp.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/javascript"));
            let etag = h[header::ETAG].to_str().unwrap().to_string();
            assert_eq!(etag.len(), 35);
            assert!(h.contains_key(header::LAST_MODIFIED));
            let script = SCRIPTS.iter().find(|s| s.path == path).unwrap();
            assert!(script.body.contains(global), "{path} defines {global}");
            // a revalidation with the same tag is answered without a body
            let again = get(path, &[("if-none-match", &etag)]).unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
            let other = get(path, &[("if-none-match", "\"0-0\"")]).unwrap();
            assert_eq!(other.status(), StatusCode::OK);
        }
        assert!(SCRIPTS[0].body.starts_with("//happn client v2.21.0\r\n//protocol v1.1.0\r\n"));
        assert!(get("/browser_client.js", &[]).is_none());
        assert!(serve(&Method::POST, "/browser_client", &HeaderMap::new()).is_none());
    }

    #[test]
    fn if_modified_since_matches_the_start_time() {
        init();
        let lm = get("/browser_primus.js", &[]).unwrap().headers()[header::LAST_MODIFIED]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            get("/browser_primus.js", &[("if-modified-since", &lm)]).unwrap().status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            get("/browser_primus.js", &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")])
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
}
