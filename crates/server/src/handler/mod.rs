//! One happn request in, its reply (and any events) out. [`handle_request`] authorises the
//! session and dispatches with one match on the request's [`Command`] (its options already
//! typed by the protocol crate) into the module of the action's family:
//!
//! - `login.rs`: describe, login, request-nonce, revoke-session;
//! - `data.rs`: set, get, remove (and pipelined sets, [`start_write`] / [`finish_write`]);
//! - `subscribe.rs`: on, off;
//! - `security_records.rs`: set and remove of users, groups and memberships;
//! - `publish.rs`: a write's event, queued to its subscribers before the writer's reply.
//!
//! Failures are mapped to happn's wire errors here only ([`Failure::to_wire`], [`access_error`]).

mod data;
mod login;
pub(crate) mod publish;
mod security_records;
mod subscribe;

pub(crate) use data::{finish_write, start_write, PendingWrite};

use crate::session::Session;
use crate::state::{AppState, Outbox};
use crate::telemetry::RequestOutcome;
use happn_engine::pubsub::Channel;
use happn_engine::security::{AuthorizeError, NonceError, SecurityPath};
use happn_engine::{AccessError, DataError};
use happn_protocol::{anonymous_error, unknown_action_error, Action, Command, Reply, Request, RequestError, WireError};
use serde_json::Value;

/// Why a request failed; mapped to happn's wire error shape in [`Failure::to_wire`] only.
#[derive(Debug)]
enum Failure {
    Data(DataError),
    Access(AccessError),
    Nonce(NonceError),
    Bad(String),
    /// Refused by a per-session limit (`limits.*`); the message names it.
    Limited(String),
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
impl From<AuthorizeError> for Failure {
    fn from(e: AuthorizeError) -> Self {
        match e {
            AuthorizeError::Denied(e) => Failure::Access(e),
            AuthorizeError::Data(e) => Failure::Data(e),
        }
    }
}
impl From<happn_engine::query::QueryError> for Failure {
    fn from(e: happn_engine::query::QueryError) -> Self {
        Failure::Data(DataError::Query(e))
    }
}

impl Failure {
    /// How the request ended, for the metrics.
    fn outcome(&self) -> RequestOutcome {
        match self {
            Failure::Access(_) => RequestOutcome::Denied,
            Failure::Limited(_) => RequestOutcome::Limited,
            _ => RequestOutcome::Error,
        }
    }

    fn to_wire(&self) -> WireError {
        match self {
            Failure::Data(e) => WireError::error(e),
            Failure::Bad(m) | Failure::Limited(m) => WireError::error(m),
            Failure::Nonce(e) => WireError::error(e),
            Failure::Access(e) => access_error(e, Via::Socket),
        }
    }
}

/// Where an access failure is answered: a websocket reply or an HTTP response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Socket,
    Http,
}

/// The wire error for an access failure, websocket and HTTP alike. The one difference is the
/// original's: a digest login without a live nonce is a plain `Error` on a socket, while
/// `/auth/login` answers every failed login as `AccessDenied`.
pub(crate) fn access_error(e: &AccessError, via: Via) -> WireError {
    match e {
        AccessError::NonceExpired if via == Via::Socket => WireError::error(e),
        AccessError::Unauthorized { reason } => WireError::access_denied("unauthorized", reason.clone()),
        other => WireError::access_denied(other.to_string(), None),
    }
}

type Outcome = Result<String, Failure>;

/// A frame decoded into a request, or the error reply it gets instead (not yet sent, so the
/// caller can keep replies in request order).
pub(crate) enum Parsed {
    Request(Box<Request>),
    Answer(Answer),
}

pub(crate) enum Answer {
    Text(String),
    /// Sent unencrypted even on an encrypting connection (payload-encryption refusals).
    Clear(String),
}

impl Answer {
    pub fn send(self, tx: &Outbox) {
        match self {
            Answer::Text(t) => tx.text(t),
            Answer::Clear(t) => tx.clear(t),
        };
    }
}

/// Unwrap payload encryption and parse the request.
pub(crate) fn parse(state: &AppState, session: &Session, frame: Value) -> Parsed {
    // Payload encryption: unwrap encrypted frames and logins; refusals go out in clear.
    let frame = match crate::encryption::incoming(state, session.cipher.as_deref(), frame) {
        Ok(f) => f,
        Err(reply) => return Parsed::Answer(Answer::Clear(reply)),
    };
    parse_decoded(Request::parse(frame))
}

/// A parsed request, or the error reply for a frame that is not one. Shared by the `Value` path
/// ([`parse`]) and frames decoded straight into a request (`happn_protocol::decode_request`).
pub(crate) fn parse_decoded(result: Result<Box<Request>, RequestError>) -> Parsed {
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
pub(crate) async fn handle_request(state: &AppState, session: &mut Session, tx: &Outbox, mut req: Box<Request>) {
    // A set's body moves into the store; the request keeps the rest for the reply.
    let data = req.data.take();
    let req = &*req;
    let started = std::time::Instant::now();
    let action = req.action();
    // A user this request deleted: their sessions are closed after the reply.
    let mut deleted_user = None;
    let checked = match within_rate(state, session) {
        Ok(()) => authorize(state, session, req).await,
        Err(f) => Err(f),
    };
    let outcome = match checked {
        Err(f) => Err(f),
        // Rare and large futures are boxed, so the request future (allocated per request) is
        // the size of the common actions'.
        Ok(()) => match &req.command {
            Command::Describe => Ok(login::describe(state, req)),
            Command::Login { data } => match Box::pin(login::login(state, session, tx, req, data.as_ref())).await {
                Ok(()) => {
                    state.telemetry.request(action, RequestOutcome::Ok, started);
                    return;
                }
                Err(f) => Err(f),
            },
            Command::RequestNonce { public_key } => login::request_nonce(state, req, public_key),
            Command::RevokeSession => login::revoke(state, session, req).await,
            Command::Set(options) if security_target(req) => Box::pin(security_records::set(state, req, options, data)).await,
            Command::Set(options) => data::set(state, req, options, data).await,
            Command::Get(options) => data::get(state, req, options).await,
            Command::Remove(options) if security_target(req) => match security_records::remove(state, req, options).await {
                Ok((reply, deleted)) => {
                    deleted_user = deleted;
                    Ok(reply)
                }
                Err(f) => Err(f),
            },
            Command::Remove(options) => data::remove(state, req, options).await,
            Command::On(options) => match subscribe::on(state, session, req, options).await {
                // initialEmit answers with the reply and then one event per value.
                Ok(frames) => {
                    for f in frames {
                        tx.text(f);
                    }
                    state.telemetry.request(action, RequestOutcome::Ok, started);
                    return;
                }
                Err(f) => Err(f),
            },
            Command::Off(options) => subscribe::off(state, session, req, options),
        },
    };
    let frame = match outcome {
        Ok(frame) => {
            state.telemetry.request(action, RequestOutcome::Ok, started);
            frame
        }
        Err(f) => {
            state.telemetry.request(action, f.outcome(), started);
            if let Failure::Access(e) = &f {
                denied(session, req, e);
            }
            base_reply(req).error(&f.to_wire())
        }
    };
    // Describe replies and login errors are never encrypted (the client has no secret for them).
    if matches!(req.action(), Action::Describe | Action::Login) {
        tx.clear(frame);
    } else {
        tx.text(frame);
    }
    if let Some(user) = deleted_user {
        state.disconnect_user(&user, "security directory update: user deleted");
    }
}

/// A refused request at `warn`, with the user and path (login failures are logged by the login):
/// enough to find the client, and nothing of its credentials.
fn denied(session: &Session, req: &Request, e: &AccessError) {
    if req.action() == Action::Login {
        return;
    }
    let login = session.login.as_ref();
    let user = login.and_then(|l| l.identity.username.as_deref()).unwrap_or("(none)");
    let session_id = login.map_or("(not logged in)", |l| &l.identity.id);
    let path = req.path.as_ref().and_then(Value::as_str).unwrap_or("");
    tracing::warn!(user, session = session_id, action = req.action().as_str(), path, reason = %e, "request denied");
}

fn base_reply(req: &Request) -> Reply<'_> {
    let action = req.action();
    let session_id = match action {
        Action::Login | Action::Describe => None,
        _ => req.session_id.as_ref(),
    };
    Reply {
        event_id: req.event_id.as_ref(),
        session_id,
        action: action.as_str(),
        published: false,
    }
}

/// The session's request rate (`limits.requestsPerSecond`): over it, the request is refused
/// (and counted) without running.
fn within_rate(state: &AppState, session: &mut Session) -> Result<(), Failure> {
    if session.within_rate(state) {
        return Ok(());
    }
    state.telemetry.refused(crate::telemetry::Limit::RequestRate);
    let rate = state.config.limits.requests_per_second;
    Err(Failure::Limited(format!(
        "request rate limit exceeded: a session may make {rate} requests per second (limits.requestsPerSecond); request refused"
    )))
}

/// The checks before an action: a session where one is needed (always in secure mode; for
/// on / off / revoke-session everywhere), then, in secure mode, the engine's session check
/// ([`happn_engine::security::Security::authorize_session`]: revocation, the session policy,
/// permissions on the path). Describe, login and request-nonce need none. A denial answers
/// once and the action does not run.
async fn authorize(state: &AppState, session: &mut Session, req: &Request) -> Result<(), Failure> {
    let action = req.action();
    if matches!(action, Action::Describe | Action::Login | Action::RequestNonce) {
        return Ok(());
    }
    let needs_session = state.config.secure || matches!(action, Action::On | Action::Off | Action::RevokeSession);
    let Some(login) = &mut session.login else {
        if needs_session {
            return Err(AccessError::NotLoggedIn.into());
        }
        return Ok(());
    };
    let Some(user) = &mut login.user else {
        return Ok(());
    };
    // Leaving (off, revoke-session) is always allowed, even to a revoked session.
    if matches!(action, Action::Off | Action::RevokeSession) {
        return Ok(());
    }
    let path = permission_path(req);
    Ok(state
        .security
        .authorize_session(&login.identity.id, user, path, action.as_str())
        .await?)
}

/// The path a permission check is about: the channel's data path for `on`.
fn permission_path(req: &Request) -> Option<&str> {
    let p = req.path.as_ref()?.as_str()?;
    Some(if req.action() == Action::On { Channel::data_path(p) } else { p })
}

fn path_of(req: &Request) -> Result<&str, Failure> {
    req.path_str().map_err(Failure::Bad)
}

/// Whether a set/remove addresses a security-directory record.
fn security_target(req: &Request) -> bool {
    req.path.as_ref().and_then(Value::as_str).and_then(SecurityPath::parse).is_some()
}
