//! A stored document: one record per path, exactly as the original keeps it in nedb
//! (`{_id: path, data, path, created, modified}`, tag records add `_tag`).

use crate::body::Body;

/// Milliseconds since the Unix epoch, the unit of `created` / `modified` / `timestamp`.
pub type Millis = i64;

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The path exactly as the client sent it (no normalisation: `a/b` and `/a/b` differ).
    pub path: String,
    /// The document body. Always an object: scalars are wrapped as `{"value": …}` before storing.
    pub data: Body,
    pub created: Millis,
    pub modified: Millis,
    /// Tag name for snapshot records stored under `/_TAGS…` (the original's `_tag`).
    pub tag: Option<String>,
}

impl Record {
    pub fn new(path: impl Into<String>, data: impl Into<Body>, now: Millis) -> Self {
        Record {
            path: path.into(),
            data: data.into(),
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
