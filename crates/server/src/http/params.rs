//! Reading request parameters the way the original's connect stack does: query strings decoded
//! like node's `querystring` (`+` is a space), parameters found by case-insensitive aliases in
//! query order, and cookies matched like the `cookies` module (`(?:^|;) *name=([^;]*)`, raw).

use axum::http::{header, HeaderMap};

/// The decoded `name=value` pairs of a query string, in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The value of the first parameter (in query order) whose name is one of `aliases`, compared
/// case-insensitively — the original's `getFirstMatchingProperty`.
pub fn first_matching<'a>(pairs: &'a [(String, String)], aliases: &[&str]) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| aliases.iter().any(|a| a.eq_ignore_ascii_case(k)))
        .map(|(_, v)| v.as_str())
}

/// The value of cookie `name`, as sent (cookie values are not decoded). An empty value counts as
/// absent, as it is falsy in the original.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|part| part.trim_start_matches(' ').strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The `/auth/login` parameters under the original's aliases, as the credentials object a login
/// message would carry (so key-pair digest logins go through the same path).
pub fn login_credentials(pairs: &[(String, String)]) -> serde_json::Value {
    const FIELDS: [(&str, &[&str]); 4] = [
        ("username", &["user", "username", "u"]),
        ("password", &["password", "pwd", "pass", "p"]),
        ("publicKey", &["publicKey", "public_key", "public", "key", "public-key", "pk"]),
        ("digest", &["digest"]),
    ];
    let mut creds = serde_json::Map::new();
    for (field, aliases) in FIELDS {
        if let Some(v) = first_matching(pairs, aliases) {
            creds.insert(field.into(), v.into());
        }
    }
    serde_json::Value::Object(creds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    #[test]
    fn query_is_decoded_like_node() {
        let pairs = query_pairs(Some("a=1+2&b=%2Fx%20y&c"));
        assert_eq!(
            pairs,
            [("a".into(), "1 2".into()), ("b".into(), "/x y".into()), ("c".into(), "".into())]
        );
        assert!(query_pairs(None).is_empty());
    }

    #[test]
    fn login_aliases_first_in_query_order_case_insensitive() {
        let creds = login_credentials(&query_pairs(Some("U=alice&pwd=s3cret&PK=key1&digest=d")));
        assert_eq!(
            creds,
            json!({"username": "alice", "password": "s3cret", "publicKey": "key1", "digest": "d"})
        );
        let creds = login_credentials(&query_pairs(Some("user=first&username=second&pass=p&public-key=k")));
        assert_eq!(creds, json!({"username": "first", "password": "p", "publicKey": "k"}));
        assert_eq!(login_credentials(&query_pairs(Some("other=1"))), json!({}));
    }

    #[test]
    fn cookies_match_like_the_cookies_module() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; my_happn_token=no;  happn_token=tok%3D; z=2"),
        );
        assert_eq!(cookie(&h, "happn_token").as_deref(), Some("tok%3D"), "raw value, exact name");
        assert_eq!(cookie(&h, "z").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "missing"), None);
        let mut e = HeaderMap::new();
        e.append(header::COOKIE, HeaderValue::from_static("happn_token="));
        assert_eq!(cookie(&e, "happn_token"), None, "empty counts as absent");
        let mut two = HeaderMap::new();
        two.append(header::COOKIE, HeaderValue::from_static("x=1"));
        two.append(header::COOKIE, HeaderValue::from_static("custom=abc"));
        assert_eq!(cookie(&two, "custom").as_deref(), Some("abc"));
    }
}
