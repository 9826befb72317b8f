//! A stored document: one record per path, exactly as the original keeps it in nedb
//! (`{_id: path, data, path, created, modified}`, tag records add `_tag`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch, the unit of `created` / `modified` / `timestamp`.
pub type Millis = i64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The path exactly as the client sent it (no normalisation: `a/b` and `/a/b` differ).
    pub path: String,
    /// The document body. Always an object: scalars are wrapped as `{"value": …}` before storing.
    pub data: Map<String, Value>,
    pub created: Millis,
    pub modified: Millis,
    /// Tag name for snapshot records stored under `/_TAGS…` (the original's `_tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Record {
    pub fn new(path: impl Into<String>, data: Map<String, Value>, now: Millis) -> Self {
        Record {
            path: path.into(),
            data,
            created: now,
            modified: now,
            tag: None,
        }
    }
}

/// Current wall-clock time in epoch milliseconds.
pub fn now_millis() -> Millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
