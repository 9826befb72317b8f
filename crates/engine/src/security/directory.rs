//! Managing users, groups and memberships at run time (decisions.md, "Managing security over the
//! wire"). The records keep the original's layout; every write is validated, passwords are hashed
//! before they reach the store, and every change bumps the directory generation so live sessions
//! pick up new permissions on their next request.

use super::login::blocking;
use super::{group_path, hash_password, link_path, permissions, user_path, validate_name, Security, ADMIN};
use super::{GROUP_PREFIX, USER_PREFIX};
use crate::error::DataError;
use crate::path::Pattern;
use crate::record::{now_millis, Record};
use serde_json::{Map, Value};

/// Where a security-directory path points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityPath<'a> {
    User(&'a str),
    Group(&'a str),
    Membership {
        user: &'a str,
        group: &'a str,
    },
    /// Anything else under `/_SYSTEM/_SECURITY/` (settings, the keypair): never written by clients.
    Other,
}

impl<'a> SecurityPath<'a> {
    pub fn parse(path: &'a str) -> Option<SecurityPath<'a>> {
        if let Some(rest) = path.strip_prefix(USER_PREFIX) {
            return Some(match rest.split('/').collect::<Vec<_>>().as_slice() {
                [user] => SecurityPath::User(user),
                [user, "_USER_GROUP", group] => SecurityPath::Membership { user, group },
                _ => SecurityPath::Other,
            });
        }
        if let Some(rest) = path.strip_prefix(GROUP_PREFIX) {
            return Some(if rest.contains('/') {
                SecurityPath::Other
            } else {
                SecurityPath::Group(rest)
            });
        }
        path.starts_with(super::SECURITY_PREFIX).then_some(SecurityPath::Other)
    }
}

fn bad(message: impl Into<String>) -> DataError {
    DataError::BadRequest(message.into())
}

fn check_name(kind: &str, name: &str) -> Result<(), DataError> {
    if name == ADMIN {
        return Ok(());
    }
    validate_name(name).map_err(|e| bad(format!("{kind} {e}")))
}

impl Security {
    /// Create or update `/_SYSTEM/_SECURITY/_USER/<name>`. A `password` is hashed; without one the
    /// stored hash is kept, so an edit of other fields never locks the user out. `merge` keeps
    /// fields the update does not mention, as a merge `set` does.
    pub async fn upsert_user(&self, name: &str, update: Map<String, Value>, merge: bool) -> Result<Record, DataError> {
        check_name("user", name)?;
        let mut update = update;
        match update.get("username") {
            None => {}
            Some(Value::String(u)) if u == name => {}
            Some(other) => return Err(bad(format!("the username {other} does not match the path's user {name:?}"))),
        }
        if let Some(c) = update.get("custom_data") {
            if !c.is_object() && !c.is_null() {
                return Err(bad(format!("custom_data must be an object, got {c}")));
            }
        }
        if let Some(k) = update.get("publicKey") {
            if !k.is_string() && !k.is_null() {
                return Err(bad(format!("publicKey must be a string, got {k}")));
            }
        }
        // Memberships are separate records; a `groups` field here would only mislead.
        update.shift_remove("groups");
        let new_hash = match update.shift_remove("password") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if !p.is_empty() => Some(blocking(move || hash_password(&p)).await),
            Some(other) => return Err(bad(format!("password must be a non-empty string, got {other}"))),
        };
        let path = user_path(name);
        let old = self.data.get_record(&path).await?;
        let mut data = Map::new();
        data.insert("username".into(), Value::String(name.to_string()));
        let old_data = old.as_ref().map(|r| r.data.map().clone()).unwrap_or_default();
        if merge {
            for (k, v) in &old_data {
                data.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        for (k, v) in update {
            if k != "username" {
                data.insert(k, v);
            }
        }
        match new_hash {
            Some(h) => {
                data.insert("password".into(), Value::String(h));
            }
            None => match old_data.get("password") {
                Some(h) => {
                    data.insert("password".into(), h.clone());
                }
                // Key-pair users may log in by digest alone.
                None if old.is_none() && !data.get("publicKey").is_some_and(Value::is_string) => {
                    return Err(bad(format!("a new user needs a password or a publicKey ({name:?})")))
                }
                None => {}
            },
        }
        let record = self.write(path, data, old.map(|r| r.created)).await?;
        Ok(record)
    }

    /// Delete a user with its memberships. `_ADMIN` cannot be deleted. Returns whether it existed.
    pub async fn delete_user(&self, name: &str) -> Result<bool, DataError> {
        if name == ADMIN {
            return Err(bad("the _ADMIN user cannot be deleted"));
        }
        check_name("user", name)?;
        let existed = !self.data.store().remove_matching(&Pattern::new(&user_path(name))).await?.is_empty();
        self.data
            .store()
            .remove_matching(&Pattern::new(&format!("{}/_USER_GROUP/*", user_path(name))))
            .await?;
        self.directory_changed();
        Ok(existed)
    }

    /// Create or update `/_SYSTEM/_SECURITY/_GROUP/<name>`. Permission keys are paths and may
    /// contain `.`; the original's `\u002e` escape is undone. The `_ADMIN` group is fixed.
    pub async fn upsert_group(&self, name: &str, update: Map<String, Value>, merge: bool) -> Result<Record, DataError> {
        if name == ADMIN {
            return Err(bad("the _ADMIN group cannot be changed"));
        }
        check_name("group", name)?;
        match update.get("name") {
            None => {}
            Some(Value::String(n)) if n == name => {}
            Some(other) => return Err(bad(format!("the name {other} does not match the path's group {name:?}"))),
        }
        let path = group_path(name);
        let old = self.data.get_record(&path).await?;
        let mut data = Map::new();
        data.insert("name".into(), Value::String(name.to_string()));
        if merge {
            if let Some(old) = &old {
                for (k, v) in old.data.map() {
                    data.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        for (k, v) in update {
            if k == "permissions" {
                let Value::Object(perms) = v else {
                    return Err(bad(format!("permissions must be an object, got {v}")));
                };
                permissions::validate(&perms).map_err(|e| bad(e.to_string()))?;
                let perms: Map<String, Value> = perms.into_iter().map(|(k, v)| (k.replace("\\u002e", "."), v)).collect();
                data.insert(k, Value::Object(perms));
            } else if k != "name" {
                data.insert(k, v);
            }
        }
        data.entry("permissions").or_insert_with(|| Value::Object(Map::new()));
        self.write(path, data, old.map(|r| r.created)).await
    }

    /// Delete a group and every membership in it. `_ADMIN` cannot be deleted.
    pub async fn delete_group(&self, name: &str) -> Result<bool, DataError> {
        if name == ADMIN {
            return Err(bad("the _ADMIN group cannot be deleted"));
        }
        check_name("group", name)?;
        let existed = !self
            .data
            .store()
            .remove_matching(&Pattern::new(&group_path(name)))
            .await?
            .is_empty();
        let links = self
            .data
            .store()
            .find(&Pattern::new(&format!("{USER_PREFIX}*/_USER_GROUP/{name}")))
            .await?;
        for link in links {
            if matches!(SecurityPath::parse(&link.path), Some(SecurityPath::Membership { group, .. }) if group == name) {
                self.data.store().remove_matching(&Pattern::new(&link.path)).await?;
            }
        }
        self.directory_changed();
        Ok(existed)
    }

    /// Put a user in a group; both must exist. `data` is kept as the link's options.
    pub async fn link_group(&self, user: &str, group: &str, data: Map<String, Value>) -> Result<Record, DataError> {
        check_name("user", user)?;
        check_name("group", group)?;
        if self.data.get_record(&user_path(user)).await?.is_none() {
            return Err(bad(format!("no such user {user:?}")));
        }
        if self.data.get_record(&group_path(group)).await?.is_none() {
            return Err(bad(format!("no such group {group:?}")));
        }
        let path = link_path(user, group);
        let created = self.data.get_record(&path).await?.map(|r| r.created);
        self.write(path, data, created).await
    }

    /// Take a user out of a group. `_ADMIN` stays in `_ADMIN`.
    pub async fn unlink_group(&self, user: &str, group: &str) -> Result<bool, DataError> {
        if user == ADMIN && group == ADMIN {
            return Err(bad("the _ADMIN user cannot leave the _ADMIN group"));
        }
        let removed = !self
            .data
            .store()
            .remove_matching(&Pattern::new(&link_path(user, group)))
            .await?
            .is_empty();
        self.directory_changed();
        Ok(removed)
    }

    /// Users (without hashes) and their groups, in name order.
    pub async fn list_users(&self) -> Result<Vec<(Map<String, Value>, Vec<String>)>, DataError> {
        let records = self.data.store().find(&Pattern::new(&format!("{USER_PREFIX}*"))).await?;
        let records = records.into_iter().filter_map(crate::visibility::client_view);
        let mut users: Vec<(Map<String, Value>, Vec<String>)> = Vec::new();
        for r in records {
            match SecurityPath::parse(&r.path) {
                Some(SecurityPath::User(_)) => users.push((r.data.into_map(), Vec::new())),
                Some(SecurityPath::Membership { user, group }) => {
                    if let Some(u) = users
                        .iter_mut()
                        .rev()
                        .find(|(d, _)| d.get("username").and_then(Value::as_str) == Some(user))
                    {
                        u.1.push(group.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(users)
    }

    pub async fn list_groups(&self) -> Result<Vec<Map<String, Value>>, DataError> {
        let records = self.data.store().find(&Pattern::new(&format!("{GROUP_PREFIX}*"))).await?;
        Ok(records
            .into_iter()
            .filter(|r| matches!(SecurityPath::parse(&r.path), Some(SecurityPath::Group(_))))
            .map(|r| r.data.into_map())
            .collect())
    }

    async fn write(&self, path: String, data: Map<String, Value>, created: Option<i64>) -> Result<Record, DataError> {
        let now = now_millis();
        let record = Record {
            path,
            data: data.into(),
            created: created.unwrap_or(now),
            modified: now,
            tag: None,
        };
        self.data.put_record(record.clone()).await?;
        self.directory_changed();
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataService;
    use crate::security::{Credentials, SecurityConfig};
    use crate::storage::MemoryStore;
    use serde_json::json;
    use std::sync::Arc;

    async fn security() -> Security {
        let data = Arc::new(DataService::new(Arc::new(MemoryStore::new())));
        let s = Security::new(data, &SecurityConfig::default());
        s.bootstrap(&SecurityConfig::default()).await.unwrap();
        s
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: Some(u.into()),
            password: Some(p.into()),
            ..Default::default()
        }
    }

    #[test]
    fn paths() {
        assert_eq!(SecurityPath::parse("/_SYSTEM/_SECURITY/_USER/u"), Some(SecurityPath::User("u")));
        assert_eq!(SecurityPath::parse("/_SYSTEM/_SECURITY/_GROUP/g"), Some(SecurityPath::Group("g")));
        assert_eq!(
            SecurityPath::parse("/_SYSTEM/_SECURITY/_USER/u/_USER_GROUP/g"),
            Some(SecurityPath::Membership { user: "u", group: "g" })
        );
        assert_eq!(
            SecurityPath::parse("/_SYSTEM/_SECURITY/_SETTINGS/KEYPAIR"),
            Some(SecurityPath::Other)
        );
        assert_eq!(SecurityPath::parse("/_SYSTEM/_SECURITY/_USER/u/x"), Some(SecurityPath::Other));
        assert_eq!(SecurityPath::parse("/data/x"), None);
    }

    #[tokio::test]
    async fn users_groups_and_links_take_effect() {
        let s = security().await;
        s.upsert_group("g", obj(json!({"permissions": {"/a\\u002eb/*": {"actions": ["get"]}}})), false)
            .await
            .unwrap();
        let u = s
            .upsert_user("u", obj(json!({"password": "pw", "custom_data": {"x": 1}})), false)
            .await
            .unwrap();
        assert!(u.data["password"].as_str().unwrap().starts_with("pbkdf2$"), "hashed on write");
        let before = s.generation();
        s.link_group("u", "g", Map::new()).await.unwrap();
        assert!(s.generation() > before, "a change bumps the generation");
        let user = s.authenticate(&creds("u", "pw")).await.unwrap();
        assert!(user.permissions.allows("/a.b/c", "get"));
        assert_eq!(user.groups, ["g"]);

        // An edit without a password keeps the hash; a merge keeps custom_data.
        s.upsert_user("u", obj(json!({"publicKey": "k"})), true).await.unwrap();
        assert!(s.authenticate(&creds("u", "pw")).await.is_ok());
        let listed = s.list_users().await.unwrap();
        let (rec, groups) = listed.iter().find(|(d, _)| d["username"] == "u").unwrap();
        assert_eq!(rec.get("password"), None, "hashes never listed");
        assert_eq!(rec["custom_data"], json!({"x": 1}));
        assert_eq!(groups, &["g"]);

        s.upsert_user("u", obj(json!({"password": "new"})), true).await.unwrap();
        assert!(s.authenticate(&creds("u", "pw")).await.is_err());
        assert!(s.authenticate(&creds("u", "new")).await.is_ok());

        assert!(s.unlink_group("u", "g").await.unwrap());
        assert!(!s.permissions_of("u").await.unwrap().allows("/a.b/c", "get"));
        s.link_group("u", "g", Map::new()).await.unwrap();
        assert!(s.delete_group("g").await.unwrap());
        assert!(s.list_users().await.unwrap().iter().all(|(_, g)| g.is_empty() || g == &["_ADMIN"]));
        assert!(s.delete_user("u").await.unwrap());
        assert!(s.authenticate(&creds("u", "new")).await.is_err());
    }

    #[tokio::test]
    async fn invalid_writes_are_refused() {
        let s = security().await;
        let err = |r: Result<Record, DataError>| r.unwrap_err().to_string();
        assert!(err(s.upsert_user("a/b", obj(json!({"password": "p"})), false).await).contains("'/'"));
        assert!(err(s.upsert_user("u", obj(json!({"username": "v", "password": "p"})), false).await).contains("does not match"));
        assert!(err(s.upsert_user("u", Map::new(), false).await).contains("needs a password"));
        assert!(err(s.upsert_user("u", obj(json!({"password": 5})), false).await).contains("password"));
        assert!(err(s
            .upsert_group("g", obj(json!({"permissions": {"/x": {"actions": "get"}}})), false)
            .await)
        .contains("list"));
        assert!(err(s.upsert_group(ADMIN, Map::new(), false).await).contains("_ADMIN"));
        assert!(err(s.link_group("nobody", ADMIN, Map::new()).await).contains("no such user"));
        assert!(s.delete_user(ADMIN).await.is_err());
        assert!(s.delete_group(ADMIN).await.is_err());
        assert!(s.unlink_group(ADMIN, ADMIN).await.is_err());
        assert!(s.authenticate(&creds(ADMIN, "happn")).await.is_ok(), "admin untouched");
    }
}
