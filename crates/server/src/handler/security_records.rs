//! `set` and `remove` on the security directory's records (users, groups, memberships):
//! validated and applied through the engine's directory (passwords hashed, never echoed), then
//! answered and published like any write.

use super::publish::{log_event, publish_and_reply, Written};
use super::{path_of, Failure, Outcome};
use crate::state::AppState;
use happn_engine::pubsub::EventKind;
use happn_engine::record::now_millis;
use happn_engine::security::SecurityPath;
use happn_engine::visibility;
use happn_protocol::request::type_name;
use happn_protocol::{Data, PublishOptions, RecordMeta, Request, SetOptions};
use serde_json::{Map, Value};

/// `set` on a user, group or membership path.
pub(super) async fn set(state: &AppState, req: &Request, options: &SetOptions, data: Option<Data>) -> Outcome {
    let path = path_of(req)?;
    let target = SecurityPath::parse(path).ok_or_else(|| Failure::Bad(format!("{path} is not a security record")))?;
    if path.contains('*') {
        return Err(Failure::Bad("security records are written one at a time: no wildcards".into()));
    }
    if let Some(unsupported) = options.unsupported_on_security_records() {
        return Err(Failure::Bad(format!("options.{unsupported} is not supported on security records")));
    }
    let body = match data.map(Data::into_value) {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            return Err(Failure::Bad(format!(
                "a security record must be an object, not {}",
                type_name(&other)
            )))
        }
    };
    let sec = &state.security;
    let record = match target {
        SecurityPath::User(name) => sec.upsert_user(name, body, options.merge).await?,
        SecurityPath::Group(name) => sec.upsert_group(name, body, options.merge).await?,
        SecurityPath::Membership { user, group } => sec.link_group(user, group, body).await?,
        SecurityPath::Other => return Err(Failure::Bad(format!("{path} is a system record and cannot be written"))),
    };
    // What the writer and the subscribers see of it: never a hash.
    let record = visibility::client_view(record).ok_or_else(|| Failure::Bad(format!("{path} is a system record")))?;
    let meta = RecordMeta::stored(record.created, record.modified, &record.path, None);
    let w = Written {
        kind: EventKind::Set,
        path,
        data_json: record.data.json(),
        meta: &meta,
    };
    log_event(state, req, &options.publish, &w)
        .await
        .map_err(|e| Failure::Data(e.into()))?;
    Ok(publish_and_reply(state, req, &options.publish, &w))
}

/// `remove` of a user (with its memberships), a group (with its memberships) or a membership.
/// Also returns the user it deleted, whose live sessions the caller closes once the reply is
/// queued.
pub(super) async fn remove(state: &AppState, req: &Request, options: &PublishOptions) -> Result<(String, Option<String>), Failure> {
    let path = path_of(req)?;
    let target = SecurityPath::parse(path).ok_or_else(|| Failure::Bad(format!("{path} is not a security record")))?;
    if path.contains('*') {
        return Err(Failure::Bad("security records are removed one at a time: no wildcards".into()));
    }
    let sec = &state.security;
    let mut deleted_user = None;
    let removed = match target {
        SecurityPath::User(name) => {
            let existed = sec.delete_user(name).await?;
            if existed {
                deleted_user = Some(name.to_string());
            }
            existed
        }
        SecurityPath::Group(name) => sec.delete_group(name).await?,
        SecurityPath::Membership { user, group } => sec.unlink_group(user, group).await?,
        SecurityPath::Other => return Err(Failure::Bad(format!("{path} is a system record and cannot be removed"))),
    };
    let data_json = format!("{{\"removed\":{}}}", usize::from(removed));
    let meta = RecordMeta::removed(now_millis(), path);
    let w = Written {
        kind: EventKind::Remove,
        path,
        data_json: &data_json,
        meta: &meta,
    };
    log_event(state, req, options, &w).await.map_err(|e| Failure::Data(e.into()))?;
    let reply = publish_and_reply(state, req, options, &w);
    Ok((reply, deleted_user))
}
