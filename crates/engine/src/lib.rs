//! happn-engine: the data model of happn without sockets. Paths and wildcards, documents and
//! their set/merge/tag semantics, the query engine, the subscription registry, users, groups,
//! permissions and sessions — all behind the [`storage::Store`] trait.

pub mod body;
pub mod data;
pub mod error;
pub mod nedb;
pub mod path;
pub mod pubsub;
pub mod query;
pub mod record;
pub mod security;
pub mod session;
pub mod storage;
pub mod visibility;

pub use body::Body;
pub use error::{AccessError, DataError, StoreError};
pub use path::Pattern;
pub use record::{now_millis, Millis, Record};
