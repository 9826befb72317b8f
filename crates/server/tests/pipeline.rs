//! Pipelined writes on a durable store: a client that sends many requests without waiting gets
//! its replies in request order, reads see the writes sent before them, writes to one path apply
//! in order, and subscribers see the events in the order the writes were sent.

use happn_rs::config::{Config, DataConfig};
use happn_rs::{start, StopMode};
use serde_json::json;

mod common;
use common::{recv_json, send_json, Ws};

async fn open(addr: std::net::SocketAddr) -> Ws {
    let url = format!("ws://{addr}/primus");
    let mut ws = tokio_tungstenite::connect_async(url).await.expect("upgrade").0;
    send_json(&mut ws, json!({"action":"login","eventId":0,"data":{}})).await;
    assert_eq!(recv_json(&mut ws).await["_meta"]["status"], "ok");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_keep_request_order() {
    let dir = std::env::temp_dir().join(format!("happn-rs-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut data = DataConfig::durable();
    data.dir = dir.clone();
    let server = start(Config {
        port: 0,
        host: "127.0.0.1".into(),
        data,
        ..Config::default()
    })
    .await
    .expect("server starts");

    let mut watcher = open(server.local_addr).await;
    send_json(
        &mut watcher,
        json!({"action":"on","eventId":1,"path":"/ALL@/pipe/*","options":{"refCount":0}}),
    )
    .await;
    assert_eq!(recv_json(&mut watcher).await["_meta"]["status"], "ok");

    // Everything at once: plain sets, repeated paths, a merge, a read, a bad request, a remove.
    let frames = vec![
        json!({"action":"set","eventId":10,"path":"/pipe/a","data":{"v":1}}),
        json!({"action":"set","eventId":11,"path":"/pipe/b","data":{"v":1}}),
        json!({"action":"set","eventId":12,"path":"/pipe/a","data":{"v":2}}),
        json!({"action":"set","eventId":13,"path":"/pipe/c","data":{"x":1}}),
        json!({"action":"set","eventId":14,"path":"/pipe/c","data":{"y":2},"options":{"merge":true}}),
        json!({"action":"get","eventId":15,"path":"/pipe/a"}),
        json!({"action":"set","eventId":16,"data":{"no":"path"}}),
        json!({"action":"remove","eventId":17,"path":"/pipe/b"}),
        json!({"action":"set","eventId":18,"path":"/pipe/d","data":{"v":1}}),
        json!({"action":"set","eventId":19,"path":"/pipe/e","data":{"v":1}}),
        json!({"action":"get","eventId":20,"path":"/pipe/*"}),
    ];
    let mut writer = open(server.local_addr).await;
    for f in &frames {
        send_json(&mut writer, f.clone()).await;
    }
    let mut replies = Vec::new();
    while replies.len() < frames.len() {
        let r = recv_json(&mut writer).await;
        let meta = if r.is_array() {
            r.as_array().unwrap().last().unwrap().clone()
        } else {
            r["_meta"].clone()
        };
        replies.push((meta["eventId"].as_u64().unwrap(), r));
    }
    let ids: Vec<u64> = replies.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (10..=20).collect::<Vec<_>>(), "replies in request order");
    assert_eq!(
        replies[5].1["data"]["v"], 2,
        "the read sees both earlier writes to /pipe/a in order"
    );
    assert_eq!(replies[4].1["data"], json!({"y":2,"x":1}), "the merge applied after the first set");
    assert_eq!(replies[6].1["_meta"]["status"], "error", "a bad request answers in its place");
    let listed: Vec<&str> = replies[10]
        .1
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["_meta"]["path"].as_str())
        .collect();
    assert_eq!(listed, ["/pipe/a", "/pipe/c", "/pipe/d", "/pipe/e"]);

    let mut events = Vec::new();
    while events.len() < 8 {
        let e = recv_json(&mut watcher).await;
        events.push(e["_meta"]["action"].as_str().unwrap().to_string());
    }
    assert_eq!(
        events,
        [
            "/SET@/pipe/a",
            "/SET@/pipe/b",
            "/SET@/pipe/a",
            "/SET@/pipe/c",
            "/SET@/pipe/c",
            "/REMOVE@/pipe/b",
            "/SET@/pipe/d",
            "/SET@/pipe/e"
        ],
        "events in the order the writes were sent"
    );
    server.stop(StopMode::NoReconnect).await;
    let _ = std::fs::remove_dir_all(&dir);
}
