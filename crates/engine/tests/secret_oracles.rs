//! Issue 13, finding 1: secrets must not be recoverable through query side channels. Each test is
//! an oracle an attacker with `get` on `*` would use, run through `DataService::get` (the read
//! path of `get`, `count` and `on` initial values) on a memory store and on a routed store (whose
//! reads go through the async store path).

use happn_engine::data::{DataService, Found};
use happn_engine::query::Query;
use happn_engine::record::Record;
use happn_engine::security::{Security, SecurityConfig, UserSpec, KEYPAIR_PATH, TOKEN_SECRET_PATH};
use happn_engine::storage::{MemoryStore, RoutedStore, Store};
use serde_json::{json, Value};
use std::sync::Arc;

const SECRET: &str = "a1b2c3d4";

async fn setup(store: Arc<dyn Store>) -> Arc<DataService> {
    let data = Arc::new(DataService::new(store));
    let cfg = SecurityConfig {
        users: vec![UserSpec {
            username: "alice".into(),
            password: Some("pw".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let security = Security::new(data.clone(), &cfg);
    security.bootstrap(&cfg).await.unwrap();
    // Known secrets, so the oracles have something to find.
    let put = |path: &str, v: Value| Record::new(path, v.as_object().unwrap().clone(), 1);
    data.put_record(put(TOKEN_SECRET_PATH, json!({"value": SECRET}))).await.unwrap();
    data.put_record(put(KEYPAIR_PATH, json!({"privateKey": SECRET, "publicKey": "pub"})))
        .await
        .unwrap();
    data.put_record(put("/app/visible", json!({"value": "a1"}))).await.unwrap();
    data
}

async fn stores() -> Vec<(&'static str, Arc<DataService>)> {
    vec![
        ("memory", setup(Arc::new(MemoryStore::new())).await),
        (
            "routed",
            setup(Arc::new(RoutedStore::new(vec![], Arc::new(MemoryStore::new())))).await,
        ),
    ]
}

fn query(criteria: Value, options: Value) -> Query {
    Query::parse(Some(&criteria), Some(&options)).unwrap()
}

async fn count(data: &DataService, path: &str, criteria: Value) -> usize {
    match data.get(path, &query(criteria, json!({"count": true})), true).await.unwrap() {
        Found::Count(n) => n,
        other => panic!("{other:?}"),
    }
}

async fn many(data: &DataService, path: &str, criteria: Value, options: Value) -> Vec<Record> {
    match data.get(path, &query(criteria, options), true).await.unwrap() {
        Found::Many(r) => r,
        other => panic!("{other:?}"),
    }
}

fn no_secret(records: &[Record]) {
    for r in records {
        assert!(!r.path.contains("_SETTINGS"), "hidden record returned: {}", r.path);
        assert!(!r.data.json().contains(SECRET), "secret in {}", r.path);
        assert!(!r.data.contains_key("password"), "hash in {}", r.path);
    }
}

#[tokio::test]
async fn count_and_criteria_see_no_hidden_record() {
    for (name, data) in stores().await {
        for path in [TOKEN_SECRET_PATH, "/_SYSTEM/*", "*", "/_SYSTEM/_SECURITY/_SETTINGS/*"] {
            for criteria in [
                json!({}),
                json!({"value": {"$regex": "^a"}}),
                json!({"value": {"$exists": true}}),
                json!({"privateKey": {"$exists": true}}),
                json!({"value": SECRET}),
                json!({"path": {"$regex": "SETTINGS"}}),
            ] {
                let n = count(&data, path, criteria.clone()).await;
                let found = many(&data, path, criteria.clone(), json!({})).await;
                no_secret(&found);
                assert_eq!(n, found.len(), "{name}: count agrees with the visible results of {path} {criteria}");
                if path.contains("_SETTINGS") {
                    assert_eq!(n, 0, "{name}: {path} {criteria}");
                }
            }
        }
        // The exact path reads as nothing at all.
        for path in [TOKEN_SECRET_PATH, KEYPAIR_PATH] {
            match data.get(path, &Query::default(), false).await.unwrap() {
                Found::One(None) => {}
                other => panic!("{name}: {path}: {other:?}"),
            }
        }
        // A prefix oracle gives the same answer for every guess.
        let mut answers = Vec::new();
        for p in ["a", "b", "0", "a1", "z"] {
            answers.push(count(&data, "*", json!({"value": {"$regex": format!("^{p}")}})).await);
        }
        assert_eq!(answers, [1, 0, 0, 1, 0], "{name}: only /app/visible answers");
    }
}

#[tokio::test]
async fn password_hashes_cannot_be_queried_sorted_or_projected() {
    for (name, data) in stores().await {
        let users = "/_SYSTEM/_SECURITY/_USER/*";
        // Criteria naming the hash match no security record, whatever they say of it.
        for criteria in [
            json!({"password": {"$exists": true}}),
            json!({"password": {"$exists": false}}),
            json!({"password": {"$regex": "^pbkdf2"}}),
            json!({"password": null}),
            json!({"$or": [{"username": "alice"}, {"password": {"$regex": "^x"}}]}),
            json!({"$nor": [{"password": {"$regex": "^x"}}]}),
            json!({"username": {"$not": {"$eq": "nobody"}}, "password.x": 1}),
        ] {
            assert_eq!(count(&data, users, criteria.clone()).await, 0, "{name}: {criteria}");
            let everywhere = many(&data, "*", criteria.clone(), json!({})).await;
            assert!(
                everywhere.iter().all(|r| !r.path.starts_with("/_SYSTEM/_SECURITY/")),
                "{name}: {criteria} over * reaches security records: {everywhere:?}"
            );
        }
        // Sorting by the hash selects nothing either (no order to observe).
        let sorted = many(&data, users, json!({}), json!({"sort": {"password": 1}})).await;
        assert!(sorted.is_empty(), "{name}: sort by password: {sorted:?}");
        // Plain reads strip the hash before anything sees the record.
        let all = many(&data, users, json!({}), json!({})).await;
        assert!(all.iter().any(|r| r.path.ends_with("/alice")), "{name}: users are listed");
        no_secret(&all);
        let projected = many(&data, users, json!({}), json!({"fields": {"password": 1}})).await;
        no_secret(&projected);
        // skip/limit walk the same visible list: every window is hash-free.
        let total = all.len();
        for skip in 0..=total {
            let window = many(&data, "*", json!({}), json!({"skip": skip, "limit": 1})).await;
            no_secret(&window);
        }
        match data.get("/_SYSTEM/_SECURITY/_USER/alice", &Query::default(), false).await.unwrap() {
            Found::One(Some(r)) => {
                assert!(!r.data.contains_key("password"), "{name}: exact read strips the hash");
                assert_eq!(r.data.get("username"), Some(&json!("alice")));
            }
            other => panic!("{name}: {other:?}"),
        }
        // Criteria on fields that are not secret still work on users.
        assert_eq!(count(&data, users, json!({"username": "alice"})).await, 1, "{name}");
    }
}
