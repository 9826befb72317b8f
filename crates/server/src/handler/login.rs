//! A session's life: `describe`, `login` (password, token or key-pair, then the reply, sealed
//! when the server encrypts payloads), `request-nonce` for key-pair logins, `revoke-session`.

use super::{base_reply, Failure, Outcome};
use crate::session::{Identity, Login, Session};
use crate::state::{AppState, Outbox};
use happn_engine::record::now_millis;
use happn_engine::security::{crypto, Credentials};
use happn_engine::session::new_session_id;
use happn_engine::AccessError;
use happn_protocol::request::truthy;
use happn_protocol::{RecordMeta, Request};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub(super) fn describe(state: &AppState, req: &Request) -> String {
    let data = json!({"name": state.name, "secure": state.config.secure, "encryptPayloads": state.config.encrypt_payloads, "publicKey": state.public_key});
    base_reply(req).ok(&data.to_string(), &RecordMeta::default())
}

/// Log the socket in and send the reply (`Ok` once it is queued). A second login on the same
/// socket replaces the first session.
pub(super) async fn login(
    state: &AppState,
    session: &mut Session,
    tx: &Outbox,
    req: &Request,
    data: Option<&Map<String, Value>>,
) -> Result<(), Failure> {
    let reply = open(state, session, req, data).await?;
    match crate::encryption::send_login_reply(state, session, tx, reply) {
        Ok(()) => Ok(()),
        Err(message) => {
            // Back to a connection without a session, in clear both ways.
            session.end(state);
            session.cipher = None;
            tx.encrypt_with(None);
            Err(Failure::Bad(message))
        }
    }
}

/// Authenticate (secure mode), start the session and build the login reply.
async fn open(state: &AppState, session: &mut Session, req: &Request, data: Option<&Map<String, Value>>) -> Outcome {
    let Some(data) = data else {
        return Err(Failure::Bad("login needs a data object with credentials".into()));
    };
    let user = if state.config.secure {
        let creds = Credentials::from_value(&Value::Object(data.clone()));
        let result = state.security.authenticate(&creds).await;
        state.telemetry.login_result(Some(&creds), &result, "socket");
        Some(result?)
    } else {
        state.telemetry.login_result::<()>(None, &Ok(()), "socket");
        None
    };
    session.end(state);
    let id: Arc<str> = Arc::from(new_session_id());
    let index = state.indexes.acquire();
    let timestamp = now_millis();
    let mut info = match data.get("info") {
        Some(Value::Object(i)) => i.clone(),
        _ => Map::new(),
    };
    info.entry("_local").or_insert(Value::Bool(false));
    info.insert("happn".into(), json!({"name": state.name}));
    let cluster_member = info.get("clusterName").is_some_and(truthy);
    let mut reply = Map::new();
    reply.insert("id".into(), Value::String(id.to_string()));
    let session_user = user.map(|u| {
        let (session_user, token) = state.security.open_session(&u, &id, timestamp, &info);
        reply.insert("token".into(), Value::String(token));
        reply.insert("timestamp".into(), timestamp.into());
        session_user
    });
    let public_key = session_user.as_ref().and_then(|u| u.public_key.clone());
    reply.insert("info".into(), Value::Object(info));
    reply.insert("index".into(), index.into());
    reply.insert("type".into(), 1.into());
    // A session with a public key gets the passphrase for payload encryption (sent in the reply,
    // which is ECIES-sealed when the server encrypts payloads).
    let secret = public_key.as_ref().map(|_| crypto::session_secret());
    if let Some(u) = &session_user {
        let mut shown = json!({"username": u.username.as_ref()});
        if let Some(pk) = &public_key {
            shown["publicKey"] = Value::String(pk.clone());
        }
        reply.insert("user".into(), shown);
    }
    if let Some(s) = &secret {
        reply.insert("secret".into(), Value::String(s.clone()));
    }
    let identity = Arc::new(Identity {
        id,
        username: session_user.as_ref().map(|u| u.username.clone()),
        cluster_member,
    });
    let cipher = crate::encryption::session_cipher(state, secret.as_deref());
    session.begin(
        state,
        Login {
            identity,
            index,
            user: session_user,
        },
        cipher,
    );
    Ok(base_reply(req).ok(&Value::Object(reply).to_string(), &RecordMeta::default()))
}

/// `request-nonce`: a nonce for the key-pair login of `data.publicKey` (also in insecure mode).
pub(super) fn request_nonce(state: &AppState, req: &Request, public_key: &str) -> Outcome {
    let nonce = state.security.request_nonce(public_key).map_err(Failure::Nonce)?;
    Ok(base_reply(req).ok(&json!({"nonce": nonce}).to_string(), &RecordMeta::default()))
}

/// `revoke-session`: this session, and every token minted for it, is refused from now on.
pub(super) async fn revoke(state: &AppState, session: &Session, req: &Request) -> Outcome {
    let login = session.login.as_ref().ok_or(Failure::Access(AccessError::NotLoggedIn))?;
    if login.user.is_none() {
        return Err(Failure::Bad("invalid session token".into()));
    }
    state.security.revoke(&login.identity.id).await?;
    state.telemetry.revoked();
    Ok(base_reply(req).ok_status_first("{}"))
}
