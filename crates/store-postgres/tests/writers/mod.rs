//! Writers that keep writing through an outage and remember what was acknowledged.
#![allow(dead_code)]

use happn_engine::storage::Store;
use happn_engine::Body;
use happn_store_postgres::PgStore;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Log {
    /// (path, value) of every acknowledged set.
    pub acked: Mutex<Vec<(String, i64)>>,
    /// Every error's text.
    pub errors: Mutex<Vec<String>>,
}

pub struct Writers {
    pub log: Arc<Log>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// `n` tasks, each setting `/w/<task>/<i>` = i for i = 0, 1, … until stopped (or `limit`
    /// elapses), pausing 10 ms after an error.
    pub fn start(store: Arc<PgStore>, n: usize, limit: Duration) -> Writers {
        let log = Arc::new(Log::default());
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + limit;
        let tasks = (0..n)
            .map(|t| {
                let (store, log, stop) = (store.clone(), log.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let path = format!("/w/{t:02}/{i:06}");
                        let body = Body::new(json!({ "i": i }).as_object().cloned().unwrap_or_default());
                        match store.replace(&path, body, 1).await {
                            Ok(_) => log.acked.lock().unwrap().push((path, i)),
                            Err(e) => {
                                log.errors.lock().unwrap().push(e.to_string());
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Writers { log, stop, tasks }
    }

    pub fn acked(&self) -> usize {
        self.log.acked.lock().unwrap().len()
    }

    pub async fn stop(self) -> Arc<Log> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer task");
        }
        self.log
    }
}

/// Wait (bounded) until `cond` holds; false when it never did.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Every acknowledged set is in the store with its value.
pub async fn check_acknowledged(store: &PgStore, log: &Log) {
    let acked = log.acked.lock().unwrap().clone();
    let found = store.find(&happn_engine::Pattern::new("/w/*")).await.expect("read back");
    let stored: std::collections::HashMap<&str, i64> = found
        .iter()
        .map(|r| (r.path.as_str(), r.data["i"].as_i64().unwrap_or(-1)))
        .collect();
    for (path, i) in &acked {
        assert_eq!(stored.get(path.as_str()), Some(i), "acknowledged write {path} lost");
    }
}
