//! A write's event: delivered to every matching subscription (filtered by the write's
//! `targetClients` and `noCluster`) *before* the writer's own reply is queued, so a client
//! subscribed to what it writes sees the event first (Invariant 1).

use super::base_reply;
use crate::state::AppState;
use happn_engine::pubsub::EventKind;
use happn_protocol::{EventMeta, PublishOptions, RecordMeta, Reply, Request};

/// Publish a set/remove (unless `noPublish`) and build the writer's reply, whose `action` is the
/// event's `/SET@path` / `/REMOVE@path` when published.
pub(super) fn publish_and_reply(
    state: &AppState,
    req: &Request,
    options: &PublishOptions,
    kind: EventKind,
    path: &str,
    data_json: &str,
    meta: &RecordMeta<'_>,
) -> String {
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
    if published {
        let delivered = publish(state, req, options, kind, path, data_json, meta, action);
        state.telemetry.published(delivered);
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

/// Deliver the event of a set/remove to every matching subscription; returns how many
/// connections it was queued to. Events are queued on
/// every recipient's outbox before the caller queues its own reply, so the writer always sees
/// its events first; across sockets, order is up to each socket's writer.
#[allow(clippy::too_many_arguments)]
fn publish(
    state: &AppState,
    req: &Request,
    options: &PublishOptions,
    kind: EventKind,
    path: &str,
    data_json: &str,
    meta: &RecordMeta<'_>,
    action: &str,
) -> usize {
    if !state.subscriptions.has_any() {
        return 0;
    }
    let deliveries = state.subscriptions.deliveries(kind, path);
    if deliveries.is_empty() {
        return 0;
    }
    let event = EventMeta::new(data_json, meta, action, req.session_id.is_some());
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
