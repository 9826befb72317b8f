//! Socket loss: reconnect after a restart, re-login, re-subscribe; queued and in-flight
//! requests; the heartbeat; and the cases where the client must not come back.

mod common;

use common::*;
use futures_util::StreamExt;
use happn_client::{Client, ClientEvent, ConnectionState, EndReason, Error, GetOptions, OnOptions, ReconnectPolicy, SetOptions};
use happn_engine::security::UserSpec;
use happn_rs::StopMode;
use serde_json::json;
use std::time::Duration;
use tokio::sync::broadcast;

/// Wait for the first event that `pick` accepts.
async fn wait_for<T>(events: &mut broadcast::Receiver<ClientEvent>, mut pick: impl FnMut(&ClientEvent) -> Option<T>) -> T {
    within(async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn reconnects_after_a_restart_on_the_same_port() {
    let s = server(true).await;
    let port = s.local_addr.port();
    let c = Client::connect(config_for(&s).with_password("_ADMIN", "happn").with_reconnect(quick_reconnect()))
        .await
        .unwrap();
    let mut events = c.events();
    let mut state = c.watch_state();
    let first_session = c.session().unwrap().id;
    let mut sub = c.on("/rc/*", OnOptions::default()).await.unwrap();
    let mut sub2 = c.on("/rc/*", OnOptions::default()).await.unwrap();

    s.stop(StopMode::Reconnect).await;
    let system = wait_for(&mut events, |e| match e {
        ClientEvent::System(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(system.event_key, "server-side-disconnect");
    assert_eq!(system.reconnect, Some(true));
    wait_for(&mut events, |e| matches!(e, ClientEvent::Disconnected { .. }).then_some(())).await;
    within(state.wait_for(|s| *s == ConnectionState::Reconnecting)).await.unwrap();
    wait_for(&mut events, |e| matches!(e, ClientEvent::Reconnecting { .. }).then_some(())).await;

    // A request made while down waits for the new session.
    let queued = {
        let c = c.clone();
        tokio::spawn(async move { c.set("/queued", &json!({"q": 1}), SetOptions::default()).await })
    };

    let s2 = server_with(true, port, |_| {}).await;
    let session = wait_for(&mut events, |e| match e {
        ClientEvent::Reconnected { session } => Some(session.clone()),
        _ => None,
    })
    .await;
    assert_ne!(session.id, first_session);
    assert_eq!(c.session().unwrap().id, session.id);
    assert_eq!(c.state(), ConnectionState::Connected);
    queued.await.unwrap().unwrap();
    assert!(c.get("/queued", GetOptions::default()).await.unwrap().into_one().is_some());

    // The subscriptions are back (one channel, two references) and deliver again.
    eventually(|| s2.state.subscriptions.channel_count() == 1).await;
    let writer = admin(&s2).await;
    writer
        .set("/rc/1", &json!({"after": "restart"}), SetOptions::default())
        .await
        .unwrap();
    assert_eq!(within(sub.next()).await.unwrap().data["after"], "restart");
    assert_eq!(within(sub2.next()).await.unwrap().meta.path, "/rc/1");
    // Both references were restored: one off leaves the channel subscribed.
    c.off(&sub).await.unwrap();
    assert_eq!(s2.state.subscriptions.channel_count(), 1);
    c.off(&sub2).await.unwrap();
    assert_eq!(s2.state.subscriptions.channel_count(), 0);
    s2.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn no_reconnect_after_a_no_reconnect_stop() {
    let s = server(false).await;
    let port = s.local_addr.port();
    let c = Client::connect(config_for(&s).with_reconnect(quick_reconnect())).await.unwrap();
    let mut events = c.events();
    let mut sub = c.on("/nr", OnOptions::default()).await.unwrap();
    s.stop(StopMode::NoReconnect).await;

    let system = wait_for(&mut events, |e| match e {
        ClientEvent::System(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(system.reconnect, Some(false));
    let reason = wait_for(&mut events, |e| match e {
        ClientEvent::Ended { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(reason, EndReason::ServerClosed), "{reason:?}");
    assert_eq!(c.state(), ConnectionState::Ended);
    assert!(within(sub.next()).await.is_none());
    assert!(matches!(c.get("/x", GetOptions::default()).await, Err(Error::Closed)));

    // A server back on the port sees nobody.
    let s2 = server_with(false, port, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s2.state.connection_count(), 0);
    s2.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn in_flight_requests_fail_with_disconnected_then_the_client_recovers() {
    let mut fake = fake(Behaviour::DropOnSet).await;
    let c = Client::connect(fake.config().with_reconnect(quick_reconnect())).await.unwrap();
    let mut events = c.events();
    let sub = c.on("/inflight/*", OnOptions::default()).await.unwrap();
    let _twin = c.on("/inflight/*", OnOptions::default()).await.unwrap();
    fake.next_frame().await;
    fake.next_frame().await;

    let err = c.set("/inflight/1", &json!({}), SetOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Disconnected), "{err:?}");
    let (conn, set) = fake.next_frame().await;
    assert_eq!((conn, set["action"].as_str()), (1, Some("set")));

    wait_for(&mut events, |e| matches!(e, ClientEvent::Reconnected { .. }).then_some(())).await;
    // The new session gets one `on` per channel with the number of local subscriptions, and
    // nothing else (as the JS client sends it).
    let (conn, on) = fake.next_frame().await;
    assert_eq!(conn, 2);
    assert_eq!(on["path"], "/ALL@/inflight/*");
    assert_eq!(on["sessionId"], "session-2");
    assert_eq!(on["options"], json!({"refCount": 2, "timeout": 20000}));

    c.off(&sub).await.unwrap();
    let (conn, off) = fake.next_frame().await;
    assert_eq!(
        (conn, off["action"].as_str(), off["options"]["refCount"].as_u64()),
        (2, Some("off"), Some(1))
    );
}

#[tokio::test]
async fn a_silent_server_trips_the_heartbeat() {
    let mut fake = fake(Behaviour::Silent).await;
    let config = fake
        .config()
        .with_heartbeat(Some(Duration::from_millis(200)), Duration::from_millis(200))
        .with_reconnect(quick_reconnect());
    let c = Client::connect(config).await.unwrap();
    let mut events = c.events();
    let reason = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, "pong timeout");
    wait_for(&mut events, |e| matches!(e, ClientEvent::Reconnected { .. }).then_some(())).await;
    assert_eq!(c.session().unwrap().id, "session-2");
    c.on("/hb", OnOptions::default()).await.unwrap();
    assert_eq!(fake.next_frame().await.0, 2);
}

#[tokio::test]
async fn a_live_server_answers_the_heartbeat() {
    let s = server(false).await;
    let config = config_for(&s).with_heartbeat(Some(Duration::from_millis(100)), Duration::from_millis(500));
    let c = Client::connect(config).await.unwrap();
    let mut events = c.events();
    // Several ping intervals (the server answers at most one ping per second) without a drop.
    let dropped = tokio::time::timeout(Duration::from_millis(1500), events.recv()).await;
    assert!(dropped.is_err(), "no connection events expected: {dropped:?}");
    assert_eq!(c.state(), ConnectionState::Connected);
    c.set("/hb", &json!({}), SetOptions::default()).await.unwrap();
    s.stop(StopMode::NoReconnect).await;
}

fn alice(password: &str, secret: &str) -> impl Fn(&mut happn_rs::config::Config) {
    let password = password.to_string();
    let secret = secret.to_string();
    move |c| {
        c.security.token_secret = Some(secret.clone());
        c.security.users = vec![UserSpec {
            username: "alice".into(),
            password: Some(password.clone()),
            groups: vec!["_ADMIN".into()],
            ..Default::default()
        }];
    }
}

#[tokio::test]
async fn relogin_falls_back_to_the_session_token() {
    let s = server_with(true, 0, alice("one", "shared-secret")).await;
    let port = s.local_addr.port();
    let c = Client::connect(config_for(&s).with_password("alice", "one").with_reconnect(quick_reconnect()))
        .await
        .unwrap();
    let mut events = c.events();
    s.stop(StopMode::Reconnect).await;
    // Same token secret, but the password has changed: only the token still works.
    let s2 = server_with(true, port, alice("two", "shared-secret")).await;
    let session = wait_for(&mut events, |e| match e {
        ClientEvent::Reconnected { session } => Some(session.clone()),
        ClientEvent::Ended { reason } => panic!("ended: {reason:?}"),
        _ => None,
    })
    .await;
    assert_eq!(session.user.unwrap().username, "alice");
    c.set("/after-token", &json!({}), SetOptions::default()).await.unwrap();
    s2.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn a_refused_relogin_ends_the_client() {
    let s = server_with(true, 0, alice("one", "secret-1")).await;
    let port = s.local_addr.port();
    let c = Client::connect(config_for(&s).with_password("alice", "one").with_reconnect(quick_reconnect()))
        .await
        .unwrap();
    let mut events = c.events();
    s.stop(StopMode::Reconnect).await;
    let s2 = server_with(true, port, alice("two", "secret-2")).await;
    let reason = wait_for(&mut events, |e| match e {
        ClientEvent::Ended { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    match reason {
        EndReason::LoginRejected(e) => assert!(e.is_access_denied(), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.state(), ConnectionState::Ended);
    s2.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn reconnect_can_be_turned_off_or_bounded() {
    let s = server(false).await;
    let policy = ReconnectPolicy {
        enabled: false,
        ..Default::default()
    };
    let c = Client::connect(config_for(&s).with_reconnect(policy)).await.unwrap();
    let mut events = c.events();

    let bounded = ReconnectPolicy {
        max_attempts: Some(2),
        ..quick_reconnect()
    };
    let d = Client::connect(config_for(&s).with_reconnect(bounded)).await.unwrap();
    let mut d_events = d.events();

    s.stop(StopMode::Reconnect).await;
    let reason = wait_for(&mut events, |e| match e {
        ClientEvent::Ended { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(reason, EndReason::ConnectionLost), "{reason:?}");

    let mut failures = 0;
    let reason = wait_for(&mut d_events, |e| match e {
        ClientEvent::ReconnectFailed { .. } => {
            failures += 1;
            None
        }
        ClientEvent::Ended { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(reason, EndReason::ReconnectGaveUp), "{reason:?}");
    assert_eq!(failures, 2);
}
