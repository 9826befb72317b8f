//! What a client may see of the stored records: the one gate every client read passes.
//!
//! Some records hold secrets: the server keypair and the session-token secret (under
//! `/_SYSTEM/_SECURITY/_SETTINGS/`) are never visible at all, and security-directory records
//! keep password hashes that are never shown. Hiding them only in the reply is not enough: a
//! query's criteria, sort order, skip/limit and count all observe records too, and each is an
//! oracle (`{value: {$regex: "^a"}}` with `count: true` recovers a secret one character at a
//! time). So the gate runs *before* anything of a query sees a record:
//!
//! * hidden records are dropped from the scan (they never match, sort or count);
//! * secret fields are removed from every record before criteria, sort and projection see it;
//! * a query whose criteria or sort name a secret field (at any depth) matches no record that
//!   can carry one, so not even the field's absence tells anything.
//!
//! [`crate::data::DataService::get`] (get, count, `on` initial values) applies it, and the server
//! passes every security record it echoes or publishes through [`client_view`].

use crate::query::Query;
use crate::record::Record;
use crate::security::SECURITY_PREFIX;

/// Records under this prefix are never shown to any client, whatever its permissions.
pub const HIDDEN_PREFIX: &str = "/_SYSTEM/_SECURITY/_SETTINGS/";

/// Fields no client may see, query or sort by in security-directory records.
const SECRET_FIELDS: &[&str] = &["password"];

/// Whether no client may ever see the record at `path` (the keypair, the token secret and any
/// other server setting).
pub fn is_hidden(path: &str) -> bool {
    path.starts_with(HIDDEN_PREFIX)
}

/// The secret fields a record at `path` may carry (none outside the security directory).
pub fn secret_fields(path: &str) -> &'static [&'static str] {
    if path.starts_with(SECURITY_PREFIX) {
        SECRET_FIELDS
    } else {
        &[]
    }
}

/// The record as clients may see it: `None` when hidden, else without its secret fields.
pub fn client_view(mut record: Record) -> Option<Record> {
    if is_hidden(&record.path) {
        return None;
    }
    let secrets = secret_fields(&record.path);
    if !secrets.is_empty() && secrets.iter().any(|f| record.data.contains_key(*f)) {
        let mut data = std::mem::take(&mut record.data).into_map();
        for f in secrets {
            data.shift_remove(*f);
        }
        record.data = data.into();
    }
    Some(record)
}

/// [`client_view`] for a query's candidate: also `None` when the query's criteria or sort name
/// a secret field the record could carry.
pub fn query_view(record: Record, query: &Query) -> Option<Record> {
    let secrets = secret_fields(&record.path);
    if !secrets.is_empty() && query.names_any(secrets) {
        return None;
    }
    client_view(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(path: &str, data: serde_json::Value) -> Record {
        Record::new(path, data.as_object().unwrap().clone(), 1)
    }

    #[test]
    fn settings_are_hidden_and_hashes_stripped() {
        assert!(client_view(rec("/_SYSTEM/_SECURITY/_SETTINGS/KEYPAIR", json!({"privateKey": "k"}))).is_none());
        assert!(client_view(rec("/_SYSTEM/_SECURITY/_SETTINGS/SESSION_TOKEN_SECRET", json!({"value": "s"}))).is_none());
        let user = client_view(rec("/_SYSTEM/_SECURITY/_USER/u", json!({"username": "u", "password": "h"}))).unwrap();
        assert_eq!(serde_json::Value::Object(user.data.map().clone()), json!({"username": "u"}));
        let data = client_view(rec("/app/x", json!({"password": "mine"}))).unwrap();
        assert_eq!(data.data.json(), r#"{"password":"mine"}"#, "application data is not security data");
    }

    #[test]
    fn queries_naming_a_secret_see_no_security_record() {
        let q = |c: serde_json::Value, o: serde_json::Value| Query::parse(Some(&c), Some(&o)).unwrap();
        let user = || rec("/_SYSTEM/_SECURITY/_USER/u", json!({"username": "u", "password": "h"}));
        for query in [
            q(json!({"password": {"$exists": false}}), json!({})),
            q(json!({"$or": [{"username": "u"}, {"password.x": 1}]}), json!({})),
            q(json!({"roles": {"$elemMatch": {"password": 1}}}), json!({})),
            q(json!({"username": {"$not": {"$eq": 1}}}), json!({"sort": {"password": 1}})),
        ] {
            assert!(query_view(user(), &query).is_none(), "{query:?}");
        }
        assert!(query_view(user(), &q(json!({"username": "u"}), json!({"sort": {"username": 1}}))).is_some());
        assert!(query_view(rec("/app/x", json!({"password": 1})), &q(json!({"password": 1}), json!({}))).is_some());
    }
}
