//! `on` and `off`: subscriptions in the engine's registry, and the current values an `on` may
//! ask for (`initialCallback` in the reply, `initialEmit` as events after it).

use super::{base_reply, path_of, Failure, Outcome};
use crate::session::Session;
use crate::state::AppState;
use happn_engine::data::Found;
use happn_engine::pubsub::Channel;
use happn_engine::query::Query;
use happn_engine::{AccessError, Record};
use happn_protocol::{initial_emit_event, OffOptions, OnOptions, RecordMeta, Request};

/// A current value's record meta (no tag, as the original sends it).
fn meta(r: &Record) -> RecordMeta<'_> {
    RecordMeta::item(r.created, r.modified, &r.path, None)
}

/// Subscribe; the frames to send: the reply, then (initialEmit) one event per current value.
pub(super) async fn on(state: &AppState, session: &Session, req: &Request, options: &OnOptions) -> Result<Vec<String>, Failure> {
    let channel = path_of(req)?;
    let sub = session.subscriber().ok_or(Failure::Access(AccessError::NotLoggedIn))?;
    let max = state.config.limits.max_subscriptions;
    if max > 0 {
        // Another reference to a channel the session holds adds no subscription.
        let (held, already) = state.subscriptions.subscriber_channels(sub, channel);
        if held >= max && !already {
            state.telemetry.refused(crate::telemetry::Limit::Subscriptions);
            return Err(Failure::Limited(format!(
                "subscription limit reached: a session may hold {max} subscriptions (limits.maxSubscriptions)"
            )));
        }
    }
    state
        .subscriptions
        .subscribe(sub, channel, options.ref_count)
        .map_err(|e| Failure::Bad(e.to_string()))?;
    let reply = base_reply(req);
    if !options.initial_callback && !options.initial_emit {
        return Ok(vec![reply.ok_status_first("{}")]);
    }
    // Initial values: the subscription's data path read as a (possibly single-item) list in path
    // order; a failing read still answers ok, as the original does.
    let data_path = Channel::data_path(channel);
    let records = match state.data.get(data_path, &Query::default(), true).await {
        Ok(Found::Many(r)) => r,
        _ => Vec::new(),
    };
    if options.initial_callback {
        let values = records.iter().map(|r| (r.data.json(), meta(r)));
        return Ok(vec![reply.ok_initial_values(values)]);
    }
    // initialEmit: the reply first, then one event per value carrying the `on` request's eventId.
    let session_id = session.id().map_or("", |id| id);
    let mut frames = Vec::with_capacity(1 + records.len());
    frames.push(reply.ok_status_first("[]"));
    for r in &records {
        frames.push(initial_emit_event(
            r.data.map(),
            &meta(r),
            channel,
            session_id,
            req.event_id.as_ref(),
        ));
    }
    Ok(frames)
}

pub(super) fn off(state: &AppState, session: &Session, req: &Request, options: &OffOptions) -> Outcome {
    let channel = path_of(req)?;
    let sub = session.subscriber().ok_or(Failure::Access(AccessError::NotLoggedIn))?;
    if channel == "*" {
        state.subscriptions.remove_subscriber(sub);
    } else {
        state.subscriptions.unsubscribe(sub, channel, options.ref_count);
    }
    Ok(base_reply(req).ok_status_first("{}"))
}
