//! The security middleware of secure mode (semantics §8, step 6): exclusions, the `/auth`
//! routes, then a session token (cookie or `?happn_token=`) authorised for `/@HTTP<pathname>`
//! with the lower-case method as the action. Refusals are typed and turned into the original's
//! 403 replies in one place ([`Refusal::into_response`]).

use super::{auth, params, text};
use crate::config::ConfigError;
use crate::state::AppState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use happn_engine::security::HttpDenied;
use happn_engine::Pattern;
use serde_json::Value;

pub const DEFAULT_COOKIE_NAME: &str = "happn_token";

/// `middleware.security` of the config.
#[derive(Debug, Clone)]
pub struct SecurityMiddleware {
    /// Paths that skip the token check. Anchored `*` patterns on the pathname (see
    /// COMPATIBILITY.md: the original matched unanchored regexes against the whole URL).
    pub exclusions: Vec<Pattern>,
    /// Cookie carrying the session token.
    pub cookie_name: String,
}

impl Default for SecurityMiddleware {
    fn default() -> Self {
        SecurityMiddleware {
            exclusions: Vec::new(),
            cookie_name: DEFAULT_COOKIE_NAME.into(),
        }
    }
}

impl SecurityMiddleware {
    /// Read a `middleware` object (`{security: {exclusions, cookieName}}`) found at `key`.
    pub fn from_middleware(key: &str, v: &Value, warnings: &mut Vec<String>) -> Result<SecurityMiddleware, ConfigError> {
        let mut mw = SecurityMiddleware::default();
        for (name, cfg) in object(key, v)? {
            let key = format!("{key}.{name}");
            if !crate::config::keys::check(&key, warnings) {
                continue;
            }
            for (k, sv) in object(&key, cfg)? {
                let sk = format!("{key}.{k}");
                if !crate::config::keys::check(&sk, warnings) {
                    continue;
                }
                match k.as_str() {
                    "exclusions" => {
                        let list = sv.as_array().ok_or_else(|| type_error(&sk, "an array of path patterns", sv))?;
                        for p in list {
                            let p = p.as_str().ok_or_else(|| type_error(&sk, "an array of path patterns", p))?;
                            mw.exclusions.push(Pattern::new(p));
                        }
                    }
                    "cookieName" => match sv.as_str() {
                        Some(name) if is_cookie_name(name) => mw.cookie_name = name.to_string(),
                        _ => return Err(type_error(&sk, "a cookie name", sv)),
                    },
                    _ => warnings.push(format!("unknown config key `{sk}` ignored")),
                }
            }
        }
        Ok(mw)
    }

    pub fn excluded(&self, pathname: &str) -> bool {
        self.exclusions.iter().any(|p| p.matches(pathname))
    }
}

fn object<'v>(key: &str, v: &'v Value) -> Result<&'v serde_json::Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| type_error(key, "an object", v))
}

fn type_error(key: &str, expected: &'static str, got: &Value) -> ConfigError {
    ConfigError::Type {
        key: key.into(),
        expected,
        got: crate::config::describe(got),
    }
}

/// An RFC 6265 cookie name (a token: no separators, spaces or controls).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// What the middleware decided.
pub enum Gate {
    /// Go on to the routes after security (static files, then 404).
    Pass,
    /// Answered here: an `/auth` route or a refusal.
    Respond(Response),
}

/// Why a guarded request is refused.
#[derive(Debug)]
pub enum Refusal {
    TokenMissing,
    Denied(HttpDenied),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = match self {
            Refusal::TokenMissing => "happn_token cookie missing in request".to_string(),
            Refusal::Denied(HttpDenied::Internal(e)) => {
                tracing::warn!(error = %e, "HTTP authorisation failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
            Refusal::Denied(denied) => {
                if let HttpDenied::Unauthorized {
                    reason: Some(reason),
                    path,
                } = &denied
                {
                    tracing::debug!(%path, %reason, "HTTP request refused");
                }
                denied.to_string()
            }
        };
        let mut r = text(StatusCode::FORBIDDEN, &body);
        r.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"unauthorized access"));
        r
    }
}

/// Run the security middleware for a request that no earlier route claimed (secure mode only).
pub async fn gate(state: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Gate {
    let mw = &state.config.http_security;
    let path = uri.path();
    if mw.excluded(path) {
        return Gate::Pass;
    }
    // Like the original, the auth routes answer any method and read only the query string.
    if path == "/auth/login" {
        return Gate::Respond(auth::login(state, uri.query()).await);
    }
    if path == "/auth/request-nonce" {
        return Gate::Respond(auth::request_nonce(state, uri.query()).await);
    }
    let token = params::cookie(headers, &mw.cookie_name).or_else(|| {
        params::query_pairs(uri.query())
            .into_iter()
            .find(|(k, v)| k == "happn_token" && !v.is_empty())
            .map(|(_, v)| v)
    });
    let Some(token) = token else {
        return Gate::Respond(Refusal::TokenMissing.into_response());
    };
    match state.security.authorize_http(&token, path, method.as_str()).await {
        Ok(_) => Gate::Pass,
        Err(denied) => Gate::Respond(Refusal::Denied(denied).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_are_anchored_on_the_pathname() {
        let mw = SecurityMiddleware {
            exclusions: ["/", "/public/*", "*.css"].iter().map(|p| Pattern::new(p)).collect(),
            ..Default::default()
        };
        assert!(mw.excluded("/"));
        assert!(mw.excluded("/public/a/b.html"));
        assert!(mw.excluded("/x/site.css"));
        assert!(!mw.excluded("/secret"), "'/' only matches itself");
        assert!(!mw.excluded("/x/public/a"), "anchored");
        assert!(!mw.excluded("/public"), "the pattern needs the slash");
    }

    #[test]
    fn reads_middleware_config() {
        let mut w = Vec::new();
        let v = serde_json::json!({"security": {"exclusions": ["/public/*"], "cookieName": "my_token", "other": 1}, "system": {}});
        let mw = SecurityMiddleware::from_middleware("middleware", &v, &mut w).unwrap();
        assert_eq!(mw.cookie_name, "my_token");
        assert!(mw.excluded("/public/x"));
        assert_eq!(w.len(), 2, "{w:?}");
        let bad = serde_json::json!({"security": {"cookieName": "a;b"}});
        assert!(SecurityMiddleware::from_middleware("middleware", &bad, &mut w).is_err());
        let bad = serde_json::json!({"security": {"exclusions": "/x"}});
        let e = SecurityMiddleware::from_middleware("middleware", &bad, &mut w)
            .unwrap_err()
            .to_string();
        assert!(e.contains("middleware.security.exclusions"), "{e}");
    }

    #[test]
    fn refusals_carry_the_original_texts() {
        let r = Refusal::TokenMissing.into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.extensions().get::<hyper::ext::ReasonPhrase>().map(|p| p.as_bytes()),
            Some(&b"unauthorized access"[..])
        );
        let r = Refusal::Denied(HttpDenied::InvalidToken).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = Refusal::Denied(HttpDenied::Internal("x".into())).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
