//! `happn-rs get | set | remove | watch | status | backup`: a command-line client for a running server,
//! built on `happn-client`, in the manner of `redis-cli`. Every command prints JSON on standard
//! output (one document, or one line per event for `watch`) so its output pipes into `jq`.
//!
//! Exit codes: 0 done; 1 the server refused or failed the request; 2 bad arguments (invalid
//! JSON, unknown option); 3 the server could not be reached or the login was refused.

mod backup;

use clap::{Args, Subcommand, ValueEnum};
use futures_util::StreamExt;
use happn_client::{Client, ClientConfig, Error, EventKind, EventType, Get, GetOptions, Item, OnOptions, RemoveOptions, SetOptions};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::process::ExitCode;

/// Which server, as whom.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// The server, e.g. ws://127.0.0.1:55000 or wss://happn.example.com
    #[arg(long, env = "HAPPN_URL", default_value = "ws://127.0.0.1:55000")]
    url: String,
    /// User to log in as (secure servers); the password comes from --password, --password-stdin,
    /// HAPPN_PASSWORD or a prompt
    #[arg(long, env = "HAPPN_USERNAME")]
    username: Option<String>,
    /// The password (visible in the process list: prefer --password-stdin, the environment or
    /// the prompt)
    #[arg(long, env = "HAPPN_PASSWORD", hide_env_values = true, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    password_stdin: bool,
    /// Log in with a session token instead
    #[arg(long, env = "HAPPN_TOKEN", hide_env_values = true, conflicts_with = "username")]
    token: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum WatchEvent {
    Set,
    Remove,
    All,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Read a document, or the documents matching a pattern (JSON on standard output)
    Get {
        path: String,
        /// Criteria (a MongoDB-style filter) as JSON; makes the result a list
        #[arg(long, value_name = "JSON")]
        criteria: Option<String>,
        /// Options as JSON: fields, sort, skip, limit, count, path_only
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write a document (JSON) at a path; prints the stored document
    Set {
        path: String,
        /// The document, as JSON
        json: String,
        /// Merge into the existing document instead of replacing it
        #[arg(long)]
        merge: bool,
        /// Take a tagged snapshot under this name
        #[arg(long, value_name = "T")]
        tag: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove the documents at a path or pattern; prints {"removed": n}
    Remove {
        path: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print each change under a pattern as one JSON line, until interrupted
    Watch {
        pattern: String,
        #[arg(long, value_enum, default_value = "all")]
        event: WatchEvent,
        /// Stop after this many events
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// The server's name, version, uptime, readiness and this session
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// Save a running server's records to a file (a happn 2.x database file, for
    /// `happn-rs import --nedb`), as of one moment, without stopping it: administrators only
    Backup {
        /// The file to write (replaced only when the whole backup has arrived)
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Why a command failed, and so its exit code.
enum Failed {
    Request(String),
    Usage(String),
    Connect(String),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(_) | Error::WebSocket(_) | Error::InvalidUrl(_) | Error::Closed | Error::Disconnected => {
                Failed::Connect(e.to_string())
            }
            other => Failed::Request(other.to_string()),
        }
    }
}

pub fn run(command: ClientCommand) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(execute(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => {
            let (code, message) = match failed {
                Failed::Request(m) => (1, m),
                Failed::Usage(m) => (2, m),
                Failed::Connect(m) => (3, m),
            };
            eprintln!("happn-rs: {message}");
            ExitCode::from(code)
        }
    }
}

fn parse(what: &str, text: &str) -> Result<Value, Failed> {
    serde_json::from_str(text).map_err(|e| Failed::Usage(format!("{what} is not valid JSON: {e}")))
}

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

async fn execute(command: ClientCommand) -> Result<(), Failed> {
    match command {
        ClientCommand::Get {
            path,
            criteria,
            options,
            remote,
        } => {
            let mut get = get_options(options.as_deref())?;
            get.criteria = criteria.map(|c| parse("--criteria", &c)).transpose()?;
            let client = connect(&remote).await?;
            let found = client.get(&path, get).await?;
            print(&match found {
                Get::One(item) => item.as_ref().map_or(Value::Null, item_json),
                Get::Many(items) => Value::Array(items.iter().map(item_json).collect()),
                Get::Count(n) => json!({ "count": n }),
            });
            let _ = client.disconnect().await;
        }
        ClientCommand::Set {
            path,
            json,
            merge,
            tag,
            remote,
        } => {
            let data = parse("the document", &json)?;
            let options = SetOptions {
                merge,
                tag,
                ..Default::default()
            };
            let client = connect(&remote).await?;
            print(&item_json(&client.set(&path, &data, options).await?));
            let _ = client.disconnect().await;
        }
        ClientCommand::Remove { path, remote } => {
            let client = connect(&remote).await?;
            let removed = client.remove(&path, RemoveOptions::default()).await?;
            print(&json!({ "removed": removed }));
            let _ = client.disconnect().await;
        }
        ClientCommand::Watch {
            pattern,
            event,
            count,
            remote,
        } => {
            let event_type = match event {
                WatchEvent::Set => EventType::Set,
                WatchEvent::Remove => EventType::Remove,
                WatchEvent::All => EventType::All,
            };
            let client = connect(&remote).await?;
            let mut events = client.on(&pattern, OnOptions::event_type(event_type)).await?;
            let mut seen = 0u64;
            let interrupted = tokio::signal::ctrl_c();
            tokio::pin!(interrupted);
            while count.is_none_or(|n| seen < n) {
                let event = tokio::select! {
                    _ = &mut interrupted => break,
                    e = events.next() => match e {
                        Some(e) => e,
                        None => return Err(Failed::Connect("the subscription ended (the client was closed)".into())),
                    },
                };
                let kind = match event.meta.kind {
                    EventKind::Set => "set",
                    EventKind::Remove => "remove",
                    EventKind::Initial => "initial",
                };
                print(&json!({
                    "event": kind,
                    "path": event.meta.path,
                    "channel": event.meta.channel,
                    "data": event.data,
                    "created": event.meta.created,
                    "modified": event.meta.modified,
                    "timestamp": event.meta.timestamp,
                    "tag": event.meta.tag,
                }));
                seen += 1;
            }
            let _ = client.disconnect().await;
        }
        ClientCommand::Backup { out, remote } => print(&backup::backup(&remote, &out).await?),
        ClientCommand::Status { remote } => {
            let client = connect(&remote).await?;
            let info = client.server_info();
            let session = client.session();
            let (health, ready) = match plain_http_authority(&remote.url) {
                Some(authority) => (http_json(&authority, "/health").await, http_json(&authority, "/ready").await),
                None => (Value::Null, Value::Null),
            };
            print(&json!({
                "url": remote.url,
                "name": info.name,
                "secure": info.secure,
                "session": session.as_ref().map(|s| s.id.clone()),
                "user": session.as_ref().and_then(|s| s.user.as_ref()).map(|u| u.username.clone()),
                "health": health,
                "ready": ready,
            }));
            let _ = client.disconnect().await;
        }
    }
    Ok(())
}

/// A document as happn lists it: its fields, with `_meta` among them.
fn item_json(item: &Item) -> Value {
    let mut o = item.data.clone();
    let mut meta = Map::new();
    meta.insert("path".into(), item.meta.path.clone().into());
    for (k, v) in [("created", item.meta.created), ("modified", item.meta.modified)] {
        if let Some(v) = v {
            meta.insert(k.into(), v.into());
        }
    }
    if let Some(tag) = &item.meta.tag {
        meta.insert("tag".into(), tag.clone().into());
    }
    o.insert("_meta".into(), Value::Object(meta));
    Value::Object(o)
}

/// `--options`: the get options happn's clients send, by their wire names.
fn get_options(text: Option<&str>) -> Result<GetOptions, Failed> {
    let mut get = GetOptions::default();
    let Some(text) = text else { return Ok(get) };
    let Value::Object(o) = parse("--options", text)? else {
        return Err(Failed::Usage("--options must be a JSON object".into()));
    };
    let number = |k: &str, v: &Value| {
        v.as_u64()
            .ok_or_else(|| Failed::Usage(format!("--options: {k} must be a whole number")))
    };
    for (k, v) in o {
        match k.as_str() {
            "fields" | "projection" => get.fields = Some(v),
            "sort" => get.sort = Some(v),
            "skip" => get.skip = Some(number(&k, &v)?),
            "limit" => get.limit = Some(number(&k, &v)?),
            "count" => get.count = v.as_bool().unwrap_or(false),
            "path_only" | "pathOnly" => get.path_only = v.as_bool().unwrap_or(false),
            other => return Err(Failed::Usage(format!("--options: unknown option {other:?}"))),
        }
    }
    Ok(get)
}

async fn connect(remote: &Remote) -> Result<Client, Failed> {
    let mut config = ClientConfig::from_url(remote.url.clone());
    if let Some(token) = &remote.token {
        config = config.with_token(token.clone());
    } else if let Some(user) = &remote.username {
        config = config.with_password(user.clone(), password(remote)?);
    }
    Client::connect(config).await.map_err(|e| Failed::Connect(e.to_string()))
}

/// The password: the flag or environment, standard input, or a prompt on the terminal.
fn password(remote: &Remote) -> Result<String, Failed> {
    if let Some(p) = &remote.password {
        return Ok(p.clone());
    }
    // SAFETY: isatty only looks at the descriptor.
    let prompt = !remote.password_stdin && unsafe { libc::isatty(0) } == 1;
    if prompt {
        eprint!("password for {}: ", remote.username.as_deref().unwrap_or(""));
    }
    let _echo = prompt.then(EchoOff::new).flatten();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failed::Usage(format!("cannot read the password: {e}")))?;
    if prompt {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The terminal's echo, off while the password is typed and back on when dropped.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on standard input with a termios struct of our own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            (libc::tcsetattr(0, libc::TCSANOW, &t) == 0).then_some(EchoOff(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `new`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

/// `host:port` of a `ws://` or `http://` URL (the probes are plain HTTP; over TLS they are
/// skipped).
fn plain_http_authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?']).next().filter(|a| !a.is_empty())?;
    Some(if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{}", happn_client::DEFAULT_PORT)
    })
}

/// `GET path` as JSON (`null` when it cannot be had), within 5 s.
async fn http_json(authority: &str, path: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(authority).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        s.take(64 * 1024).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), exchange).await {
        Ok(Ok(raw)) => {
            let text = String::from_utf8_lossy(&raw);
            text.split_once("\r\n\r\n")
                .and_then(|(_, body)| serde_json::from_str(body).ok())
                .unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_urls() {
        let g = get_options(Some(r#"{"limit": 2, "sort": {"n": -1}, "path_only": true}"#))
            .ok()
            .unwrap();
        assert_eq!((g.limit, g.path_only), (Some(2), true));
        assert!(matches!(get_options(Some(r#"{"bogus": 1}"#)), Err(Failed::Usage(_))));
        assert!(matches!(get_options(Some("[1]")), Err(Failed::Usage(_))));
        assert_eq!(plain_http_authority("ws://h:1/primus").as_deref(), Some("h:1"));
        assert_eq!(plain_http_authority("ws://h").as_deref(), Some("h:55000"));
        assert_eq!(plain_http_authority("wss://h:1"), None);
    }
}
