//! Wire-level tests: a real server on a loopback port, driven with raw websocket frames.

use futures_util::{SinkExt, StreamExt};
use happn_rs::config::Config;
use happn_rs::{start, Server, StopMode};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{recv_json as recv, send_json as send, Ws};

async fn server(secure: bool, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut c = Config {
        port: 0,
        host: "127.0.0.1".into(),
        secure,
        ..Config::default()
    };
    tweak(&mut c);
    start(c).await.expect("server starts")
}

async fn connect(s: &Server, query: &str) -> Ws {
    let url = format!("ws://{}/primus?{query}", s.local_addr);
    let (ws, resp) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    ws
}

async fn login(ws: &mut Ws) -> String {
    send(
        ws,
        json!({"action":"login","eventId":"l","data":{"username":"_ADMIN","password":"happn"}}),
    )
    .await;
    let r = recv(ws).await;
    assert_eq!(r["_meta"]["status"], "ok", "{r}");
    r["data"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn set_get_remove_round_trip() {
    let s = server(true, |_| {}).await;
    let mut ws = connect(&s, "").await;
    login(&mut ws).await;
    send(
        &mut ws,
        json!({"action":"set","eventId":1,"path":"/a/1","data":{"x":1},"sessionId":"s"}),
    )
    .await;
    let r = recv(&mut ws).await;
    assert_eq!(r["_meta"]["action"], "/SET@/a/1");
    assert_eq!(r["protocol"], "1.1.0");
    send(&mut ws, json!({"action":"get","eventId":2,"path":"/a/*"})).await;
    let r = recv(&mut ws).await;
    let items = r.as_array().expect("array reply");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["x"], 1);
    assert_eq!(items[1]["eventId"], 2);
    send(&mut ws, json!({"action":"remove","eventId":3,"path":"/a/*"})).await;
    assert_eq!(recv(&mut ws).await["data"]["removed"], 1);
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_survives() {
    let s = server(true, |_| {}).await;
    let mut ws = connect(&s, "").await;
    for frame in ["null", "\"a string\"", "42", "[1,2]", "\"primus::bogus::x\""] {
        ws.send(Message::Text(frame.into())).await.unwrap();
        let r = recv(&mut ws).await;
        assert_eq!(r["_meta"]["error"]["name"], "Unknown request action: undefined", "{frame}");
        assert!(r["_meta"].get("eventId").is_none());
    }
    ws.send(Message::Text("{not json".into())).await.unwrap(); // dropped silently
    send(&mut ws, json!({"action":"frobnicate","eventId":4})).await;
    assert_eq!(recv(&mut ws).await["_meta"]["error"]["name"], "Unknown request action: frobnicate");
    send(&mut ws, json!({"action":"get","eventId":5,"path":"/x"})).await;
    let r = recv(&mut ws).await;
    assert_eq!(r["_meta"]["error"], json!({"name":"AccessDenied","message":"not logged in"}));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    ws.send(Message::Text(deep.into())).await.unwrap();
    let r = recv(&mut ws).await;
    assert!(r["_meta"]["error"]["name"].as_str().unwrap().contains("nested too deeply"));
    login(&mut ws).await;
    send(&mut ws, json!({"action":"get","eventId":6,"path":5})).await;
    assert_eq!(
        recv(&mut ws).await["_meta"]["error"]["name"],
        "Error: path must be a string, not a number"
    );
    send(&mut ws, json!({"action":"get","eventId":7,"path":"/x","options":"nope"})).await;
    assert_eq!(recv(&mut ws).await["_meta"]["status"], "error");
    send(&mut ws, json!({"action":"on","eventId":8,"path":"/no-at-sign"})).await;
    assert_eq!(recv(&mut ws).await["_meta"]["status"], "error");
    send(&mut ws, json!({"action":"describe","eventId":9})).await;
    assert_eq!(recv(&mut ws).await["data"]["secure"], true);
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn oversized_frames_close_with_a_clear_error() {
    let s = server(false, |c| c.max_frame_bytes = 64 * 1024).await;
    let mut ws = connect(&s, "").await;
    let big = json!({"action":"set","eventId":1,"path":"/big","data":{"b":"x".repeat(100_000)}});
    let _ = ws.send(Message::Text(big.to_string().into())).await;
    let r = recv(&mut ws).await;
    assert!(
        r["_meta"]["error"]["name"]
            .as_str()
            .unwrap()
            .contains("maximum size of 65536 bytes"),
        "{r}"
    );
    expect_close(&mut ws, 1009).await;
    // Other clients are unaffected.
    let mut other = connect(&s, "").await;
    send(&mut other, json!({"action":"describe","eventId":1})).await;
    assert_eq!(recv(&mut other).await["_meta"]["status"], "ok");
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn heartbeat_pongs_then_flatline_close() {
    let s = server(false, |_| {}).await;
    let mut ws = connect(&s, "ping=200&pong=100").await;
    ws.send(Message::Text("\"primus::ping::77\"".into())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Text("\"primus::pong::77\"".into()));
    let mut pongs = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                assert!(t.starts_with("\"primus::pong::"));
                pongs += 1;
            }
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1000);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pongs, 2, "two unsolicited pongs (allowSkippedHeartBeats) before the close");
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn events_precede_the_reply_and_shutdown_is_announced() {
    let s = server(true, |_| {}).await;
    let mut ws = connect(&s, "").await;
    let sid = login(&mut ws).await;
    send(
        &mut ws,
        json!({"action":"on","eventId":1,"path":"/SET@/e/*","sessionId":sid,"options":{"refCount":0}}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["_meta"]["action"], "on");
    send(
        &mut ws,
        json!({"action":"set","eventId":2,"path":"/e/1","data":{"v":1},"sessionId":sid}),
    )
    .await;
    let ev = recv(&mut ws).await;
    assert_eq!(ev["_meta"]["type"], "data");
    assert_eq!(ev["_meta"]["channel"], "/SET@/e/*");
    assert_eq!(ev["_meta"]["sessionId"], sid.as_str());
    assert_eq!(recv(&mut ws).await["_meta"]["type"], "response");
    let stopper = tokio::spawn(s.stop(StopMode::NoReconnect));
    let sys = recv(&mut ws).await;
    assert_eq!(sys["_meta"]["type"], "system");
    assert_eq!(sys["eventKey"], "server-side-disconnect");
    assert_eq!(sys["reconnect"], false);
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Text("\"primus::server::close\"".into()));
    assert!(matches!(ws.next().await.unwrap().unwrap(), Message::Close(_)));
    stopper.await.unwrap();
}

/// The next websocket message, within 5 s.
async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("message in time")
        .expect("open")
        .expect("valid frame")
}

/// The next message must be a close frame with `code`.
async fn expect_close(ws: &mut Ws, code: u16) {
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), code),
        other => panic!("expected close {code}, got {other:?}"),
    }
}

/// A raw TCP client that has sent a websocket upgrade request for `/primus?<query>`.
async fn raw_upgrade(s: &Server, query: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(s.local_addr).await.unwrap();
    let request = format!(
        "GET /primus?{query} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp
}

#[tokio::test]
async fn websocket_pings_fragments_and_close_codes() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    let s = server(false, |_| {}).await;
    let mut ws = connect(&s, "").await;
    // A websocket-level ping is answered with its payload.
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::Pong(b"are you there".to_vec().into()));

    // A request split over three frames is one request.
    let text = json!({"action":"describe","eventId":"frag","data":"é✓"}).to_string();
    let bytes = text.as_bytes();
    let (a, rest) = bytes.split_at(5);
    let (b, c) = rest.split_at(rest.len() / 2);
    ws.send(Message::Frame(Frame::message(a.to_vec(), OpCode::Data(Data::Text), false)))
        .await
        .unwrap();
    ws.send(Message::Frame(Frame::message(b.to_vec(), OpCode::Data(Data::Continue), false)))
        .await
        .unwrap();
    ws.send(Message::Frame(Frame::message(c.to_vec(), OpCode::Data(Data::Continue), true)))
        .await
        .unwrap();
    let r = recv(&mut ws).await;
    assert_eq!(r["_meta"]["eventId"], "frag", "{r}");
    assert_eq!(r["_meta"]["status"], "ok", "{r}");

    // The client's close is answered with its own code.
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    expect_close(&mut ws, 4000).await;
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn websocket_protocol_errors_close_that_connection_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server(false, |_| {}).await;
    let mut bystander = connect(&s, "").await;

    // A raw client that completes the handshake, then sends a frame without a mask.
    let mut tcp = raw_upgrade(&s, "").await;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    tcp.write_all(&[0x81, 0x02, b'{', b'}']).await.unwrap();
    let mut close = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut close))
        .await
        .expect("close in time")
        .unwrap();
    assert_eq!(close[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1002, "protocol error");

    // Invalid UTF-8 in a text frame closes with 1007.
    let mut ws = connect(&s, "").await;
    ws.send(Message::Frame(tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![b'"', 0xFF, b'"'],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    )))
    .await
    .unwrap();
    expect_close(&mut ws, 1007).await;

    // Nobody else noticed.
    send(&mut bystander, json!({"action":"describe","eventId":1})).await;
    assert_eq!(recv(&mut bystander).await["_meta"]["status"], "ok");
    s.stop(StopMode::NoReconnect).await;
}

/// A client that stops reading and stops sending cannot keep its connection once the server
/// closes it, even when the close frame itself can never be written (its socket is full).
#[tokio::test]
async fn a_close_is_final_even_for_a_client_that_reads_nothing() {
    use tokio::io::AsyncWriteExt;
    let s = server(false, |_| {}).await;
    let mut setup = connect(&s, "").await;
    send(
        &mut setup,
        json!({"action":"set","eventId":1,"path":"/big","data":{"b":"x".repeat(1 << 20)}}),
    )
    .await;
    assert_eq!(recv(&mut setup).await["_meta"]["status"], "ok");
    drop(setup);

    // A raw client with a fast heartbeat (250 ms) that asks for 16 MiB and never reads.
    let mut tcp = raw_upgrade(&s, "ping=200&pong=100").await;
    let get = br#"{"action":"get","eventId":2,"path":"/big"}"#;
    let mut frames = Vec::new();
    for _ in 0..16 {
        frames.extend_from_slice(&[0x81, 0x80 | get.len() as u8, 0, 0, 0, 0]);
        frames.extend_from_slice(get);
    }
    tcp.write_all(&frames).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.state.connection_count() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.state.connection_count(), 1);
    // Heartbeat flatline after two skipped beats (~0.75 s), then the 3 s close grace.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.state.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.state.connection_count(), 0, "the server let go of the stalled connection");
    drop(tcp);
    s.stop(StopMode::NoReconnect).await;
}

/// A stop waits for every connection — websockets finishing their close handshakes and plain
/// HTTP keep-alive connections alike — without polling, and does not sit out the header timeout
/// of an idle keep-alive connection.
#[tokio::test]
async fn stop_drains_websockets_and_idle_http_connections_promptly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server(false, |_| {}).await;
    let mut ws = connect(&s, "").await;
    // A kept-alive HTTP connection, idle after its first response.
    let mut http = tokio::net::TcpStream::connect(s.local_addr).await.unwrap();
    http.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = http.read(&mut buf).await.unwrap();
    assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let reader = tokio::spawn(async move {
        // The client side answers the close handshake as a normal client does.
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    });
    s.stop(StopMode::Reconnect).await;
    assert!(started.elapsed() < Duration::from_secs(2), "stop took {:?}", started.elapsed());
    // The HTTP connection was closed by the server (end of stream), not left to time out.
    let closed = tokio::time::timeout(Duration::from_secs(1), http.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle HTTP connection is closed: {closed:?}"
    );
    reader.await.unwrap();
}
