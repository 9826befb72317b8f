//! First start: the token secret, the revocation list, the `_ADMIN` user and group, and the
//! config file's users and groups.

use super::login::blocking;
use super::*;

impl Security {
    /// Create the `_ADMIN` user and group when missing (the configured password applies only
    /// then, as in the original), and upsert the users and groups of the config file.
    pub async fn bootstrap(&self, config: &SecurityConfig) -> Result<(), DataError> {
        let now = now_millis();
        if config.token_secret.is_none() {
            let secret = match self
                .data
                .get_record(TOKEN_SECRET_PATH)
                .await?
                .and_then(|r| r.data.get("value").and_then(Value::as_str).map(str::to_string))
            {
                Some(s) => s,
                None => {
                    let mut b = [0u8; 32];
                    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
                    let s = hex::encode(b);
                    self.put(TOKEN_SECRET_PATH, json!({"value": s}), now).await?;
                    s
                }
            };
            *self.signer.write() = Arc::new(TokenSigner::new(secret.as_bytes()));
        }
        let revoked = self.data.store().find(&Pattern::new(&format!("{REVOKED_PREFIX}*"))).await?;
        self.revoked.extend(
            revoked
                .iter()
                .filter_map(|r| r.path.strip_prefix(REVOKED_PREFIX).map(str::to_string)),
        );
        let admin_group = json!({
            "custom_data": {"description": "the default administration group for happn"},
            "name": ADMIN,
            "permissions": {"*": {"actions": ["*"]}}
        });
        self.put(&group_path(ADMIN), admin_group, now).await?;
        if self.data.get_record(&user_path(ADMIN)).await?.is_none() {
            let pw = config.admin_password.clone().unwrap_or_else(|| DEFAULT_ADMIN_PASSWORD.to_string());
            let hash = blocking(move || hash_password(&pw)).await;
            self.put(
                &user_path(ADMIN),
                json!({"custom_data": {}, "username": ADMIN, "password": hash}),
                now,
            )
            .await?;
        }
        self.put(&link_path(ADMIN, ADMIN), json!({}), now).await?;
        for g in &config.groups {
            validate_name(&g.name).map_err(|e| DataError::BadRequest(e.to_string()))?;
            let mut rec = json!({"name": g.name, "permissions": g.permissions});
            if let Some(c) = &g.custom_data {
                rec["custom_data"] = c.clone();
            }
            self.put(&group_path(&g.name), rec, now).await?;
        }
        for u in &config.users {
            validate_name(&u.username).map_err(|e| DataError::BadRequest(e.to_string()))?;
            let mut rec = json!({"username": u.username, "custom_data": u.custom_data.clone().unwrap_or(json!({}))});
            if let Some(pk) = &u.public_key {
                rec["publicKey"] = Value::String(pk.clone());
            }
            match &u.password {
                Some(pw) => {
                    let pw = pw.clone();
                    rec["password"] = Value::String(blocking(move || hash_password(&pw)).await);
                }
                None => {
                    if let Some(old) = self.data.get_record(&user_path(&u.username)).await? {
                        if let Some(h) = old.data.get("password") {
                            rec["password"] = h.clone();
                        }
                    }
                }
            }
            self.put(&user_path(&u.username), rec, now).await?;
            for g in &u.groups {
                self.put(&link_path(&u.username, g), json!({}), now).await?;
            }
        }
        self.directory_changed();
        Ok(())
    }

    pub(super) async fn put(&self, path: &str, data: Value, now: i64) -> Result<(), DataError> {
        let created = self.data.get_record(path).await?.map(|r| r.created).unwrap_or(now);
        let Value::Object(data) = data else {
            unreachable!("security records are objects")
        };
        self.data
            .put_record(Record {
                path: path.to_string(),
                data: data.into(),
                created,
                modified: now,
                tag: None,
            })
            .await
    }
}
