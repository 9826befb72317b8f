//! `encryptPayloads` on the wire (semantics §7), as frame transforms around the request handler:
//!
//! * in: the login's `data.encrypted` (ECIES to the server key) is opened into credentials; after
//!   an encrypted login, `{sessionId, encrypted:<hex>}` frames are decrypted with the session
//!   secret, and anything else but describe / login / request-nonce is refused;
//! * out: a successful login reply is sealed with ECIES to the client's key, then the connection's
//!   writer encrypts every frame with the session secret (replies, arrays, events, system
//!   messages). Describe and login replies, and errors about undecryptable frames, stay in clear.
//!
//! On a server without `encryptPayloads` this costs one flag check per frame in and one pointer
//! check per frame out.

use crate::session::Session;
use crate::state::{AppState, Outbox};
use happn_engine::security::crypto::{self, CryptoError, PassphraseCipher};
use happn_protocol::{anonymous_error, Frame, Reply, WireError, PROTOCOL_VERSION};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::sync::Arc;

/// One session's frame cipher (the legacy AES-256-CTR passphrase cipher keyed by its secret).
pub struct FrameCipher(PassphraseCipher);

impl std::fmt::Debug for FrameCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCipher(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("`encrypted` is not hex text")]
    Hex,
    #[error("it does not decrypt to text with this session's secret (altered, or encrypted with another secret)")]
    NotText,
    #[error("it does not decrypt to JSON with this session's secret (altered, or encrypted with another secret)")]
    NotJson,
}

impl FrameCipher {
    pub fn new(secret: &str) -> FrameCipher {
        FrameCipher(PassphraseCipher::new(secret))
    }

    /// `{"protocol":"1.1.0","encrypted":"<hex of the frame>"}`, the shape the 2.21 server sends.
    pub fn seal(&self, frame: &str) -> String {
        let mut out = String::with_capacity(40 + frame.len() * 2);
        out.push_str("{\"protocol\":\"");
        out.push_str(PROTOCOL_VERSION);
        out.push_str("\",\"encrypted\":\"");
        self.0.encrypt_hex_into(frame.as_bytes(), &mut out);
        out.push_str("\"}");
        out
    }

    /// Decrypt a client frame's `encrypted` hex into the request it carries. CTR mode has no
    /// integrity check, so an altered frame is recognised by not decrypting to JSON.
    pub fn open(&self, hex_text: &str) -> Result<Value, OpenError> {
        let bytes = self.0.decrypt_hex(hex_text).map_err(|_| OpenError::Hex)?;
        let text = String::from_utf8(bytes).map_err(|_| OpenError::NotText)?;
        match happn_protocol::decode_frame(&text) {
            Frame::Message(v) => Ok(v),
            Frame::Control(_) | Frame::Invalid(_) => Err(OpenError::NotJson),
        }
    }
}

/// The writer's last step for a queued frame: encrypted when the connection has a session
/// cipher. Primus control strings (`"primus::…"`) are never encrypted, only happn messages
/// (objects and arrays). Without a cipher the frame passes through untouched.
pub fn outgoing(cipher: Option<&FrameCipher>, frame: String) -> String {
    match cipher {
        Some(c) if frame.starts_with(['{', '[']) => c.seal(&frame),
        _ => frame,
    }
}

/// The session cipher a login sets up: only on an `encryptPayloads` server, and only for a session
/// with a secret (which every encrypted login has, since it presents a public key).
pub fn session_cipher(state: &AppState, secret: Option<&str>) -> Option<Arc<FrameCipher>> {
    secret
        .filter(|_| state.config.encrypt_payloads)
        .map(|s| Arc::new(FrameCipher::new(s)))
}

fn undecryptable(message: impl std::fmt::Display) -> String {
    anonymous_error(&WireError::error(message))
}

/// Unwrap an incoming frame before it is parsed as a request. `Err` is a reply to send in clear
/// (the connection stays open; no other connection is affected).
pub fn incoming(state: &AppState, cipher: Option<&FrameCipher>, frame: Value) -> Result<Value, String> {
    // A server without encryptPayloads has nothing to unwrap (and no connection has a cipher).
    if !state.config.encrypt_payloads {
        return Ok(frame);
    }
    let Value::Object(obj) = &frame else {
        return Ok(frame);
    };
    let mut was_encrypted = false;
    let frame = match obj.get("encrypted") {
        Some(enc) if !obj.contains_key("action") => {
            let Some(cipher) = cipher else {
                return Err(undecryptable(
                    "cannot decrypt the message: this connection has no encrypted session (log in first)",
                ));
            };
            let hex_text = enc
                .as_str()
                .ok_or_else(|| undecryptable("cannot decrypt the message: `encrypted` must be a hex string"))?;
            was_encrypted = true;
            cipher
                .open(hex_text)
                .map_err(|e| undecryptable(format!("cannot decrypt the message: {e}")))?
        }
        _ => frame,
    };
    let Value::Object(mut obj) = frame else {
        return Ok(frame);
    };
    let action = obj.get("action").and_then(Value::as_str);
    // The 2.21 client sends these three in clear even on an encrypted connection.
    let clear_allowed = matches!(action, Some("describe" | "login" | "request-nonce"));
    if cipher.is_some() && !was_encrypted && !clear_allowed {
        let message = "this connection encrypts payloads: after login, requests must be sent as {sessionId, encrypted}";
        return Err(refusal(&obj, action.unwrap_or("undefined"), message));
    }
    if action == Some("login") {
        match open_login(state, obj.get("data")) {
            Ok(credentials) => {
                obj.insert("data".into(), credentials);
            }
            Err(message) => return Err(refusal(&obj, "login", &message)),
        }
    }
    Ok(Value::Object(obj))
}

/// An error reply to a request we could read but will not run, echoing its eventId and sessionId.
fn refusal(request: &Map<String, Value>, action: &str, message: &str) -> String {
    Reply {
        event_id: request.get("eventId"),
        // As every login/describe reply, a refused login echoes no sessionId.
        session_id: request.get("sessionId").filter(|_| action != "login"),
        action,
        published: false,
    }
    .error(&WireError::error(message))
}

/// The credentials of an encrypted login: `data = {encrypted: Buffer, publicKey, loginType}` where
/// `encrypted` is ECIES(client key → server key) of the credentials' JSON.
fn open_login(state: &AppState, data: Option<&Value>) -> Result<Value, String> {
    let data = data.and_then(Value::as_object);
    let Some(encrypted) = data.and_then(|d| d.get("encrypted")) else {
        return Err("this server encrypts payloads (encryptPayloads): the login must be encrypted to the server's public key".into());
    };
    let bytes =
        buffer_bytes(encrypted).ok_or("data.encrypted must be a Buffer ({\"type\":\"Buffer\",\"data\":[…]}) or an array of bytes")?;
    let public_key = data
        .and_then(|d| d.get("publicKey"))
        .and_then(Value::as_str)
        .ok_or("an encrypted login needs the client's publicKey")?;
    let client = crypto::parse_public_key(public_key).map_err(|e| format!("publicKey: {e}"))?;
    // The reply (with the session secret and token) is sealed to the presented key, so that key
    // must be the one that encrypted these credentials: otherwise someone relaying a client's
    // login could swap in their own key and read the reply.
    if crypto::ecies_sender(&bytes).map_err(login_error)? != client {
        return Err("the login was not encrypted with the private key of the publicKey it presents".into());
    }
    let plain = crypto::ecies_decrypt(&state.server_key, &bytes).map_err(login_error)?;
    let mut credentials: Map<String, Value> =
        serde_json::from_slice(&plain).map_err(|_| "the decrypted login is not a JSON object".to_string())?;
    credentials.insert("publicKey".into(), Value::String(public_key.to_string()));
    Ok(Value::Object(credentials))
}

fn login_error(e: CryptoError) -> String {
    format!("cannot decrypt the login: {e}")
}

/// Node's `Buffer` as JSON (`{"type":"Buffer","data":[…]}`), or a bare byte array.
fn buffer_bytes(v: &Value) -> Option<Vec<u8>> {
    let list = match v {
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("Buffer") => o.get("data")?.as_array()?,
        Value::Array(a) => a,
        _ => return None,
    };
    list.iter().map(|b| b.as_u64().and_then(|n| u8::try_from(n).ok())).collect()
}

/// Send a successful login reply. On an `encryptPayloads` server it goes out sealed to the
/// session's public key, as `{"_meta":{"type":"login"},"protocol":…,"encrypted":Buffer,"publicKey":<server>}`,
/// and the writer then encrypts everything after it with the session secret.
pub fn send_login_reply(state: &AppState, session: &Session, tx: &Outbox, reply: String) -> Result<(), String> {
    if !state.config.encrypt_payloads {
        tx.text(reply);
        return Ok(());
    }
    let session_key = session
        .login
        .as_ref()
        .and_then(|l| l.user.as_ref())
        .and_then(|u| u.public_key.as_deref())
        .ok_or("an encrypted login needs the client's publicKey")?;
    let key = crypto::parse_public_key(session_key).map_err(|e| format!("publicKey: {e}"))?;
    let cipher = session.cipher.clone().ok_or("the session has no payload secret")?;
    let sealed = crypto::ecies_encrypt(&state.server_key, &key, reply.as_bytes());
    let mut frame = String::with_capacity(sealed.len() * 4 + 160);
    frame.push_str("{\"_meta\":{\"type\":\"login\"},\"protocol\":\"");
    frame.push_str(PROTOCOL_VERSION);
    frame.push_str("\",\"encrypted\":{\"type\":\"Buffer\",\"data\":[");
    for (i, b) in sealed.iter().enumerate() {
        if i > 0 {
            frame.push(',');
        }
        let _ = write!(frame, "{b}");
    }
    frame.push_str("]},\"publicKey\":");
    frame.push_str(&Value::String(state.public_key.clone()).to_string());
    frame.push('}');
    tx.clear(frame);
    tx.encrypt_with(Some(cipher));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_tampering_is_refused() {
        let c = FrameCipher::new("M9o9Y7afm");
        let frame = r#"{"action":"get","eventId":5,"path":"/a","sessionId":"s","protocol":"1.1.0"}"#;
        let sealed = c.seal(frame);
        let v: Value = serde_json::from_str(&sealed).unwrap();
        assert_eq!(v["protocol"], "1.1.0");
        let hex_text = v["encrypted"].as_str().unwrap();
        assert_eq!(c.open(hex_text).unwrap(), serde_json::from_str::<Value>(frame).unwrap());
        // Flip a byte near the front (the opening brace): no longer JSON.
        let mut bad = hex_text.to_string();
        bad.replace_range(0..2, "ff");
        assert!(matches!(c.open(&bad), Err(OpenError::NotJson | OpenError::NotText)));
        assert!(matches!(c.open("zz"), Err(OpenError::Hex)));
        assert!(FrameCipher::new("other").open(hex_text).is_err(), "another session's secret");
    }

    #[test]
    fn only_messages_are_encrypted() {
        let c = FrameCipher::new("s");
        assert_eq!(outgoing(None, "{\"a\":1}".into()), "{\"a\":1}");
        assert!(outgoing(Some(&c), "{\"a\":1}".into()).contains("\"encrypted\""));
        assert!(outgoing(Some(&c), "[{\"a\":1}]".into()).contains("\"encrypted\""));
        assert_eq!(outgoing(Some(&c), "\"primus::pong::1\"".into()), "\"primus::pong::1\"");
    }

    #[test]
    fn buffers() {
        assert_eq!(
            buffer_bytes(&serde_json::json!({"type": "Buffer", "data": [1, 2, 255]})),
            Some(vec![1, 2, 255])
        );
        assert_eq!(buffer_bytes(&serde_json::json!([0, 7])), Some(vec![0, 7]));
        assert_eq!(buffer_bytes(&serde_json::json!([256])), None);
        assert_eq!(buffer_bytes(&serde_json::json!("AAEC")), None);
    }
}
