//! `happn-rs user …` and `happn-rs group …`: manage the security directory from the command line,
//! either in a data directory (the server must not be running on it: the store is locked while
//! it is) or through a running server with `--url` and admin credentials, where the commands are
//! plain set/remove requests on the security paths, so live sessions see the change at once.

use crate::config::{self, DataConfig};
use clap::{Args, Subcommand};
use happn_client::{Client, ClientConfig, GetOptions, RemoveOptions, SetOptions};
use happn_engine::data::DataService;
use happn_engine::security::{group_path, link_path, user_path, Security, SecurityConfig, SecurityPath, USER_PREFIX};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Where the directory lives: a data directory (default) or a running server.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Data directory to change (the server must be stopped) [default: ./happn-data]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Config file (for services.data.config and the security settings)
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Change a running server instead, e.g. ws://127.0.0.1:55000
    #[arg(long, value_name = "URL", global = true)]
    url: Option<String>,
    /// Administrator to log in as with --url
    #[arg(long, default_value = "_ADMIN", global = true)]
    admin_user: String,
    /// Administrator password with --url
    #[arg(long, env = "HAPPN_ADMIN_PASSWORD", hide_env_values = true, global = true)]
    admin_password: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (or replace its password and data) and put it in groups
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordArg,
        /// Group to join (repeatable)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// custom_data as a JSON object
        #[arg(long, value_name = "JSON")]
        custom_data: Option<String>,
        /// secp256k1 public key (base64) for key-pair logins
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Change a user's password
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// Delete a user (its live sessions are closed when done through --url)
    Rm { name: String },
    /// List users and their groups
    List,
    /// Put a user in a group
    Link { name: String, group: String },
    /// Take a user out of a group
    Unlink { name: String, group: String },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group (or replace its permissions)
    Add {
        name: String,
        /// PATH=ACTION[,ACTION…], e.g. '/devices/*=get,on' (repeatable)
        #[arg(long = "permission", value_name = "PATH=ACTIONS")]
        permissions: Vec<String>,
    },
    /// Allow actions (get, set, remove, on, *, or HTTP methods for /@HTTP paths) on a path
    Grant {
        name: String,
        path: String,
        /// Comma-separated actions
        actions: String,
    },
    /// Withdraw actions on a path (all of them when none are given)
    Revoke {
        name: String,
        path: String,
        actions: Option<String>,
    },
    /// Delete a group and its memberships
    Rm { name: String },
    /// List groups and their permissions
    List,
}

#[derive(Args, Debug)]
pub struct PasswordArg {
    /// The password (visible in the process list: prefer --password-stdin)
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArg {
    fn read(&self) -> Result<String, String> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password: {e}"))?;
            let p = line.trim_end_matches(['\r', '\n']).to_string();
            if p.is_empty() {
                return Err("the password read from standard input is empty".into());
            }
            return Ok(p);
        }
        Err("give the password with --password or --password-stdin".into())
    }
}

pub enum Admin {
    User(UserCommand),
    Group(GroupCommand),
}

/// Run an admin command; exit 0 on success, 1 on failure, 2 on bad arguments or config.
pub fn run(command: Admin, target: Target) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(execute(command, target)) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(e)) => {
            eprintln!("happn-rs: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("happn-rs: {e}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

/// The two ways to reach the directory, with the same operations.
enum Directory {
    Local(Box<Security>),
    Remote(Client),
}

async fn open(target: &Target) -> Result<Directory, Failure> {
    if let Some(url) = &target.url {
        let password = target
            .admin_password
            .clone()
            .ok_or_else(|| Failure::Usage("--url needs --admin-password (or HAPPN_ADMIN_PASSWORD)".into()))?;
        let client = Client::connect(ClientConfig::from_url(url.clone()).with_password(target.admin_user.clone(), password))
            .await
            .map_err(|e| failed(format!("cannot log in to {url}: {e}")))?;
        return Ok(Directory::Remote(client));
    }
    let doc = match &target.config {
        Some(path) => config::read_file(path).map_err(|e| Failure::Usage(e.to_string()))?,
        None => json!({}),
    };
    let loaded = config::from_value(&doc).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut data: DataConfig = loaded.config.data;
    if let Some(d) = &target.data_dir {
        data.dir = d.clone();
    }
    let store = crate::open_store(&data)
        .await
        .map_err(|e| failed(format!("{e} (is a server running on it? then use --url)")))?;
    let security_config: SecurityConfig = loaded.config.security;
    let security = Security::new(Arc::new(DataService::new(store)), &security_config);
    security.bootstrap(&security_config).await.map_err(failed)?;
    Ok(Directory::Local(Box::new(security)))
}

impl Directory {
    async fn set(&self, path: &str, data: Map<String, Value>, merge: bool) -> Result<(), Failure> {
        match self {
            Directory::Local(s) => match SecurityPath::parse(path) {
                Some(SecurityPath::User(n)) => s.upsert_user(n, data, merge).await.map(drop),
                Some(SecurityPath::Group(n)) => s.upsert_group(n, data, merge).await.map(drop),
                Some(SecurityPath::Membership { user, group }) => s.link_group(user, group, data).await.map(drop),
                _ => return Err(failed(format!("{path} is not a user, group or membership"))),
            }
            .map_err(failed),
            Directory::Remote(c) => {
                let options = SetOptions {
                    merge,
                    ..Default::default()
                };
                c.set(path, &Value::Object(data), options).await.map(drop).map_err(failed)
            }
        }
    }

    async fn remove(&self, path: &str) -> Result<bool, Failure> {
        match self {
            Directory::Local(s) => match SecurityPath::parse(path) {
                Some(SecurityPath::User(n)) => s.delete_user(n).await,
                Some(SecurityPath::Group(n)) => s.delete_group(n).await,
                Some(SecurityPath::Membership { user, group }) => s.unlink_group(user, group).await,
                _ => return Err(failed(format!("{path} is not a user, group or membership"))),
            }
            .map_err(failed),
            Directory::Remote(c) => c.remove(path, RemoveOptions::default()).await.map(|n| n > 0).map_err(failed),
        }
    }

    async fn group(&self, name: &str) -> Result<Option<Map<String, Value>>, Failure> {
        match self {
            Directory::Local(s) => Ok(s.list_groups().await.map_err(failed)?.into_iter().find(|g| g["name"] == name)),
            Directory::Remote(c) => Ok(c
                .get(&group_path(name), GetOptions::default())
                .await
                .map_err(failed)?
                .into_one()
                .map(|i| i.data)),
        }
    }

    async fn users(&self) -> Result<Vec<(Map<String, Value>, Vec<String>)>, Failure> {
        match self {
            Directory::Local(s) => s.list_users().await.map_err(failed),
            Directory::Remote(c) => {
                let items = c
                    .get(&format!("{USER_PREFIX}*"), GetOptions::default())
                    .await
                    .map_err(failed)?
                    .into_many();
                let mut users: Vec<(Map<String, Value>, Vec<String>)> = Vec::new();
                for item in items {
                    match SecurityPath::parse(&item.meta.path) {
                        Some(SecurityPath::User(_)) => users.push((item.data, Vec::new())),
                        Some(SecurityPath::Membership { user, group }) => {
                            if let Some(u) = users
                                .iter_mut()
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
        }
    }

    async fn groups(&self) -> Result<Vec<Map<String, Value>>, Failure> {
        match self {
            Directory::Local(s) => s.list_groups().await.map_err(failed),
            Directory::Remote(c) => Ok(c
                .get("/_SYSTEM/_SECURITY/_GROUP/*", GetOptions::default())
                .await
                .map_err(failed)?
                .into_many()
                .into_iter()
                .filter(|i| matches!(SecurityPath::parse(&i.meta.path), Some(SecurityPath::Group(_))))
                .map(|i| i.data)
                .collect()),
        }
    }

    async fn close(self) {
        if let Directory::Remote(c) = self {
            let _ = c.disconnect().await;
        }
    }
}

fn actions_list(text: &str) -> Result<Vec<String>, Failure> {
    let actions: Vec<String> = text.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
    if actions.is_empty() {
        return Err(Failure::Usage(format!("no actions in {text:?} (e.g. get,set,remove,on or *)")));
    }
    Ok(actions)
}

/// `PATH=ACTIONS` of `group add --permission`.
fn permission_arg(text: &str) -> Result<(String, Vec<String>), Failure> {
    let (path, actions) = text
        .rsplit_once('=')
        .ok_or_else(|| Failure::Usage(format!("--permission {text:?}: expected PATH=ACTION[,ACTION…]")))?;
    Ok((path.to_string(), actions_list(actions)?))
}

/// User and group names become path segments: refuse the ones that cannot be.
fn check_names(command: &Admin) -> Result<(), Failure> {
    let names: Vec<&str> = match command {
        Admin::User(UserCommand::Add { name, groups, .. }) => {
            std::iter::once(name.as_str()).chain(groups.iter().map(String::as_str)).collect()
        }
        Admin::User(UserCommand::Passwd { name, .. } | UserCommand::Rm { name }) => vec![name],
        Admin::User(UserCommand::Link { name, group } | UserCommand::Unlink { name, group }) => vec![name, group],
        Admin::Group(
            GroupCommand::Add { name, .. }
            | GroupCommand::Grant { name, .. }
            | GroupCommand::Revoke { name, .. }
            | GroupCommand::Rm { name },
        ) => {
            vec![name]
        }
        Admin::User(UserCommand::List) | Admin::Group(GroupCommand::List) => vec![],
    };
    for name in names {
        if name != happn_engine::security::ADMIN {
            happn_engine::security::validate_name(name).map_err(|e| Failure::Usage(e.to_string()))?;
        }
    }
    Ok(())
}

async fn execute(command: Admin, target: Target) -> Result<String, Failure> {
    check_names(&command)?;
    // Validate arguments before touching the store or the network.
    let custom = |text: &Option<String>| -> Result<Option<Value>, Failure> {
        text.as_ref()
            .map(|t| match serde_json::from_str::<Value>(t) {
                Ok(v @ Value::Object(_)) => Ok(v),
                Ok(other) => Err(Failure::Usage(format!("--custom-data must be a JSON object, got {other}"))),
                Err(e) => Err(Failure::Usage(format!("--custom-data is not JSON: {e}"))),
            })
            .transpose()
    };
    let dir = match &command {
        Admin::User(UserCommand::Add { password, custom_data, .. }) => {
            password.read().map_err(Failure::Usage)?;
            custom(custom_data)?;
            open(&target).await?
        }
        _ => open(&target).await?,
    };
    let result = run_on(&dir, command, custom).await;
    dir.close().await;
    result
}

async fn run_on(
    dir: &Directory,
    command: Admin,
    custom: impl Fn(&Option<String>) -> Result<Option<Value>, Failure>,
) -> Result<String, Failure> {
    match command {
        Admin::User(UserCommand::Add {
            name,
            password,
            groups,
            custom_data,
            public_key,
        }) => {
            let mut data = Map::new();
            data.insert("password".into(), Value::String(password.read().map_err(Failure::Usage)?));
            if let Some(c) = custom(&custom_data)? {
                data.insert("custom_data".into(), c);
            }
            if let Some(k) = public_key {
                data.insert("publicKey".into(), Value::String(k));
            }
            dir.set(&user_path(&name), data, true).await?;
            for g in &groups {
                dir.set(&link_path(&name, g), Map::new(), false).await?;
            }
            Ok(format!(
                "user {name} saved{}",
                if groups.is_empty() {
                    String::new()
                } else {
                    format!(" (groups: {})", groups.join(", "))
                }
            ))
        }
        Admin::User(UserCommand::Passwd { name, password }) => {
            let mut data = Map::new();
            data.insert("password".into(), Value::String(password.read().map_err(Failure::Usage)?));
            if !dir
                .users()
                .await?
                .iter()
                .any(|(u, _)| u.get("username").and_then(Value::as_str) == Some(name.as_str()))
            {
                return Err(failed(format!("no such user {name:?}")));
            }
            dir.set(&user_path(&name), data, true).await?;
            Ok(format!("password of {name} changed"))
        }
        Admin::User(UserCommand::Rm { name }) => match dir.remove(&user_path(&name)).await? {
            true => Ok(format!("user {name} deleted")),
            false => Err(failed(format!("no such user {name:?}"))),
        },
        Admin::User(UserCommand::List) => {
            let mut out = Vec::new();
            for (user, groups) in dir.users().await? {
                let name = user.get("username").and_then(Value::as_str).unwrap_or("?").to_string();
                let custom = user.get("custom_data").filter(|c| c.as_object().is_some_and(|m| !m.is_empty()));
                out.push(format!(
                    "{name}\tgroups: {}{}",
                    if groups.is_empty() { "-".to_string() } else { groups.join(",") },
                    custom.map(|c| format!("\tcustom_data: {c}")).unwrap_or_default()
                ));
            }
            Ok(out.join("\n"))
        }
        Admin::User(UserCommand::Link { name, group }) => {
            dir.set(&link_path(&name, &group), Map::new(), false).await?;
            Ok(format!("{name} is in {group}"))
        }
        Admin::User(UserCommand::Unlink { name, group }) => match dir.remove(&link_path(&name, &group)).await? {
            true => Ok(format!("{name} left {group}")),
            false => Err(failed(format!("{name} is not in {group}"))),
        },
        Admin::Group(GroupCommand::Add { name, permissions }) => {
            let mut perms = Map::new();
            for p in &permissions {
                let (path, actions) = permission_arg(p)?;
                perms.insert(path, json!({ "actions": actions }));
            }
            let mut data = Map::new();
            data.insert("permissions".into(), Value::Object(perms));
            dir.set(&group_path(&name), data, true).await?;
            Ok(format!("group {name} saved"))
        }
        Admin::Group(GroupCommand::Grant { name, path, actions }) => {
            let actions = actions_list(&actions)?;
            let mut perms = group_permissions(dir, &name).await?;
            let entry = perms.entry(path.clone()).or_insert_with(|| json!({"actions": []}));
            let list = action_list_mut(entry);
            for a in actions {
                if !list.iter().any(|x| x.as_str() == Some(a.as_str())) {
                    list.push(Value::String(a));
                }
            }
            save_permissions(dir, &name, perms).await?;
            Ok(format!("group {name}: granted on {path}"))
        }
        Admin::Group(GroupCommand::Revoke { name, path, actions }) => {
            let mut perms = group_permissions(dir, &name).await?;
            let Some(entry) = perms.get_mut(&path) else {
                return Err(failed(format!("group {name} has no permission on {path}")));
            };
            match actions {
                None => {
                    perms.shift_remove(&path);
                }
                Some(text) => {
                    let drop_these = actions_list(&text)?;
                    let list = action_list_mut(entry);
                    list.retain(|a| !a.as_str().is_some_and(|a| drop_these.iter().any(|d| d == a)));
                    if list.is_empty() {
                        perms.shift_remove(&path);
                    }
                }
            }
            save_permissions(dir, &name, perms).await?;
            Ok(format!("group {name}: revoked on {path}"))
        }
        Admin::Group(GroupCommand::Rm { name }) => match dir.remove(&group_path(&name)).await? {
            true => Ok(format!("group {name} deleted")),
            false => Err(failed(format!("no such group {name:?}"))),
        },
        Admin::Group(GroupCommand::List) => {
            let mut out = Vec::new();
            for g in dir.groups().await? {
                let name = g.get("name").and_then(Value::as_str).unwrap_or("?");
                out.push(format!(
                    "{name}\tpermissions: {}",
                    g.get("permissions").cloned().unwrap_or(json!({}))
                ));
            }
            Ok(out.join("\n"))
        }
    }
}

fn action_list_mut(entry: &mut Value) -> &mut Vec<Value> {
    if !entry.get("actions").is_some_and(Value::is_array) {
        *entry = json!({"actions": []});
    }
    entry["actions"].as_array_mut().expect("just made an array")
}

async fn group_permissions(dir: &Directory, name: &str) -> Result<Map<String, Value>, Failure> {
    let group = dir.group(name).await?.ok_or_else(|| failed(format!("no such group {name:?}")))?;
    Ok(group.get("permissions").and_then(Value::as_object).cloned().unwrap_or_default())
}

async fn save_permissions(dir: &Directory, name: &str, perms: Map<String, Value>) -> Result<(), Failure> {
    let mut data = Map::new();
    data.insert("permissions".into(), Value::Object(perms));
    dir.set(&group_path(name), data, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_arguments() {
        let (p, a) = permission_arg("/devices/*=get, on").ok().unwrap();
        assert_eq!(p, "/devices/*");
        assert_eq!(a, ["get", "on"]);
        let (p, _) = permission_arg("/a=b/*=*").ok().unwrap();
        assert_eq!(p, "/a=b/*", "the last '=' separates the actions");
        assert!(permission_arg("/no-actions").is_err());
        assert!(permission_arg("/x=").is_err());
    }

    #[test]
    fn action_lists_are_repaired() {
        let mut v = json!({"actions": "get"});
        action_list_mut(&mut v).push(json!("set"));
        assert_eq!(v, json!({"actions": ["set"]}));
    }
}
