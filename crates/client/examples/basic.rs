//! Connect to a happn server on 127.0.0.1:55000, write, read and subscribe.
//!
//! ```sh
//! cargo run -p happn-rs &                      # an insecure server on port 55000
//! cargo run -p happn-client --example basic
//! # a secure server: HAPPN_USERNAME=_ADMIN HAPPN_PASSWORD=happn cargo run -p happn-client --example basic
//! ```

use futures_util::StreamExt;
use happn_client::{Client, ClientConfig, ClientEvent, Credentials, EventType, GetOptions, OnOptions, SetOptions};
use serde_json::json;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), happn_client::Error> {
    let credentials = match (std::env::var("HAPPN_USERNAME"), std::env::var("HAPPN_PASSWORD")) {
        (Ok(username), Ok(password)) => Credentials::Password { username, password },
        _ => Credentials::Anonymous,
    };
    let client = Client::connect(ClientConfig::new("127.0.0.1", 55000).with_credentials(credentials)).await?;
    let session = client.session().expect("logged in");
    println!("connected to {:?}, session {}", client.server_info().name, session.id);

    // Report connection trouble in the background.
    let mut events = client.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event {
                ClientEvent::Disconnected { reason } => eprintln!("connection lost: {reason}"),
                ClientEvent::Reconnected { session } => eprintln!("reconnected as {}", session.id),
                ClientEvent::Ended { reason } => eprintln!("client ended: {reason:?}"),
                _ => {}
            }
        }
    });

    // Subscribe to sets under /example/ before writing, so we see our own writes.
    let mut changes = client.on("/example/*", OnOptions::event_type(EventType::Set)).await?;

    let stored = client
        .set("/example/greeting", &json!({"text": "hello", "count": 1}), SetOptions::default())
        .await?;
    println!("stored {} at {:?}", stored.meta.path, stored.meta.created);
    client.set("/example/greeting", &json!({"count": 2}), SetOptions::merge()).await?;

    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(5), changes.next()).await {
            Ok(Some(event)) => println!("event {} on {}: {}", event.meta.action, event.meta.channel, json!(event.data)),
            _ => break,
        }
    }

    let greeting = client.get("/example/greeting", GetOptions::default()).await?.into_one();
    println!("read back: {}", json!(greeting.map(|item| item.data)));
    let paths = client.get_paths("/example/*").await?;
    println!("paths under /example/: {paths:?}");

    client.off(&changes).await?;
    client.disconnect().await?;
    Ok(())
}
