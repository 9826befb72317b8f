//! Shared by the server's integration tests (each test crate uses part of it).
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A port the OS just handed out (and released) for a server to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Connect once the server listens (it may still be starting).
pub async fn connect(port: u16) -> Ws {
    for _ in 0..200 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/primus")).await {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server did not come up on port {port}");
}

/// The real binary on loopback `port`; callers add storage flags or environment, then spawn.
pub fn server_command(port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_happn-rs"));
    c.args(["--port", &port.to_string(), "--host", "127.0.0.1", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// Send one JSON frame.
pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(tokio_tungstenite::tungstenite::Message::Text(v.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON frame (websocket pings and pongs skipped), within 5 s.
pub async fn recv_json(ws: &mut Ws) -> Value {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .unwrap()
        {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The server process of a test: killed and reaped when the test ends, however it ends.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's resident memory, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `GET path` over plain HTTP to a server on `addr` (`Connection: close`): the status code and
/// the body, within 5 s.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        s.take(16 << 20).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("an HTTP reply in time")
        .expect("an HTTP exchange");
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// Run a command to its end (`limit` at most) with `stdin` as its standard input; its output.
pub fn run_to_end(mut c: Command, stdin: &str, limit: Duration) -> std::process::Output {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the command did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
