//! One happn request in, its reply (and any events) out. Everything here is per connection
//! state plus the shared [`AppState`]; the socket loop in `conn.rs` only feeds frames in.

use crate::state::{AppState, Outbox};
use happn_engine::data::{Found, SetData, SetOptions, Written};
use happn_engine::pubsub::{Channel, EventKind, Subscriber};
use happn_engine::query::Query;
use happn_engine::record::{now_millis, Record};
use happn_engine::security::{
    self, crypto, policy, Activity, CachedPermissions, Credentials, NonceError, Policy, Profile, SecurityPath, TokenClaims,
};
use happn_engine::session::new_session_id;
use happn_engine::visibility;
use happn_engine::{AccessError, DataError};
use happn_protocol::request::{truthy, type_name};
use happn_protocol::{
    anonymous_error, item_json, item_json_text, unknown_action_error, Action, Data, EventMeta, RecordMeta, Reply, Request, RequestError,
    WireError,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The logged-in session of a socket.
pub struct Session {
    pub id: Arc<str>,
    pub index: usize,
    /// `None` in insecure mode.
    pub user: Option<SessionUser>,
}

/// Who a secure session belongs to and what its policy lets it do.
pub struct SessionUser {
    pub username: Arc<str>,
    /// Login time, epoch ms: the policy's time to live counts from here.
    pub timestamp: i64,
    /// The stateful profile the session matched at login.
    pub profile: Arc<Profile>,
    pub activity: Activity,
    pub permissions: CachedPermissions,
    /// The key presented at login or stored on the user (payload encryption, digest logins).
    pub public_key: Option<String>,
}

/// Per-socket state.
pub struct Conn {
    pub key: u64,
    pub session: Option<Session>,
    /// A user this connection's last request deleted: their sessions are closed after the reply.
    deleted_user: Option<String>,
    /// The session's payload cipher after an encrypted login (`encryptPayloads`).
    pub cipher: Option<Arc<crate::encryption::FrameCipher>>,
}

impl Conn {
    pub fn new(key: u64) -> Self {
        Conn {
            key,
            session: None,
            deleted_user: None,
            cipher: None,
        }
    }

    fn subscriber(&self) -> Option<Subscriber> {
        self.session.as_ref().map(|s| Subscriber {
            index: s.index,
            key: self.key,
        })
    }

    /// Forget the session: its subscriptions and its index slot.
    pub fn end_session(&mut self, state: &AppState) {
        if let Some(sub) = self.subscriber() {
            state.subscriptions.remove_subscriber(sub);
        }
        if let Some(s) = self.session.take() {
            state.indexes.release(s.index);
        }
    }
}

/// Why a request failed; mapped to happn's wire error shape in [`Failure::to_wire`] only.
#[derive(Debug)]
enum Failure {
    Data(DataError),
    Access(AccessError),
    Nonce(NonceError),
    Bad(String),
}

impl From<DataError> for Failure {
    fn from(e: DataError) -> Self {
        Failure::Data(e)
    }
}
impl From<AccessError> for Failure {
    fn from(e: AccessError) -> Self {
        Failure::Access(e)
    }
}
impl From<happn_engine::query::QueryError> for Failure {
    fn from(e: happn_engine::query::QueryError) -> Self {
        Failure::Data(DataError::Query(e))
    }
}

impl Failure {
    fn to_wire(&self) -> WireError {
        match self {
            Failure::Data(e) => WireError::error(e),
            Failure::Bad(m) => WireError::error(m),
            Failure::Nonce(e) => WireError::error(e),
            // The original answers a digest login without a live nonce with a plain Error.
            Failure::Access(e @ AccessError::NonceExpired) => WireError::error(e),
            Failure::Access(AccessError::Unauthorized { reason }) => WireError::access_denied("unauthorized", reason.clone()),
            Failure::Access(e) => WireError::access_denied(e.to_string(), None),
        }
    }
}

type Outcome = Result<String, Failure>;

fn send(tx: &Outbox, frame: String) {
    tx.text(frame);
}

/// Handle one decoded JSON frame.
pub async fn handle(state: &AppState, conn: &mut Conn, tx: &Outbox, frame: Value) {
    match parse(state, conn, frame) {
        Parsed::Request(req) => handle_request(state, conn, tx, req).await,
        Parsed::Answer(answer) => answer.send(tx),
    }
}

/// A frame decoded into a request, or the error reply it gets instead (not yet sent, so the
/// caller can keep replies in request order).
pub enum Parsed {
    Request(Box<Request>),
    Answer(Answer),
}

pub enum Answer {
    Text(String),
    /// Sent unencrypted even on an encrypting connection (payload-encryption refusals).
    Clear(String),
}

impl Answer {
    pub fn send(self, tx: &Outbox) {
        match self {
            Answer::Text(t) => send(tx, t),
            Answer::Clear(t) => {
                tx.clear(t);
            }
        }
    }
}

/// Unwrap payload encryption and parse the request.
pub fn parse(state: &AppState, conn: &mut Conn, frame: Value) -> Parsed {
    // Payload encryption: unwrap encrypted frames and logins; refusals go out in clear.
    let frame = match crate::encryption::incoming(state, conn, frame) {
        Ok(f) => f,
        Err(reply) => return Parsed::Answer(Answer::Clear(reply)),
    };
    parse_decoded(Request::parse(frame))
}

/// A parsed request, or the error reply for a frame that is not one. Shared by the `Value` path
/// ([`parse`]) and frames decoded straight into a request (`happn_protocol::decode_request`).
pub fn parse_decoded(result: Result<Box<Request>, RequestError>) -> Parsed {
    match result {
        Ok(r) => Parsed::Request(r),
        Err(RequestError::NotAnObject) => Parsed::Answer(Answer::Text(anonymous_error(&WireError::unknown_action("undefined")))),
        Err(RequestError::UnknownAction {
            action,
            event_id,
            session_id,
        }) => Parsed::Answer(Answer::Text(unknown_action_error(&action, event_id.as_ref(), session_id.as_ref()))),
        Err(RequestError::Malformed {
            action,
            event_id,
            session_id,
            message,
        }) => {
            let reply = Reply {
                event_id: event_id.as_ref(),
                session_id: session_id.as_ref(),
                action: action.as_str(),
                published: false,
            };
            Parsed::Answer(Answer::Text(reply.error(&WireError::error(message))))
        }
    }
}

/// Run a parsed request and queue its reply (and any events).
pub async fn handle_request(state: &AppState, conn: &mut Conn, tx: &Outbox, req: Box<Request>) {
    let mut req = req;
    let outcome = match req.action {
        Action::Describe => Ok(describe(state, &req)),
        // Rare and large futures are boxed, so the request future (allocated per request) is
        // the size of the common actions'.
        Action::Login => match Box::pin(login(state, conn, &req)).await {
            Ok(reply) => match crate::encryption::send_login_reply(state, conn, tx, reply) {
                Ok(()) => return,
                Err(message) => {
                    // Back to a connection without a session, in clear both ways.
                    conn.end_session(state);
                    state.set_session(conn.key, None, false, None);
                    conn.cipher = None;
                    tx.encrypt_with(None);
                    Err(Failure::Bad(message))
                }
            },
            Err(f) => Err(f),
        },
        Action::RequestNonce => request_nonce(state, &req),
        _ => match authorize(state, conn, &req).await {
            Err(f) => Err(f),
            Ok(()) if req.action == Action::Set && security_target(&req).is_some() => {
                let data = req.data.take().map(Data::into_value);
                Box::pin(set_security(state, &req, data)).await
            }
            Ok(()) if req.action == Action::Remove && security_target(&req).is_some() => remove_security(state, conn, &req).await,
            Ok(()) => match req.action {
                Action::Set => {
                    // The body moves into the store; the request keeps the rest for the reply.
                    let data = req.data.take();
                    set(state, &req, data).await
                }
                Action::Get => get(state, &req).await,
                Action::Remove => remove(state, &req).await,
                Action::On => match on(state, conn, &req).await {
                    // initialEmit answers with the reply and then one event per value.
                    Ok(frames) => {
                        frames.into_iter().for_each(|f| send(tx, f));
                        return;
                    }
                    Err(f) => Err(f),
                },
                Action::Off => off(state, conn, &req),
                Action::RevokeSession => revoke(state, conn, &req).await,
                Action::Describe | Action::Login | Action::RequestNonce => {
                    unreachable!("handled above")
                }
            },
        },
    };
    let frame = match outcome {
        Ok(frame) => frame,
        Err(f) => base_reply(&req).error(&f.to_wire()),
    };
    // Describe replies and login errors are never encrypted (the client has no secret for them).
    if matches!(req.action, Action::Describe | Action::Login) {
        tx.clear(frame);
    } else {
        send(tx, frame);
    }
    if let Some(user) = conn.deleted_user.take() {
        state.disconnect_user(&user, "security directory update: user deleted");
    }
}

fn base_reply(req: &Request) -> Reply<'_> {
    let session_id = match req.action {
        Action::Login | Action::Describe => None,
        _ => req.session_id.as_ref(),
    };
    Reply {
        event_id: req.event_id.as_ref(),
        session_id,
        action: req.action.as_str(),
        published: false,
    }
}

fn describe(state: &AppState, req: &Request) -> String {
    let data = json!({"name": state.name, "secure": state.config.secure, "encryptPayloads": state.config.encrypt_payloads, "publicKey": state.public_key});
    base_reply(req).ok(&data.to_string(), &RecordMeta::default())
}

async fn login(state: &AppState, conn: &mut Conn, req: &Request) -> Outcome {
    let data = req.data.as_ref().map(Data::to_value);
    let Some(Value::Object(data)) = data.as_deref() else {
        return Err(Failure::Bad("login needs a data object with credentials".into()));
    };
    let user = if state.config.secure {
        Some(
            state
                .security
                .authenticate(&Credentials::from_value(&Value::Object(data.clone())))
                .await?,
        )
    } else {
        None
    };
    // A second login on the same socket replaces the first session.
    conn.end_session(state);
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
    let public_key = user.as_ref().and_then(|u| u.public_key.clone());
    let session_user = user.map(|u| {
        // Profiles are matched once, at login, for the socket (type 1) and its token (type 0).
        let doc = u.session_doc(&id, timestamp, &info);
        let profiles = state.security.profiles();
        let token = state.security.issue_token(&TokenClaims {
            id: id.to_string(),
            username: u.username.clone(),
            timestamp,
            profile: Some(profiles.resolve(&doc, policy::STATELESS).name.clone()),
        });
        reply.insert("token".into(), Value::String(token));
        reply.insert("timestamp".into(), timestamp.into());
        SessionUser {
            username: Arc::from(u.username.as_str()),
            timestamp,
            profile: profiles.resolve(&doc, policy::STATEFUL),
            activity: Activity::new(timestamp),
            permissions: state.security.cache_permissions(&u),
            public_key: u.public_key.clone(),
        }
    });
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
    conn.cipher = crate::encryption::session_cipher(state, secret.as_deref());
    let username = session_user.as_ref().map(|u| u.username.clone());
    conn.session = Some(Session {
        id: id.clone(),
        index,
        user: session_user,
    });
    state.set_session(conn.key, Some(id), cluster_member, username);
    Ok(base_reply(req).ok(&Value::Object(reply).to_string(), &RecordMeta::default()))
}

/// `request-nonce`: a nonce for the key-pair login of `data.publicKey` (also in insecure mode).
fn request_nonce(state: &AppState, req: &Request) -> Outcome {
    let public_key = req.data.as_ref().map(Data::to_value);
    let public_key = public_key
        .as_deref()
        .and_then(|d| d.get("publicKey"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let nonce = state.security.request_nonce(public_key).map_err(Failure::Nonce)?;
    Ok(base_reply(req).ok(&json!({"nonce": nonce}).to_string(), &RecordMeta::default()))
}

/// The path a permission check is about: the channel's data path for `on`.
fn permission_path(req: &Request) -> Option<&str> {
    let p = req.path.as_ref()?.as_str()?;
    Some(if req.action == Action::On { Channel::data_path(p) } else { p })
}

/// Secure-mode checks before a data action, in the original's order: a session, not revoked,
/// the session policy (time to live, inactivity, usage), then permissions — the policy's own
/// when it has them, otherwise the user's groups as they are now. A denial answers once and the
/// action does not run.
async fn authorize(state: &AppState, conn: &mut Conn, req: &Request) -> Result<(), Failure> {
    let needs_session = state.config.secure || matches!(req.action, Action::On | Action::Off | Action::RevokeSession);
    let Some(session) = &mut conn.session else {
        if needs_session {
            return Err(AccessError::NotLoggedIn.into());
        }
        return Ok(());
    };
    let Some(user) = &mut session.user else {
        return Ok(());
    };
    // Leaving (off, revoke-session) is always allowed, even to a revoked session.
    if matches!(req.action, Action::Off | Action::RevokeSession) {
        return Ok(());
    }
    if state.security.is_revoked(&session.id) {
        return Err(denied(format!("session with id {} has been revoked", session.id)));
    }
    // A missing path is reported as such by the action itself.
    let Some(path) = permission_path(req) else {
        return Ok(());
    };
    let action = req.action.as_str();
    let policy = &user.profile.policy;
    let now = if policy.needs_time() { now_millis() } else { user.activity.last_ms };
    policy
        .check(user.timestamp, &user.activity, now)
        .map_err(|d| denied(d.reason().to_string()))?;
    if let Some(limited) = &policy.permissions {
        if !limited.allows(path, action) {
            return Err(denied(policy::PolicyDenial::PermissionsLimited.reason().to_string()));
        }
    } else {
        let permissions = state.security.current_permissions(&user.username, &mut user.permissions).await?;
        if !permissions.allows(path, action) {
            return Err(AccessError::Unauthorized { reason: None }.into());
        }
    }
    Policy::record_use(&mut user.activity, now);
    Ok(())
}

fn denied(reason: String) -> Failure {
    AccessError::Unauthorized { reason: Some(reason) }.into()
}

fn path_of(req: &Request) -> Result<&str, Failure> {
    req.path_str().map_err(Failure::Bad)
}

/// The security-directory record a set/remove addresses, if any.
fn security_target(req: &Request) -> Option<SecurityPath<'_>> {
    SecurityPath::parse(req.path.as_ref()?.as_str()?)
}

fn set_options(req: &Request) -> Result<SetOptions, Failure> {
    let tag = match req.options.get("tag") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) if !truthy(other) => None,
        Some(other) => return Err(Failure::Bad(format!("options.tag must be a string, not {}", type_name(other)))),
    };
    Ok(SetOptions {
        merge: req.option_truthy("merge"),
        tag,
        sibling: req.options.get("set_type").and_then(Value::as_str) == Some("sibling"),
        no_store: req.option_truthy("noStore"),
    })
}

/// The checks a data `set` passes before it writes: a path outside the protected records, and
/// valid options.
fn prepare_set(req: &Request) -> Result<(&str, SetOptions), Failure> {
    let path = path_of(req)?;
    if security::is_protected(path) {
        return Err(Failure::Bad(format!("{path} is a system record and cannot be written")));
    }
    Ok((path, set_options(req)?))
}

async fn set(state: &AppState, req: &Request, data: Option<Data>) -> Outcome {
    let (path, opts) = prepare_set(req)?;
    let written = state.data.set(path, data.map(set_data), &opts).await?;
    Ok(set_reply(state, req, path, &written))
}

fn set_reply(state: &AppState, req: &Request, path: &str, written: &Written) -> String {
    let meta = written_meta(written, path);
    publish_and_reply(state, req, EventKind::Set, path, written.data_json(), &meta)
}

/// The request's body as the engine takes it (still text when the parser left it so).
fn set_data(data: Data) -> SetData {
    match data {
        Data::Value(v) => SetData::Value(v),
        Data::Json(raw) => SetData::Json(raw),
    }
}

/// A `set` running alongside the connection's other writes (see `conn.rs`): validated and
/// authorised up front, its store write in flight; [`finish_write`] publishes and replies.
pub struct PendingWrite {
    req: Box<Request>,
    /// The path written, so a later write to the same path waits for this one.
    pub path: String,
    pub write: futures_util::future::BoxFuture<'static, Result<Written, DataError>>,
}

/// Start `req` as a pipelined write when it is a plain data `set` that passes every check;
/// otherwise hand it back to run in order with [`handle_request`]. Only durable stores gain
/// from this: concurrent writes of one client then share a group commit.
pub async fn start_write(state: &Arc<AppState>, conn: &mut Conn, mut req: Box<Request>) -> Result<PendingWrite, Box<Request>> {
    if req.action != Action::Set {
        return Err(req);
    }
    let (path, opts) = match prepare_set(&req) {
        Ok((path, opts)) => (path.to_string(), opts),
        Err(_) => return Err(req),
    };
    if authorize(state, conn, &req).await.is_err() {
        return Err(req);
    }
    let data = req.data.take();
    let store = state.data.clone();
    let target = path.clone();
    Ok(PendingWrite {
        req,
        path,
        write: Box::pin(async move { store.set(&target, data.map(set_data), &opts).await }),
    })
}

/// Publish a pipelined write's event and queue its reply (in the connection's request order).
pub fn finish_write(state: &AppState, tx: &Outbox, req: &Request, path: &str, result: Result<Written, DataError>) {
    match result {
        Ok(written) => send(tx, set_reply(state, req, path, &written)),
        Err(e) => send(tx, base_reply(req).error(&Failure::Data(e).to_wire())),
    }
}

impl PendingWrite {
    /// The request and path, once the write is done.
    pub fn into_parts(
        self,
    ) -> (
        Box<Request>,
        String,
        futures_util::future::BoxFuture<'static, Result<Written, DataError>>,
    ) {
        (self.req, self.path, self.write)
    }
}

fn written_meta<'a>(w: &'a Written, named: &'a str) -> RecordMeta<'a> {
    if w.stored {
        RecordMeta {
            created: Some(w.created),
            modified: Some(w.modified),
            path: Some(w.path(named)),
            tag: w.tag.as_deref(),
            ..Default::default()
        }
    } else {
        RecordMeta {
            path: Some(w.path(named)),
            ..Default::default()
        }
    }
}

async fn remove(state: &AppState, req: &Request) -> Outcome {
    let path = path_of(req)?;
    let removed = state.data.remove_unprotected(path, security::is_protected).await?;
    let data_json = format!("{{\"removed\":{removed}}}");
    let meta = RecordMeta {
        timestamp: Some(now_millis()),
        path: Some(path),
        ..Default::default()
    };
    Ok(publish_and_reply(state, req, EventKind::Remove, path, &data_json, &meta))
}

/// Publish a set/remove (unless `noPublish`) and build the writer's reply, whose `action` is the
/// event's `/SET@path` / `/REMOVE@path` when published.
fn publish_and_reply(state: &AppState, req: &Request, kind: EventKind, path: &str, data_json: &str, meta: &RecordMeta<'_>) -> String {
    let raw = if kind == EventKind::Remove { "remove" } else { "set" };
    // `/SET@<path>`, built on the stack when it fits: on a plain set, `format!` and an
    // allocation cost more than the rest of this function.
    let mut stack = [0u8; 192];
    let owned: String;
    let action: &str = match action_on_stack(&mut stack, kind.as_str(), path) {
        Some(action) => action,
        None => {
            owned = format!("/{}@{path}", kind.as_str());
            &owned
        }
    };
    let published = !req.option_truthy("noPublish");
    if published {
        publish(state, req, kind, path, data_json, meta, action);
    }
    let reply = Reply {
        action: if published { action } else { raw },
        published,
        ..base_reply(req)
    };
    reply.ok(data_json, meta)
}

/// `/<kind>@<path>` written into `buf`, when it fits.
fn action_on_stack<'b>(buf: &'b mut [u8], kind: &str, path: &str) -> Option<&'b str> {
    let len = 2 + kind.len() + path.len();
    let out = buf.get_mut(..len)?;
    out[0] = b'/';
    out[1..1 + kind.len()].copy_from_slice(kind.as_bytes());
    out[1 + kind.len()] = b'@';
    out[2 + kind.len()..].copy_from_slice(path.as_bytes());
    // Valid UTF-8 pieces joined at ASCII bytes.
    std::str::from_utf8(out).ok()
}

/// Deliver the event of a set/remove to every matching subscription, before the writer's reply.
#[allow(clippy::too_many_arguments)]
/// Events are queued on every recipient's outbox before the caller queues its own reply, so the
/// writer always sees its events first; across sockets, order is up to each socket's writer.
fn publish(state: &AppState, req: &Request, kind: EventKind, path: &str, data_json: &str, meta: &RecordMeta<'_>, action: &str) {
    if !state.subscriptions.has_any() {
        return;
    }
    let deliveries = state.subscriptions.deliveries(kind, path);
    if deliveries.is_empty() {
        return;
    }
    let targets: Option<Vec<&str>> = req
        .options
        .get("targetClients")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let no_cluster = req.option_truthy("noCluster");
    let event = EventMeta::new(data_json, meta, action, req.session_id.is_some());
    state.with_peers(|peers| {
        for (sub, channel) in deliveries.iter() {
            let Some(peer) = peers.get(&sub.key) else {
                continue;
            };
            let Some(session_id) = &peer.session_id else {
                continue;
            };
            if targets.as_ref().is_some_and(|t| !t.contains(&session_id.as_ref())) || (no_cluster && peer.cluster_member) {
                continue;
            }
            peer.tx.text(event.render(session_id, channel));
        }
    });
}

async fn get(state: &AppState, req: &Request) -> Outcome {
    let path = path_of(req)?;
    let criteria = req.options.get("criteria").filter(|c| !c.is_null());
    let query_options = req.options.get("options").filter(|o| !o.is_null());
    let query = Query::parse(criteria, query_options)?;
    let path_only = query_options.and_then(|o| o.get("path_only")).is_some_and(truthy);
    let found = state.data.get(path, &query, criteria.is_some() || path_only).await?;
    let reply = base_reply(req);
    Ok(match found {
        Found::One(Some(r)) => {
            if query.has_projection() {
                let projected = query.project(r.data.map());
                reply.ok(
                    &serde_json::to_string(&projected).expect("JSON"),
                    &RecordMeta {
                        path: Some(&r.path),
                        ..Default::default()
                    },
                )
            } else {
                let meta = RecordMeta {
                    created: Some(r.created),
                    modified: Some(r.modified),
                    path: Some(&r.path),
                    tag: r.tag.as_deref(),
                    ..Default::default()
                };
                reply.ok(r.data.json(), &meta)
            }
        }
        Found::One(None) => reply.ok("null", &RecordMeta::default()),
        Found::Count(n) => reply.ok(&format!("{{\"value\":{n}}}"), &RecordMeta::default()),
        Found::Many(records) => {
            let items = records.iter().map(|r| {
                let id = Some(r.path.as_str());
                if path_only {
                    item_json(
                        &Map::new(),
                        &RecordMeta {
                            path: id,
                            id,
                            ..Default::default()
                        },
                    )
                } else if query.has_projection() {
                    item_json(
                        &query.project(r.data.map()),
                        &RecordMeta {
                            path: id,
                            id,
                            ..Default::default()
                        },
                    )
                } else {
                    let meta = RecordMeta {
                        created: Some(r.created),
                        modified: Some(r.modified),
                        path: id,
                        id,
                        tag: r.tag.as_deref(),
                        ..Default::default()
                    };
                    item_json_text(r.data.json(), &meta)
                }
            });
            reply.array(items)
        }
    })
}

fn ref_count(req: &Request) -> i64 {
    match req.options.get("refCount") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
        _ => 0,
    }
}

async fn on(state: &AppState, conn: &Conn, req: &Request) -> Result<Vec<String>, Failure> {
    let channel = path_of(req)?;
    let sub = conn.subscriber().ok_or(Failure::Access(AccessError::NotLoggedIn))?;
    state.subscriptions.subscribe(sub, channel, ref_count(req)).map_err(Failure::Bad)?;
    let reply = base_reply(req);
    let initial_callback = req.option_truthy("initialCallback");
    let initial_emit = req.option_truthy("initialEmit");
    if !initial_callback && !initial_emit {
        return Ok(vec![reply.ok_status_first("{}")]);
    }
    // Initial values: the subscription's data path read as a (possibly single-item) list in path
    // order; a failing read still answers ok, as the original does.
    let data_path = Channel::data_path(channel);
    let records = match state.data.get(data_path, &Query::default(), true).await {
        Ok(Found::Many(r)) => r,
        _ => Vec::new(),
    };
    let metas = |r: &Record| -> String {
        let mut s = String::new();
        let mut w = happn_protocol::json::ObjectWriter::open(&mut s);
        w.int("created", r.created)
            .int("modified", r.modified)
            .str("path", &r.path)
            .str("_id", &r.path);
        w.close();
        s
    };
    if initial_callback {
        let mut items = Vec::with_capacity(records.len());
        let mut raw = Vec::with_capacity(records.len());
        for r in &records {
            let meta = RecordMeta {
                created: Some(r.created),
                modified: Some(r.modified),
                path: Some(&r.path),
                id: Some(&r.path),
                ..Default::default()
            };
            let item = item_json_text(r.data.json(), &meta);
            raw.push(format!("{{\"data\":{item},\"_meta\":{}}}", metas(r)));
            items.push(item);
        }
        return Ok(vec![
            reply.ok_initial_values(&format!("[{}]", items.join(",")), &format!("[{}]", raw.join(",")))
        ]);
    }
    // initialEmit: the reply first, then one event per value carrying the `on` request's eventId.
    let session_id = conn.session.as_ref().map(|s| s.id.to_string()).unwrap_or_default();
    let mut frames = vec![reply.ok_status_first("[]")];
    for r in &records {
        let mut s = String::new();
        let mut w = happn_protocol::json::ObjectWriter::open(&mut s);
        w.value("data", r.data.map());
        let mut m = w.object("_meta");
        m.int("created", r.created)
            .int("modified", r.modified)
            .str("path", &r.path)
            .str("_id", &r.path);
        m.str("channel", channel)
            .str("sessionId", &session_id)
            .str("action", channel)
            .str("type", "data");
        if let Some(e) = &req.event_id {
            m.value("eventId", e);
        }
        m.str("status", "ok").bool("published", false);
        m.close();
        w.str("protocol", happn_protocol::PROTOCOL_VERSION);
        w.close();
        frames.push(s);
    }
    Ok(frames)
}

fn off(state: &AppState, conn: &Conn, req: &Request) -> Outcome {
    let channel = path_of(req)?;
    let sub = conn.subscriber().ok_or(Failure::Access(AccessError::NotLoggedIn))?;
    if channel == "*" {
        state.subscriptions.remove_subscriber(sub);
    } else {
        state.subscriptions.unsubscribe(sub, channel, ref_count(req));
    }
    Ok(base_reply(req).ok_status_first("{}"))
}

async fn revoke(state: &AppState, conn: &Conn, req: &Request) -> Outcome {
    let session = conn.session.as_ref().ok_or(Failure::Access(AccessError::NotLoggedIn))?;
    if session.user.is_none() {
        return Err(Failure::Bad("invalid session token".into()));
    }
    state.security.revoke(&session.id).await?;
    Ok(base_reply(req).ok_status_first("{}"))
}

/// `set` on a user, group or membership path: validated and applied through the security
/// directory (passwords hashed, never echoed), then answered and published like any set.
async fn set_security(state: &AppState, req: &Request, data: Option<Value>) -> Outcome {
    let path = path_of(req)?;
    let target = SecurityPath::parse(path).ok_or_else(|| Failure::Bad(format!("{path} is not a security record")))?;
    if path.contains('*') {
        return Err(Failure::Bad("security records are written one at a time: no wildcards".into()));
    }
    for unsupported in ["tag", "set_type", "noStore"] {
        if req.options.get(unsupported).is_some_and(truthy) {
            return Err(Failure::Bad(format!("options.{unsupported} is not supported on security records")));
        }
    }
    let body = match data {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            return Err(Failure::Bad(format!(
                "a security record must be an object, not {}",
                type_name(&other)
            )))
        }
    };
    let merge = req.option_truthy("merge");
    let sec = &state.security;
    let record = match target {
        SecurityPath::User(name) => sec.upsert_user(name, body, merge).await?,
        SecurityPath::Group(name) => sec.upsert_group(name, body, merge).await?,
        SecurityPath::Membership { user, group } => sec.link_group(user, group, body).await?,
        SecurityPath::Other => return Err(Failure::Bad(format!("{path} is a system record and cannot be written"))),
    };
    // What the writer and the subscribers see of it: never a hash.
    let record = visibility::client_view(record).ok_or_else(|| Failure::Bad(format!("{path} is a system record")))?;
    let data_json = record.data.json();
    let meta = RecordMeta {
        created: Some(record.created),
        modified: Some(record.modified),
        path: Some(&record.path),
        ..Default::default()
    };
    Ok(publish_and_reply(state, req, EventKind::Set, path, data_json, &meta))
}

/// `remove` of a user (with its memberships; its live sessions are then closed), a group (with
/// its memberships) or a membership.
async fn remove_security(state: &AppState, conn: &mut Conn, req: &Request) -> Outcome {
    let path = path_of(req)?;
    let target = SecurityPath::parse(path).ok_or_else(|| Failure::Bad(format!("{path} is not a security record")))?;
    if path.contains('*') {
        return Err(Failure::Bad("security records are removed one at a time: no wildcards".into()));
    }
    let sec = &state.security;
    let removed = match target {
        SecurityPath::User(name) => {
            let existed = sec.delete_user(name).await?;
            if existed {
                conn.deleted_user = Some(name.to_string());
            }
            existed
        }
        SecurityPath::Group(name) => sec.delete_group(name).await?,
        SecurityPath::Membership { user, group } => sec.unlink_group(user, group).await?,
        SecurityPath::Other => return Err(Failure::Bad(format!("{path} is a system record and cannot be removed"))),
    };
    let data_json = format!("{{\"removed\":{}}}", usize::from(removed));
    let meta = RecordMeta {
        timestamp: Some(now_millis()),
        path: Some(path),
        ..Default::default()
    };
    Ok(publish_and_reply(state, req, EventKind::Remove, path, &data_json, &meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_fit_on_the_stack_or_fall_back() {
        let mut buf = [0u8; 192];
        assert_eq!(action_on_stack(&mut buf, "SET", "/a/é/b"), Some("/SET@/a/é/b"));
        assert_eq!(action_on_stack(&mut buf, "REMOVE", ""), Some("/REMOVE@"));
        let long = "x".repeat(187);
        assert_eq!(action_on_stack(&mut buf, "SET", &long).map(str::len), Some(192));
        assert_eq!(action_on_stack(&mut buf, "SET", &format!("{long}y")), None);
    }
}
