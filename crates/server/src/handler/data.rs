//! `set`, `get` and `remove` on data paths (security records: `security_records.rs`), and the
//! pipelined `set` a connection on a durable store runs alongside its other writes.

use super::publish::{self, await_delivery, logged_publish, publish_and_reply};
use super::{base_reply, path_of, Failure, Outcome};
use crate::session::Session;
use crate::state::{AppState, Outbox};
use crate::telemetry::RequestOutcome;
use happn_engine::data::{Found, SetData, Written};
use happn_engine::pubsub::EventKind;
use happn_engine::query::Query;
use happn_engine::record::now_millis;
use happn_engine::security;
use happn_engine::DataError;
use happn_protocol::{item_json, item_json_text, Command, Data, GetOptions, PublishOptions, RecordMeta, Request, SetOptions};
use serde_json::Map;
use std::sync::Arc;

/// The checks a data `set` passes before it writes: a path outside the protected records, and
/// a tag that is a string. Returns the path and the engine's write options.
fn prepare_set<'r>(req: &'r Request, options: &SetOptions) -> Result<(&'r str, happn_engine::data::SetOptions), Failure> {
    let path = path_of(req)?;
    if security::is_protected(path) {
        return Err(Failure::Bad(format!("{path} is a system record and cannot be written")));
    }
    let tag = options.tag().map_err(Failure::Bad)?.map(str::to_owned);
    let write = happn_engine::data::SetOptions {
        merge: options.merge,
        tag,
        sibling: options.sibling,
        no_store: options.no_store,
    };
    Ok((path, write))
}

pub(super) async fn set(state: &AppState, req: &Request, options: &SetOptions, data: Option<Data>) -> Outcome {
    let (path, write) = prepare_set(req, options)?;
    let publish = logged_publish(state, req, &options.publish);
    let (written, event) = state.data.set_logged(path, data.map(set_data), &write, publish).await?;
    await_delivery(state, event).await;
    Ok(set_reply(state, req, &options.publish, path, &written))
}

fn set_reply(state: &AppState, req: &Request, publish: &PublishOptions, path: &str, written: &Written) -> String {
    let meta = if written.stored {
        RecordMeta::stored(written.created, written.modified, written.path(path), written.tag.as_deref())
    } else {
        RecordMeta::at(written.path(path))
    };
    let w = publish::Written {
        kind: EventKind::Set,
        path,
        data_json: written.data_json(),
        meta: &meta,
    };
    publish_and_reply(state, req, publish, &w)
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
pub(crate) struct PendingWrite {
    req: Box<Request>,
    /// The path written, so a later write to the same path waits for this one.
    path: String,
    write: futures_util::future::BoxFuture<'static, Result<Written, DataError>>,
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

/// Start `req` as a pipelined write when it is a plain data `set` that passes every check;
/// otherwise hand it back to run in order with `handle_request`. Only durable stores gain
/// from this: concurrent writes of one client then share a group commit.
pub(crate) async fn start_write(state: &Arc<AppState>, session: &mut Session, mut req: Box<Request>) -> Result<PendingWrite, Box<Request>> {
    let started = std::time::Instant::now();
    let Command::Set(options) = &req.command else {
        return Err(req);
    };
    let (path, write) = match prepare_set(&req, options) {
        Ok((path, write)) => (path.to_string(), write),
        Err(_) => return Err(req),
    };
    let publish = logged_publish(state, &req, &options.publish);
    // Over the request rate, `handle_request` refuses it (it takes no token here then).
    if super::authorize(state, session, &req).await.is_err() || !session.within_rate(state) {
        return Err(req);
    }
    let data = req.data.take();
    let state = state.clone();
    let target = path.clone();
    Ok(PendingWrite {
        req,
        path,
        write: Box::pin(async move {
            let written = match publish {
                None => state.data.set(&target, data.map(set_data), &write).await,
                Some(publish) => match state.data.set_logged(&target, data.map(set_data), &write, Some(publish)).await {
                    Ok((written, event)) => {
                        await_delivery(&state, event).await;
                        Ok(written)
                    }
                    Err(e) => Err(e),
                },
            };
            let outcome = if written.is_ok() {
                RequestOutcome::Ok
            } else {
                RequestOutcome::Error
            };
            state.telemetry.request(happn_protocol::Action::Set, outcome, started);
            written
        }),
    })
}

/// Publish a pipelined write's event and queue its reply (in the connection's request order).
pub(crate) fn finish_write(state: &AppState, tx: &Outbox, req: &Request, path: &str, result: Result<Written, DataError>) {
    let frame = match (result, &req.command) {
        (Ok(written), Command::Set(options)) => set_reply(state, req, &options.publish, path, &written),
        (Ok(written), _) => set_reply(state, req, &PublishOptions::default(), path, &written),
        (Err(e), _) => base_reply(req).error(&Failure::Data(e).to_wire()),
    };
    tx.text(frame);
}

pub(super) async fn remove(state: &AppState, req: &Request, options: &PublishOptions) -> Outcome {
    let path = path_of(req)?;
    let now = now_millis();
    let publish = logged_publish(state, req, options);
    let (removed, event) = state.data.remove_logged(path, now, security::is_protected, publish).await?;
    await_delivery(state, event).await;
    let data_json = format!("{{\"removed\":{removed}}}");
    let meta = RecordMeta::removed(now, path);
    let w = publish::Written {
        kind: EventKind::Remove,
        path,
        data_json: &data_json,
        meta: &meta,
    };
    Ok(publish_and_reply(state, req, options, &w))
}

pub(super) async fn get(state: &AppState, req: &Request, options: &GetOptions) -> Outcome {
    let path = path_of(req)?;
    let query = Query::parse(options.criteria.as_ref(), options.query.as_ref())?;
    let path_only = options.path_only;
    let found = state.data.get(path, &query, options.criteria.is_some() || path_only).await?;
    let reply = base_reply(req);
    Ok(match found {
        Found::One(Some(r)) => {
            if query.has_projection() {
                let projected = query.project(r.data.map());
                reply.ok(&serde_json::to_string(&projected).expect("JSON"), &RecordMeta::at(&r.path))
            } else {
                reply.ok(r.data.json(), &RecordMeta::stored(r.created, r.modified, &r.path, r.tag.as_deref()))
            }
        }
        Found::One(None) => reply.ok("null", &RecordMeta::default()),
        Found::Count(n) => reply.ok(&format!("{{\"value\":{n}}}"), &RecordMeta::default()),
        Found::Many(records) => {
            let items = records.iter().map(|r| {
                if path_only {
                    item_json(&Map::new(), &RecordMeta::item_at(&r.path))
                } else if query.has_projection() {
                    item_json(&query.project(r.data.map()), &RecordMeta::item_at(&r.path))
                } else {
                    item_json_text(r.data.json(), &RecordMeta::item(r.created, r.modified, &r.path, r.tag.as_deref()))
                }
            });
            reply.array(items)
        }
    })
}
