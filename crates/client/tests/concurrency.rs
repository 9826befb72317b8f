//! Pipelining: many requests in flight on one socket, replies matched by eventId.

mod common;

use common::*;
use futures_util::future::join_all;
use happn_client::{GetOptions, RemoveOptions, SetOptions};
use happn_rs::StopMode;
use serde_json::json;

#[tokio::test]
async fn a_thousand_requests_in_flight() {
    let s = server(false).await;
    let c = client(&s).await;

    let sets = join_all((0..1000).map(|i| {
        let c = c.clone();
        async move { c.set(&format!("/pipe/{i}"), &json!({"i": i}), SetOptions::default()).await }
    }))
    .await;
    for (i, r) in sets.into_iter().enumerate() {
        let item = r.unwrap();
        assert_eq!(item.meta.path, format!("/pipe/{i}"));
        assert_eq!(item.data["i"], i);
    }

    // Mixed reads and writes, issued together from several tasks: every caller gets its own
    // reply.
    let tasks = (0..4).map(|t| {
        let c = c.clone();
        tokio::spawn(async move {
            let gets = join_all((0..250).map(|k| {
                let i = t * 250 + k;
                let c = c.clone();
                async move {
                    let item = c
                        .get(&format!("/pipe/{i}"), GetOptions::default())
                        .await
                        .unwrap()
                        .into_one()
                        .unwrap();
                    assert_eq!(item.data["i"], i);
                    let n = c.remove(&format!("/pipe/{i}"), RemoveOptions::default()).await.unwrap();
                    assert_eq!(n, 1);
                }
            }));
            gets.await;
        })
    });
    for t in join_all(tasks).await {
        t.unwrap();
    }
    assert_eq!(c.get_paths("/pipe/*").await.unwrap().len(), 0);
    s.stop(StopMode::NoReconnect).await;
}

#[tokio::test]
async fn replies_in_reverse_order_reach_their_callers() {
    // The fake answers nothing until all 1000 requests are in, which also proves they are
    // pipelined rather than sent one after the other.
    let fake = fake(Behaviour::ReverseGets(1000)).await;
    let c = happn_client::Client::connect(fake.config()).await.unwrap();
    let results = join_all((0..1000).map(|i| {
        let c = c.clone();
        async move { (i, c.get(&format!("/rev/{i}"), GetOptions::default()).await) }
    }))
    .await;
    for (i, r) in results {
        let item = r.unwrap().into_one().unwrap();
        assert_eq!(item.data["path"], format!("/rev/{i}"));
    }
}
