//! `/auth/login`: credentials in the query string (the original's aliases), answered with a
//! session token in the original's hand-built JSON envelope.

use super::params;
use crate::handler::{access_error, Via};
use crate::state::AppState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use happn_engine::security::Credentials;

pub async fn login(state: &AppState, query: Option<&str>) -> Response {
    let creds = Credentials::from_value(&params::login_credentials(&params::query_pairs(query)));
    let result = state.security.login_for_token(&creds).await;
    state.telemetry.login_result(Some(&creds), &result, "/auth/login");
    match result {
        Ok((token, _)) => envelope(
            StatusCode::OK,
            "login successful",
            &serde_json::Value::String(token).to_string(),
            "null",
        ),
        Err(e) => {
            let error = serde_json::to_string(&access_error(&e, Via::Http)).expect("a wire error serialises");
            envelope(StatusCode::FORBIDDEN, "login failed", "null", &error)
        }
    }
}

/// `/auth/request-nonce?publicKey=…`: a nonce for a key-pair login, the HTTP twin of the
/// `request-nonce` action. Without a (valid) key the original fell into connect's default 500
/// page; happn-rs answers 500 with the reason as text.
pub async fn request_nonce(state: &AppState, query: Option<&str>) -> Response {
    let pairs = params::query_pairs(query);
    let key = params::first_matching(&pairs, &["publicKey", "public_key", "public", "key", "public-key"]).unwrap_or("");
    match state.security.request_nonce(key) {
        Ok(nonce) => envelope(
            StatusCode::OK,
            "nonce generated",
            &serde_json::Value::String(nonce).to_string(),
            "null",
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("Error: {e}"),
        )
            .into_response(),
    }
}

/// `{"message":"…", "data":…, "error":…}` — with a space after each comma, byte for byte as the
/// original writes it; clients and scripts may compare the text.
fn envelope(status: StatusCode, message: &str, data_json: &str, error_json: &str) -> Response {
    let body = format!(r#"{{"message":"{message}", "data":{data_json}, "error":{error_json}}}"#);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use happn_engine::AccessError;

    #[tokio::test]
    async fn envelope_text_is_exact() {
        let r = envelope(
            StatusCode::FORBIDDEN,
            "login failed",
            "null",
            r#"{"name":"AccessDenied","message":"Invalid credentials"}"#,
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(
            &body[..],
            br#"{"message":"login failed", "data":null, "error":{"name":"AccessDenied","message":"Invalid credentials"}}"#
        );
        assert_eq!(
            serde_json::to_string(&access_error(&AccessError::LockedOut, Via::Http)).unwrap(),
            r#"{"name":"AccessDenied","message":"Account locked out"}"#
        );
        // `/auth/login` answers every failed login as AccessDenied; a socket the original's way.
        assert_eq!(
            serde_json::to_string(&access_error(&AccessError::NonceExpired, Via::Http)).unwrap(),
            r#"{"name":"AccessDenied","message":"nonce expired or public key invalid"}"#
        );
        assert_eq!(
            access_error(&AccessError::NonceExpired, Via::Socket).name,
            "Error: nonce expired or public key invalid"
        );
    }
}
