//! The frames this client writes, checked against what the happn 2.21 JS client sends.

mod common;

use common::*;
use happn_client::{Client, EventType, OnOptions};
use serde_json::json;

#[tokio::test]
async fn subscription_frames() {
    let mut fake = fake(Behaviour::Silent).await;
    let c = Client::connect(fake.config()).await.unwrap();
    assert_eq!(c.session().unwrap().id, "session-1");

    let a = c.on("/w/*", OnOptions::event_type(EventType::Set)).await.unwrap();
    let (_, on) = fake.next_frame().await;
    assert_eq!(
        on,
        json!({"action":"on","eventId":on["eventId"],"path":"/SET@/w/*","sessionId":"session-1",
               "options":{"event_type":"set","count":0,"refCount":1,"timeout":20000},"protocol":"1.1.0"})
    );
    let first_id = on["eventId"].as_u64().unwrap();
    // Key order as the JS client writes it.
    let text = serde_json::to_string(&on).unwrap();
    assert!(text.starts_with(r#"{"action":"on","eventId":"#), "{text}");

    let _b = c.on("/w/*", OnOptions::event_type(EventType::Set).count(3)).await.unwrap();
    let (_, on) = fake.next_frame().await;
    assert_eq!(on["options"]["count"], 3);
    assert!(on["eventId"].as_u64().unwrap() > first_id);

    let _d = c.on("/w/*", OnOptions::event_type(EventType::Set)).await.unwrap();
    fake.next_frame().await;

    c.off(&a).await.unwrap();
    let (_, off) = fake.next_frame().await;
    assert_eq!(off["action"], "off");
    assert_eq!(off["path"], "/SET@/w/*");
    assert_eq!(off["options"], json!({"refCount":1,"timeout":20000}));

    // off_path takes away every remaining local reference in one request.
    c.off_path("/w/*").await.unwrap();
    let (_, off) = fake.next_frame().await;
    assert_eq!(
        (off["path"].as_str(), off["options"]["refCount"].as_u64()),
        (Some("/SET@/w/*"), Some(2))
    );

    let _e = c.on("*", OnOptions::default().initial_callback()).await.unwrap();
    let (_, on) = fake.next_frame().await;
    assert_eq!(on["path"], "/ALL@*");
    assert_eq!(on["options"]["initialCallback"], true);

    // disconnect(): off * with refCount 0, then the close.
    c.disconnect().await.unwrap();
    let (_, off) = fake.next_frame().await;
    assert_eq!(off["path"], "*");
    assert_eq!(off["options"], json!({"refCount":0,"timeout":20000}));
}
