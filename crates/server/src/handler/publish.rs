//! A write's event: delivered to every matching subscription (filtered by the write's
//! `targetClients` and `noCluster`) *before* the writer's own reply is queued, so a client
//! subscribed to what it writes sees the event first (Invariant 1).

use super::base_reply;
use crate::state::AppState;
use happn_engine::pubsub::EventKind;
use happn_protocol::{EventMeta, PublishOptions, RecordMeta, Reply, Request};

/// Publish a set/remove (unless `noPublish`) and build the writer's reply, whose `action` is the
/// event's `/SET@path` / `/REMOVE@path` when published.
/// What a set/remove wrote, as its reply and event show it.
pub(super) struct Written<'a> {
    pub kind: EventKind,
    /// The path the request named.
    pub path: &'a str,
    pub data_json: &'a str,
    pub meta: &'a RecordMeta<'a>,
}

pub(super) fn publish_and_reply(state: &AppState, req: &Request, options: &PublishOptions, w: &Written<'_>) -> String {
    let Written {
        kind,
        path,
        data_json,
        meta,
    } = *w;
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
    let published = !options.no_publish;
    // In a cluster every event is delivered from the log, this node's own too (the handler
    // logged it with the write and waited for its delivery: `crate::cluster`).
    if published && state.cluster.is_none() {
        let event = Event {
            kind,
            path,
            action,
            data_json,
            meta,
            session_before_action: req.session_id.is_some(),
        };
        state.telemetry.published(deliver(state, options, &event));
    }
    let reply = Reply {
        action: if published { action } else { raw },
        published,
        ..base_reply(req)
    };
    reply.ok(data_json, meta)
}

/// In a cluster, what to log with a write that publishes (`None`: a single node, or
/// `noPublish`): see `crate::cluster`.
pub(super) fn logged_publish(state: &AppState, req: &Request, options: &PublishOptions) -> Option<String> {
    (state.cluster.is_some() && !options.no_publish).then(|| crate::cluster::publish_text(options, req.session_id.is_some()))
}

/// In a cluster, wait until the event logged with a write was delivered on this node, so the
/// writer's reply follows it (as on a single node).
pub(super) async fn await_delivery(state: &AppState, event: Option<happn_engine::storage::events::EventId>) {
    if let (Some(id), Some(cluster)) = (event, &state.cluster) {
        cluster.delivered(id).await;
    }
}

/// In a cluster, log the event of a write that logged none itself (a security record's) and
/// wait for its delivery here; nothing on a single node or with `noPublish`.
pub(super) async fn log_event(
    state: &AppState,
    req: &Request,
    options: &PublishOptions,
    w: &Written<'_>,
) -> Result<(), happn_engine::StoreError> {
    let (Some(cluster), Some(publish)) = (&state.cluster, logged_publish(state, req, options)) else {
        return Ok(());
    };
    cluster
        .append(crate::cluster::client_event(w.kind, w.path, w.data_json, w.meta, publish))
        .await
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

/// A set/remove event to deliver.
pub(crate) struct Event<'a> {
    pub kind: EventKind,
    /// The path the write named: subscriptions match it.
    pub path: &'a str,
    /// `/SET@<path>` or `/REMOVE@<path>`.
    pub action: &'a str,
    pub data_json: &'a str,
    pub meta: &'a RecordMeta<'a>,
    /// Whether the writer's request carried a `sessionId` (where it sits in the event's `_meta`).
    pub session_before_action: bool,
}

/// Deliver the event of a set/remove to every matching subscription; returns how many
/// connections it was queued to. Events are queued on every recipient's outbox before the
/// caller queues its own reply, so the writer always sees its events first; across sockets,
/// order is up to each socket's writer.
pub(crate) fn deliver(state: &AppState, options: &PublishOptions, e: &Event<'_>) -> usize {
    if !state.subscriptions.has_any() {
        return 0;
    }
    let deliveries = state.subscriptions.deliveries(e.kind, e.path);
    if deliveries.is_empty() {
        return 0;
    }
    let event = EventMeta::new(e.data_json, e.meta, e.action, e.session_before_action);
    let mut delivered = 0;
    state.with_peers(|peers| {
        for (sub, channel) in deliveries.iter() {
            let Some(peer) = peers.get(&sub.key) else {
                continue;
            };
            let Some(identity) = &peer.identity else {
                continue;
            };
            if !options.reaches(&identity.id, identity.cluster_member) {
                continue;
            }
            peer.tx.text(event.render(&identity.id, channel));
            delivered += 1;
        }
    });
    delivered
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
