//! Helpers shared by the integration tests: in-process happn-rs servers and a scripted fake
//! server for what a real server will not do on demand (stay silent, drop a socket mid-request).

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use happn_client::{Client, ClientConfig, ReconnectPolicy};
use happn_engine::security::{GroupSpec, UserSpec};
use happn_rs::config::Config;
use happn_rs::{start, Server};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

pub const WAIT: Duration = Duration::from_secs(10);

/// A server on a free loopback port.
pub async fn server(secure: bool) -> Server {
    server_with(secure, 0, |_| {}).await
}

/// A server on `port` (0 = any), with config tweaks. Retries the bind for a while, since a
/// restart on the same port may race the previous listener's teardown.
pub async fn server_with(secure: bool, port: u16, tweak: impl Fn(&mut Config)) -> Server {
    let mut config = Config {
        port,
        host: "127.0.0.1".into(),
        secure,
        ..Default::default()
    };
    tweak(&mut config);
    let mut tries = 0;
    loop {
        match start(config.clone()).await {
            Ok(s) => return s,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("server start failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("server does not start: {e}"),
        }
    }
}

/// Users and groups for the security tests: `reader` may get/on `/allowed/*` only; `writer`
/// may also set there.
pub fn limited_users(config: &mut Config) {
    let mut read = serde_json::Map::new();
    read.insert("/allowed/*".into(), json!({"actions": ["get", "on"]}));
    let mut write = serde_json::Map::new();
    write.insert("/allowed/*".into(), json!({"actions": ["get", "on", "set", "remove"]}));
    config.security.groups = vec![
        GroupSpec {
            name: "readers".into(),
            permissions: read,
            ..Default::default()
        },
        GroupSpec {
            name: "writers".into(),
            permissions: write,
            ..Default::default()
        },
    ];
    config.security.users = vec![
        UserSpec {
            username: "reader".into(),
            password: Some("read-pw".into()),
            groups: vec!["readers".into()],
            ..Default::default()
        },
        UserSpec {
            username: "writer".into(),
            password: Some("write-pw".into()),
            groups: vec!["writers".into()],
            ..Default::default()
        },
    ];
}

pub fn config_for(server: &Server) -> ClientConfig {
    ClientConfig::new("127.0.0.1", server.local_addr.port())
}

/// Fast reconnects for tests.
pub fn quick_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        ..Default::default()
    }
}

/// An anonymous client of an insecure server.
pub async fn client(server: &Server) -> Client {
    Client::connect(config_for(server)).await.expect("client connects")
}

/// An `_ADMIN` client of a secure server.
pub async fn admin(server: &Server) -> Client {
    Client::connect(config_for(server).with_password("_ADMIN", "happn"))
        .await
        .expect("admin connects")
}

/// `fut` within [`WAIT`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.expect("in time")
}

/// Poll `cond` until true (within [`WAIT`]).
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A fake happn server: it accepts websockets, answers `describe` and `login`, records every
/// other frame it receives, and answers them according to `behaviour`.
pub struct Fake {
    pub port: u16,
    /// Every frame received after login, per connection, as text.
    pub frames: tokio::sync::mpsc::UnboundedReceiver<(usize, String)>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer `on`/`off` (ok) and nothing else; never pong.
    Silent,
    /// Answer pings, `on`/`off`; drop the connection when a `set` arrives.
    DropOnSet,
    /// Answer pings, `on`/`off`; hold `get`s until this many have arrived, then answer them in
    /// reverse order with `{"path": <the requested path>}`.
    ReverseGets(usize),
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ok_reply(request: &Value, data: Value) -> String {
    json!({"data": data, "_meta": {"type":"response","status":"ok","published":false,
        "eventId": request["eventId"], "action": request["action"]}, "protocol":"1.1.0"})
    .to_string()
}

pub async fn fake(behaviour: Behaviour) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, frames) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut conn_no = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            conn_no += 1;
            let tx = tx.clone();
            let conn = conn_no;
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let mut held: Vec<Value> = Vec::new();
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(text) = msg else { continue };
                    let text = text.to_string();
                    if let Some(n) = text.strip_prefix("\"primus::ping::") {
                        if behaviour != Behaviour::Silent {
                            let _ = ws.send(Message::Text(format!("\"primus::pong::{n}").into())).await;
                        }
                        continue;
                    }
                    let request: Value = serde_json::from_str(&text).unwrap();
                    let reply = match request["action"].as_str().unwrap() {
                        "describe" => ok_reply(&request, json!({"name":"fake","secure":false,"encryptPayloads":false})),
                        "login" => ok_reply(&request, json!({"id": format!("session-{conn}"),"info":{},"index":0,"type":1})),
                        action => {
                            let _ = tx.send((conn, text.clone()));
                            match (action, behaviour) {
                                ("on" | "off", _) => ok_reply(&request, json!({})),
                                ("set", Behaviour::DropOnSet) => return,
                                ("get", Behaviour::ReverseGets(n)) => {
                                    held.push(request);
                                    if held.len() < n {
                                        continue;
                                    }
                                    for r in held.drain(..).rev() {
                                        let reply = ok_reply(&r, json!({"path": r["path"]}));
                                        if ws.send(Message::Text(reply.into())).await.is_err() {
                                            return;
                                        }
                                    }
                                    continue;
                                }
                                _ => continue,
                            }
                        }
                    };
                    if ws.send(Message::Text(reply.into())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Fake { port, frames, task }
}

impl Fake {
    pub fn config(&self) -> ClientConfig {
        ClientConfig::new("127.0.0.1", self.port)
    }

    /// The next recorded frame, parsed.
    pub async fn next_frame(&mut self) -> (usize, Value) {
        let (conn, text) = within(self.frames.recv()).await.expect("a frame");
        (conn, serde_json::from_str(&text).unwrap())
    }
}
