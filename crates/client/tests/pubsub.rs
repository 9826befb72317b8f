//! Subscriptions: event shapes, event types, off / off_path / off_all, count, initial values,
//! handlers, and the server-side reference counts they leave behind.

mod common;

use common::*;
use futures_util::StreamExt;
use happn_client::{EventKind, EventType, OnOptions, RemoveOptions, SetOptions, Subscription};
use happn_rs::StopMode;
use serde_json::json;
use std::time::Duration;

async fn next(sub: &mut Subscription) -> happn_client::Event {
    within(sub.next()).await.expect("an event")
}

/// Nothing arrives within a short while.
async fn quiet(sub: &mut Subscription) {
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next()).await.is_err(),
        "unexpected event"
    );
}

/// The stream has ended.
async fn ended(sub: &mut Subscription) {
    assert!(within(sub.next()).await.is_none(), "stream should have ended");
}

#[tokio::test]
async fn events_have_happns_shape() {
    let s = server(true).await;
    let c = admin(&s).await;
    let other = admin(&s).await;
    let mut all = c.on("/ps/*", OnOptions::default()).await.unwrap();
    assert_eq!(all.channel(), "/ALL@/ps/*");
    assert_eq!(all.path(), "/ps/*");

    // A write by another client, then by ourselves (publishers receive their own events).
    other.set("/ps/1", &json!({"v": 1}), SetOptions::default()).await.unwrap();
    let e = next(&mut all).await;
    assert_eq!(e.meta.kind, EventKind::Set);
    assert_eq!(e.meta.path, "/ps/1");
    assert_eq!(e.meta.action, "/SET@/ps/1");
    assert_eq!(e.meta.channel, "/ALL@/ps/*");
    assert_eq!(e.meta.session_id, Some(c.session().unwrap().id));
    assert!(e.meta.created.is_some() && e.meta.modified.is_some());
    assert_eq!(e.data["v"], 1);

    c.set("/ps/2", &json!({"v": 2}), SetOptions::default()).await.unwrap();
    assert_eq!(next(&mut all).await.meta.path, "/ps/2");

    // Events arrive before the reply to the writer.
    c.remove("/ps/1", RemoveOptions::default()).await.unwrap();
    let e = all.try_recv().expect("the remove event is already here");
    assert_eq!(e.meta.kind, EventKind::Remove);
    assert_eq!(e.meta.action, "/REMOVE@/ps/1");
    assert_eq!(e.data["removed"], 1);
    assert!(e.meta.timestamp.is_some());

    // noPublish writes are not seen.
    c.set("/ps/3", &json!({}), SetOptions::default().no_publish()).await.unwrap();
    quiet(&mut all).await;
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn event_types_filter() {
    let s = server(false).await;
    let c = client(&s).await;
    let mut sets = c.on("/et/*", OnOptions::event_type(EventType::Set)).await.unwrap();
    let mut removes = c.on("/et/*", OnOptions::event_type(EventType::Remove)).await.unwrap();
    let mut everything = c.on("*", OnOptions::default()).await.unwrap();
    assert_eq!(sets.channel(), "/SET@/et/*");
    assert_eq!(everything.channel(), "/ALL@*");

    c.set("/et/1", &json!({"x": 1}), SetOptions::default()).await.unwrap();
    c.remove("/et/1", RemoveOptions::default()).await.unwrap();
    assert_eq!(next(&mut sets).await.meta.kind, EventKind::Set);
    assert_eq!(next(&mut removes).await.meta.kind, EventKind::Remove);
    assert_eq!(next(&mut everything).await.meta.kind, EventKind::Set);
    assert_eq!(next(&mut everything).await.meta.kind, EventKind::Remove);
    quiet(&mut sets).await;
    quiet(&mut removes).await;

    // Merge events carry the whole merged document; tag events the snapshot path.
    c.set("/et/m", &json!({"a": 1}), SetOptions::default()).await.unwrap();
    c.set("/et/m", &json!({"b": 2}), SetOptions::merge()).await.unwrap();
    next(&mut sets).await;
    let merged = next(&mut sets).await;
    assert_eq!(merged.data, json!({"b": 2, "a": 1}).as_object().unwrap().clone());
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn off_off_path_and_off_all_keep_server_counts_right() {
    let s = server(false).await;
    let c = client(&s).await;
    let mut a = c.on("/off/x", OnOptions::default()).await.unwrap();
    let mut b = c.on("/off/x", OnOptions::default()).await.unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(s.state.subscriptions.channel_count(), 1);

    c.off(&a).await.unwrap();
    ended(&mut a).await;
    // The server still has b's reference.
    assert_eq!(s.state.subscriptions.channel_count(), 1);
    c.set("/off/x", &json!({}), SetOptions::default()).await.unwrap();
    next(&mut b).await;
    c.off(b.id()).await.unwrap();
    ended(&mut b).await;
    assert_eq!(s.state.subscriptions.channel_count(), 0);
    // Off twice is harmless.
    c.off(b.id()).await.unwrap();

    let mut p1 = c.on("/op/1", OnOptions::default()).await.unwrap();
    let mut p1b = c.on("/op/1", OnOptions::event_type(EventType::Set)).await.unwrap();
    let mut p1c = c.on("/op/1", OnOptions::event_type(EventType::Set)).await.unwrap();
    let mut keep = c.on("/keep", OnOptions::default()).await.unwrap();
    assert_eq!(s.state.subscriptions.channel_count(), 3);
    c.off_path("/op/*").await.unwrap();
    ended(&mut p1).await;
    ended(&mut p1b).await;
    ended(&mut p1c).await;
    assert_eq!(s.state.subscriptions.channel_count(), 1);
    c.set("/keep", &json!({}), SetOptions::default()).await.unwrap();
    next(&mut keep).await;

    // Dropping a handle unsubscribes.
    let dropped = c.on("/dropped", OnOptions::default()).await.unwrap();
    assert_eq!(s.state.subscriptions.channel_count(), 2);
    drop(dropped);
    eventually(|| s.state.subscriptions.channel_count() == 1).await;

    c.off_all().await.unwrap();
    ended(&mut keep).await;
    assert_eq!(s.state.subscriptions.channel_count(), 0);
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn count_ends_a_subscription() {
    let s = server(false).await;
    let c = client(&s).await;
    let mut twice = c.on("/cnt", OnOptions::default().count(2)).await.unwrap();
    for i in 0..3 {
        c.set("/cnt", &json!({"i": i}), SetOptions::default()).await.unwrap();
    }
    assert_eq!(next(&mut twice).await.data["i"], 0);
    assert_eq!(next(&mut twice).await.data["i"], 1);
    ended(&mut twice).await;
    eventually(|| s.state.subscriptions.channel_count() == 0).await;
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn initial_values() {
    let s = server(false).await;
    let c = client(&s).await;
    c.set("/iv/1", &json!({"n": 1}), SetOptions::default()).await.unwrap();
    c.set("/iv/2", &json!({"n": 2}), SetOptions::default()).await.unwrap();

    let mut cb = c.on("/iv/*", OnOptions::default().initial_callback()).await.unwrap();
    let values = cb.initial_values();
    assert_eq!(values.iter().map(|i| i.meta.path.as_str()).collect::<Vec<_>>(), ["/iv/1", "/iv/2"]);
    assert_eq!(values[1].data["n"], 2);
    assert!(values[0].meta.created.is_some());
    assert_eq!(cb.take_initial_values().len(), 2);
    assert!(cb.initial_values().is_empty());

    let mut emit = c.on("/iv/*", OnOptions::event_type(EventType::Set).initial_emit()).await.unwrap();
    let first = next(&mut emit).await;
    assert_eq!(first.meta.kind, EventKind::Initial);
    assert_eq!(first.meta.path, "/iv/1");
    assert_eq!(next(&mut emit).await.meta.path, "/iv/2");
    c.set("/iv/3", &json!({"n": 3}), SetOptions::default()).await.unwrap();
    let live = next(&mut emit).await;
    assert_eq!((live.meta.kind, live.meta.path.as_str()), (EventKind::Set, "/iv/3"));
    assert_eq!(next(&mut cb).await.meta.path, "/iv/3");
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn handlers() {
    let s = server(false).await;
    let c = client(&s).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let id = c
        .on_with("/h/*", OnOptions::default(), move |e| {
            let _ = tx.send(e.meta.path);
        })
        .await
        .unwrap();
    c.set("/h/1", &json!({}), SetOptions::default()).await.unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "/h/1");
    c.off(id).await.unwrap();
    // The handler task ends with the subscription, dropping its sender.
    assert_eq!(within(rx.recv()).await, None);
    assert_eq!(s.state.subscriptions.channel_count(), 0);
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn two_clients_and_target_clients() {
    let s = server(false).await;
    let a = client(&s).await;
    let b = client(&s).await;
    let mut on_a = a.on("/tc", OnOptions::default()).await.unwrap();
    let mut on_b = b.on("/tc", OnOptions::default()).await.unwrap();
    let only_b = SetOptions::default().target_clients([b.session().unwrap().id]);
    a.set("/tc", &json!({"to": "b"}), only_b).await.unwrap();
    assert_eq!(next(&mut on_b).await.data["to"], "b");
    quiet(&mut on_a).await;
    s.stop(StopMode::NoReconnect).await;
}
