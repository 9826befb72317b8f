//! Several datastores behind one [`Store`], routed by path pattern like the original's
//! `services.data.config.datastores` (semantics.md §10.2):
//! - a path goes to the first route one of whose patterns matches it (anchored `*` patterns, as
//!   everywhere in happn-rs), else to the default store;
//! - each pattern also routes the tag snapshots of its paths (`/_TAGS` + pattern);
//! - `/_SYSTEM/*` always lives in the default store;
//! - a wildcard query or remove is routed by its own pattern text, so `/sensors/live/*` reads
//!   the store that holds `/sensors/live/…`, and `*` reads the default store.

use super::{Store, StoreHealth, WriteBatch};
use crate::body::Body;
use crate::error::StoreError;
use crate::path::Pattern;
use crate::record::{Millis, Record};
use async_trait::async_trait;
use std::sync::Arc;

pub struct Route {
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub store: Arc<dyn Store>,
}

pub struct RoutedStore {
    routes: Vec<Route>,
    default: Arc<dyn Store>,
}

impl RoutedStore {
    /// `routes` in priority order; `default` takes everything no route claims.
    pub fn new(routes: Vec<Route>, default: Arc<dyn Store>) -> RoutedStore {
        let routes = routes
            .into_iter()
            .map(|mut r| {
                let tags: Vec<Pattern> = r
                    .patterns
                    .iter()
                    .map(|p| Pattern::new(&format!("{}{}", crate::data::TAGS_PREFIX, p.as_str())))
                    .collect();
                r.patterns.extend(tags);
                r
            })
            .collect();
        RoutedStore { routes, default }
    }

    fn route(&self, path: &str) -> &Arc<dyn Store> {
        if path.starts_with("/_SYSTEM/") {
            return &self.default;
        }
        self.routes
            .iter()
            .find(|r| r.patterns.iter().any(|p| p.matches(path)))
            .map(|r| &r.store)
            .unwrap_or(&self.default)
    }

    pub fn route_name(&self, path: &str) -> &str {
        if path.starts_with("/_SYSTEM/") {
            return "default";
        }
        self.routes
            .iter()
            .find(|r| r.patterns.iter().any(|p| p.matches(path)))
            .map(|r| r.name.as_str())
            .unwrap_or("default")
    }
}

#[async_trait]
impl Store for RoutedStore {
    async fn get(&self, path: &str) -> Result<Option<Record>, StoreError> {
        self.route(path).get(path).await
    }

    async fn created_at(&self, path: &str) -> Result<Option<Millis>, StoreError> {
        self.route(path).created_at(path).await
    }

    async fn replace(&self, path: &str, body: Body, now: Millis) -> Result<(Millis, Millis), StoreError> {
        self.route(path).replace(path, body, now).await
    }

    async fn find(&self, pattern: &Pattern) -> Result<Vec<Record>, StoreError> {
        self.route(pattern.as_str()).find(pattern).await
    }

    /// Every store's records, merged in path order (`find("*")` reads the default store only).
    /// Each store's part is a consistent state of that store; the parts are read one after the
    /// other, which is what a batch spanning stores promises too (each part atomic in its store).
    async fn snapshot(&self) -> Result<Vec<Record>, StoreError> {
        let mut stores: Vec<&Arc<dyn Store>> = vec![&self.default];
        for r in &self.routes {
            if !stores.iter().any(|s| Arc::ptr_eq(s, &r.store)) {
                stores.push(&r.store);
            }
        }
        let mut all = Vec::new();
        for store in stores {
            all.extend(store.snapshot().await?);
        }
        all.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(all)
    }

    /// A batch spanning several stores is applied store by store (each part atomic in its store).
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut parts: Vec<(Arc<dyn Store>, WriteBatch)> = Vec::new();
        let mut part_for = |path: &str| -> usize {
            let store = self.route(path);
            match parts.iter().position(|(s, _)| Arc::ptr_eq(s, store)) {
                Some(i) => i,
                None => {
                    parts.push((store.clone(), WriteBatch::default()));
                    parts.len() - 1
                }
            }
        };
        let mut puts = Vec::new();
        for record in batch.puts {
            puts.push((part_for(&record.path), record));
        }
        let mut removes = Vec::new();
        for path in batch.removes {
            removes.push((part_for(&path), path));
        }
        for (i, record) in puts {
            parts[i].1.puts.push(record);
        }
        for (i, path) in removes {
            parts[i].1.removes.push(path);
        }
        for (store, part) in parts {
            store.write(part).await?;
        }
        Ok(())
    }

    async fn remove_matching(&self, pattern: &Pattern) -> Result<Vec<String>, StoreError> {
        self.route(pattern.as_str()).remove_matching(pattern).await
    }

    async fn len(&self) -> Result<usize, StoreError> {
        let mut n = self.default.len().await?;
        for r in &self.routes {
            n += r.store.len().await?;
        }
        Ok(n)
    }

    /// Unwritable as soon as one of the stores is (writes routed to it fail), naming it.
    fn health(&self) -> StoreHealth {
        let stores = std::iter::once(("default", &self.default)).chain(self.routes.iter().map(|r| (r.name.as_str(), &r.store)));
        for (name, store) in stores {
            if let StoreHealth::Unwritable { reason } = store.health() {
                return StoreHealth::Unwritable {
                    reason: format!("datastore {name}: {reason}"),
                };
            }
        }
        StoreHealth::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStore;
    use serde_json::Map;

    fn rec(p: &str) -> Record {
        Record::new(p, Map::new(), 1)
    }

    #[tokio::test]
    async fn routes_by_pattern_with_tags_and_system_in_default() {
        let live = Arc::new(MemoryStore::new());
        let main = Arc::new(MemoryStore::new());
        let s = RoutedStore::new(
            vec![Route {
                name: "live".into(),
                patterns: vec![Pattern::new("/sensors/live/*")],
                store: live.clone(),
            }],
            main.clone(),
        );
        s.write(WriteBatch {
            puts: vec![
                rec("/sensors/live/1"),
                rec("/other"),
                rec("/_TAGS/sensors/live/1/abc"),
                rec("/_SYSTEM/x"),
            ],
            removes: vec![],
        })
        .await
        .unwrap();
        assert_eq!(live.len().await.unwrap(), 2);
        assert_eq!(main.len().await.unwrap(), 2);
        assert_eq!(s.route_name("/sensors/live/9"), "live");
        assert_eq!(s.find(&Pattern::new("/sensors/live/*")).await.unwrap().len(), 1);
        assert!(s.get("/other").await.unwrap().is_some());
        // A query is routed by its own text: `*` reads the default store only.
        assert_eq!(s.find(&Pattern::new("*")).await.unwrap().len(), 2);
        // A snapshot has every store's records, in path order.
        let all: Vec<String> = s.snapshot().await.unwrap().into_iter().map(|r| r.path).collect();
        assert_eq!(all, ["/_SYSTEM/x", "/_TAGS/sensors/live/1/abc", "/other", "/sensors/live/1"]);
        assert_eq!(s.remove_matching(&Pattern::new("/sensors/live/*")).await.unwrap().len(), 1);
        assert_eq!(s.len().await.unwrap(), 3);
    }
}
