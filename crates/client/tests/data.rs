//! set / get / remove and their options against an in-process happn-rs server.

mod common;

use common::*;
use happn_client::{Get, GetOptions, RemoveOptions, SetOptions};
use happn_rs::StopMode;
use serde::Deserialize;
use serde_json::{json, Value};

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn set_get_remove_round_trip() {
    let s = server(true).await;
    let c = admin(&s).await;
    let session = c.session().unwrap();
    assert!(session.token.is_some());
    assert_eq!(session.user.as_ref().unwrap().username, "_ADMIN");
    assert!(c.server_info().secure);

    let stored = c
        .set("/rt/1", &json!({"a": 1, "nested": {"b": [1, 2]}}), SetOptions::default())
        .await
        .unwrap();
    assert_eq!(stored.data, obj(json!({"a": 1, "nested": {"b": [1, 2]}})));
    assert_eq!(stored.meta.path, "/rt/1");
    let created = stored.meta.created.expect("created");
    assert_eq!(stored.meta.modified, Some(created));

    let got = c.get("/rt/1", GetOptions::default()).await.unwrap();
    let Get::One(Some(item)) = got else { panic!("{got:?}") };
    assert_eq!(item.data, stored.data);
    assert_eq!(item.meta.created, Some(created));

    // A second set keeps `created` and moves `modified`.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = c.set("/rt/1", &json!({"a": 2}), SetOptions::default()).await.unwrap();
    assert_eq!(again.meta.created, Some(created));
    assert!(again.meta.modified.unwrap() > created);

    assert_eq!(c.get("/rt/missing", GetOptions::default()).await.unwrap(), Get::One(None));
    assert_eq!(c.remove("/rt/1", RemoveOptions::default()).await.unwrap(), 1);
    assert_eq!(c.remove("/rt/1", RemoveOptions::default()).await.unwrap(), 0);
    assert_eq!(c.get("/rt/1", GetOptions::default()).await.unwrap(), Get::One(None));

    for i in 0..3 {
        c.set(&format!("/rt/many/{i}"), &json!({"i": i}), SetOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(c.remove("/rt/many/*", RemoveOptions::default()).await.unwrap(), 3);
    c.disconnect().await.unwrap();
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn set_options_behave_like_happn() {
    let s = server(false).await;
    let c = client(&s).await;
    // Insecure servers give anonymous sessions: no token, no user.
    let session = c.session().unwrap();
    assert!(session.token.is_none() && session.user.is_none());

    c.set("/opt/m", &json!({"old": 1, "keep": true}), SetOptions::default())
        .await
        .unwrap();
    let merged = c.set("/opt/m", &json!({"new": 2, "old": 3}), SetOptions::merge()).await.unwrap();
    assert_eq!(merged.data, obj(json!({"new": 2, "old": 3, "keep": true})));

    let quiet = c
        .set("/opt/np", &json!({"x": 1}), SetOptions::default().no_publish())
        .await
        .unwrap();
    assert!(quiet.meta.created.is_some());

    let transient = c.set("/opt/ns", &json!({"x": 1}), SetOptions::default().no_store()).await.unwrap();
    assert_eq!(transient.meta.path, "/opt/ns");
    assert_eq!(transient.meta.created, None);
    assert_eq!(c.get("/opt/ns", GetOptions::default()).await.unwrap(), Get::One(None));

    let tagged = c.tag("/opt/m", "v1").await.unwrap();
    assert_eq!(tagged.meta.tag.as_deref(), Some("v1"));
    assert!(tagged.meta.path.starts_with("/_TAGS/opt/m/"), "{}", tagged.meta.path);

    let sibling = c.set_sibling("/opt/sib", &json!({"s": 1})).await.unwrap();
    assert!(sibling.meta.path.starts_with("/opt/sib/"), "{}", sibling.meta.path);
    assert_eq!(c.get_paths("/opt/sib/*").await.unwrap(), vec![sibling.meta.path.clone()]);

    // Scalars are stored as {"value": …}; typed data round-trips.
    let scalar = c.set("/opt/scalar", &42, SetOptions::default()).await.unwrap();
    assert_eq!(scalar.data, obj(json!({"value": 42})));
    #[derive(serde::Serialize, Deserialize, Debug, PartialEq)]
    struct Device {
        name: String,
        online: bool,
    }
    let d = Device {
        name: "d1".into(),
        online: true,
    };
    c.set("/opt/typed", &d, SetOptions::default()).await.unwrap();
    let back: Device = c
        .get("/opt/typed", GetOptions::default())
        .await
        .unwrap()
        .into_one()
        .unwrap()
        .data_as()
        .unwrap();
    assert_eq!(back, d);
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn get_variants() {
    let s = server(false).await;
    let c = client(&s).await;
    for (i, colour) in ["red", "green", "blue", "red"].iter().enumerate() {
        c.set(&format!("/gv/{i}"), &json!({"n": i, "colour": colour}), SetOptions::default())
            .await
            .unwrap();
    }
    c.set("/other/1", &json!({"n": 100}), SetOptions::default()).await.unwrap();

    // Wildcard: many, in path order.
    let all = c.get("/gv/*", GetOptions::default()).await.unwrap().into_many();
    assert_eq!(
        all.iter().map(|i| i.meta.path.as_str()).collect::<Vec<_>>(),
        ["/gv/0", "/gv/1", "/gv/2", "/gv/3"]
    );
    assert!(all.iter().all(|i| i.meta.created.is_some()));

    // Criteria make even an exact path a list.
    let reds = c.get("/gv/*", GetOptions::criteria(json!({"colour": "red"}))).await.unwrap();
    assert_eq!(reds.count(), 2);
    let exact = c.get("/gv/1", GetOptions::criteria(json!({"n": 1}))).await.unwrap();
    assert!(matches!(&exact, Get::Many(v) if v.len() == 1), "{exact:?}");
    let big = c
        .get("/gv/*", GetOptions::criteria(json!({"n": {"$gte": 2}})))
        .await
        .unwrap()
        .into_many();
    assert_eq!(big.len(), 2);

    // Sort, skip, limit, fields.
    let top = c
        .get("/gv/*", GetOptions::default().sort(json!({"n": -1})).limit(2))
        .await
        .unwrap()
        .into_many();
    assert_eq!(top.iter().map(|i| i.data["n"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 2]);
    let skipped = c
        .get("/gv/*", GetOptions::default().sort(json!({"n": 1})).skip(1).limit(2))
        .await
        .unwrap()
        .into_many();
    assert_eq!(skipped.iter().map(|i| i.data["n"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    let projected = c
        .get("/gv/*", GetOptions::default().fields(json!({"colour": 1})))
        .await
        .unwrap()
        .into_many();
    assert!(projected.iter().all(|i| !i.data.contains_key("n") && i.data.contains_key("colour")));
    assert_eq!(projected[0].meta.path, "/gv/0");

    // Count.
    assert_eq!(c.get("/gv/*", GetOptions::default().count()).await.unwrap(), Get::Count(4));
    assert_eq!(
        c.get("/gv/*", GetOptions::criteria(json!({"colour": "red"})).count())
            .await
            .unwrap(),
        Get::Count(2)
    );

    // Paths only.
    assert_eq!(c.get_paths("/gv/*").await.unwrap(), ["/gv/0", "/gv/1", "/gv/2", "/gv/3"]);
    let paths = c.get("/gv/*", GetOptions::default().path_only()).await.unwrap().into_many();
    assert!(paths.iter().all(|i| i.data.is_empty()));
    assert_eq!(c.get_paths("/nothing/*").await.unwrap(), Vec::<String>::new());

    // Bad queries come back as server errors.
    let err = c.get("/gv/*", GetOptions::criteria(json!({"n": {"$bogus": 1}}))).await.unwrap_err();
    assert!(matches!(err, happn_client::Error::Server { .. }), "{err:?}");
    s.stop(StopMode::NoReconnect).await;
}
