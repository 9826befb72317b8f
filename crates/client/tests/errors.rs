//! Error mapping: access denied, refused logins, timeouts, bad configuration, a closed client.

mod common;

use common::*;
use futures_util::StreamExt;
use happn_client::{
    Client, ClientConfig, ClientEvent, ConnectionState, Credentials, DisconnectOptions, EndReason, Error, Get, GetOptions, OnOptions,
    RemoveOptions, SetOptions,
};
use happn_rs::StopMode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn access_denied_for_a_user_without_permission() {
    let s = server_with(true, 0, limited_users).await;
    let reader = Client::connect(config_for(&s).with_password("reader", "read-pw")).await.unwrap();
    assert_eq!(reader.session().unwrap().user.unwrap().username, "reader");
    assert_eq!(reader.get("/allowed/x", GetOptions::default()).await.unwrap(), Get::One(None));

    let err = reader.set("/allowed/x", &json!({"a": 1}), SetOptions::default()).await.unwrap_err();
    match &err {
        Error::AccessDenied { message, .. } => assert_eq!(message, "unauthorized"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("unauthorized"));
    assert!(reader.get("/secret", GetOptions::default()).await.unwrap_err().is_access_denied());
    assert!(reader
        .remove("/allowed/x", RemoveOptions::default())
        .await
        .unwrap_err()
        .is_access_denied());
    let denied = reader.on("/secret/*", OnOptions::default()).await.unwrap_err();
    assert!(denied.is_access_denied(), "{denied:?}");
    assert_eq!(s.state.subscriptions.channel_count(), 0);

    // Allowed subscription, write by a user who may write.
    let mut sub = reader.on("/allowed/*", OnOptions::default()).await.unwrap();
    let writer = Client::connect(config_for(&s).with_password("writer", "write-pw")).await.unwrap();
    writer.set("/allowed/x", &json!({"a": 1}), SetOptions::default()).await.unwrap();
    assert_eq!(within(sub.next()).await.unwrap().meta.path, "/allowed/x");
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn refused_logins() {
    let s = server_with(true, 0, limited_users).await;
    let err = Client::connect(config_for(&s).with_password("reader", "wrong")).await.unwrap_err();
    match &err {
        Error::AccessDenied { message, .. } => assert_eq!(message, "Invalid credentials"),
        other => panic!("{other:?}"),
    }
    let err = Client::connect(config_for(&s).with_password("nobody", "x")).await.unwrap_err();
    assert!(err.is_access_denied(), "{err:?}");
    let err = Client::connect(config_for(&s)).await.unwrap_err();
    assert!(err.is_access_denied(), "anonymous login to a secure server: {err:?}");
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn token_login_and_revocation() {
    let s = server(true).await;
    let first = admin(&s).await;
    let token = first.session().unwrap().token.unwrap();
    let second = Client::connect(config_for(&s).with_token(token.clone())).await.unwrap();
    assert_eq!(second.session().unwrap().user.unwrap().username, "_ADMIN");
    assert_ne!(second.session().unwrap().id, first.session().unwrap().id);
    second.set("/tok", &json!({"ok": true}), SetOptions::default()).await.unwrap();

    first.disconnect_with(DisconnectOptions { revoke_session: true }).await.unwrap();
    let err = Client::connect(config_for(&s).with_credentials(Credentials::Token(token)))
        .await
        .unwrap_err();
    assert!(err.is_access_denied(), "revoked token: {err:?}");
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn request_timeout() {
    let mut fake = fake(Behaviour::Silent).await;
    let c = Client::connect(fake.config().with_request_timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = c.get("/never", GetOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (_, frame) = fake.next_frame().await;
    assert_eq!(frame["action"], "get");
    // The client is still usable.
    c.on("/still/works", OnOptions::default()).await.unwrap();
}

#[tokio::test]
async fn connection_failures() {
    // Nothing listens on this port once the listener is dropped.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Client::connect(ClientConfig::new("127.0.0.1", port)).await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    let err = Client::connect(ClientConfig::from_url("gopher://x")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl(_)), "{err:?}");
    // A TLS handshake against a plain server fails cleanly (no panic in the TLS setup).
    let s = server(false).await;
    let mut config = ClientConfig::from_url(format!("wss://localhost:{}", s.local_addr.port()));
    config.connect_timeout = Duration::from_secs(5);
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::Io(_) | Error::WebSocket(_)), "{err:?}");
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn a_disconnected_client_is_closed() {
    let s = server(false).await;
    let c = client(&s).await;
    let clone = c.clone();
    let mut events = c.events();
    let mut sub = c.on("/closed/*", OnOptions::default()).await.unwrap();
    c.disconnect().await.unwrap();
    assert_eq!(c.state(), ConnectionState::Ended);
    assert!(within(sub.next()).await.is_none());
    assert!(matches!(
        clone.set("/closed/1", &json!({}), SetOptions::default()).await,
        Err(Error::Closed)
    ));
    loop {
        match within(events.recv()).await.unwrap() {
            ClientEvent::Ended {
                reason: EndReason::Disconnected,
            } => break,
            ClientEvent::Ended { reason } => panic!("{reason:?}"),
            _ => {}
        }
    }
    // A second disconnect is a no-op; the server saw the socket go.
    clone.disconnect().await.unwrap();
    eventually(|| s.state.connection_count() == 0).await;
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn dropping_every_handle_closes_the_socket() {
    let s = server(false).await;
    let c = client(&s).await;
    let sub = c.on("/drop", OnOptions::default()).await.unwrap();
    assert_eq!(s.state.connection_count(), 1);
    drop(c);
    eventually(|| s.state.connection_count() == 0).await;
    drop(sub);
    s.stop(StopMode::NoReconnect).await;
}
