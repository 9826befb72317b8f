//! Session profiles and policies (semantics §6.7). A profile pairs a query on the session object
//! (`{"user.username": "u"}`, `{"info.device": {"$exists": true}}`, `{"type": 0}` …) with a policy:
//! a time to live, an inactivity threshold, a usage limit and optionally a permission map that
//! replaces the user's own. At login the first matching profile is chosen for each session type
//! (1 = the socket, 0 = the token); two defaults that impose nothing close the list.

use super::permissions::Permissions;
use crate::query::{DocRef, Query, QueryError};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Socket sessions.
pub const STATEFUL: u8 = 1;
/// Token sessions (token logins, HTTP routes).
pub const STATELESS: u8 = 0;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Milliseconds from the session's login; `None` = forever (the original's 0 or Infinity).
    pub ttl_ms: Option<u64>,
    /// Milliseconds without an authorised request; `None` = off.
    pub inactivity_ms: Option<u64>,
    /// Authorised requests per session; `None` = unlimited.
    pub usage_limit: Option<u64>,
    /// When present, replaces the user's permissions for sessions under this policy.
    pub permissions: Option<Arc<Permissions>>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    session: Query,
    pub policy: Policy,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("profile {index}: {message}")]
    Invalid { index: usize, message: String },
}

/// What a session did so far, for inactivity and usage limits.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    pub last_ms: i64,
    pub uses: u64,
}

impl Activity {
    pub fn new(now_ms: i64) -> Self {
        Activity { last_ms: now_ms, uses: 0 }
    }
}

/// Why a policy refused a request: the `reason` of the original's AccessDenied reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDenial {
    Expired,
    Inactive,
    UsageLimit,
    PermissionsLimited,
}

impl PolicyDenial {
    pub fn reason(self) -> &'static str {
        match self {
            PolicyDenial::Expired => "expired session token",
            PolicyDenial::Inactive => "session inactivity threshold reached",
            PolicyDenial::UsageLimit => "session usage limit reached",
            PolicyDenial::PermissionsLimited => "token permissions limited",
        }
    }
}

impl Policy {
    /// The time-based and count-based checks, in the original's order. Passing them does not
    /// yet count as a use: call [`Policy::record_use`] once the request is fully authorised.
    pub fn check(&self, login_ms: i64, activity: &Activity, now_ms: i64) -> Result<(), PolicyDenial> {
        if let Some(ttl) = self.ttl_ms {
            if now_ms > login_ms.saturating_add(ttl as i64) {
                return Err(PolicyDenial::Expired);
            }
        }
        if let Some(limit) = self.inactivity_ms {
            if now_ms - activity.last_ms > limit as i64 {
                return Err(PolicyDenial::Inactive);
            }
        }
        if let Some(limit) = self.usage_limit {
            if activity.uses >= limit {
                return Err(PolicyDenial::UsageLimit);
            }
        }
        Ok(())
    }

    /// Whether [`Policy::check`] reads the clock: a policy without a time to live or an
    /// inactivity limit does not, and then neither does a request (the clock is a measurable
    /// share of a request's cost).
    pub fn needs_time(&self) -> bool {
        self.ttl_ms.is_some() || self.inactivity_ms.is_some()
    }

    /// The permissions of a policy that has its own: they then decide alone, and the user's
    /// groups are not consulted (`None` when the policy has none). Sockets and tokens alike.
    pub fn own_permissions(&self, path: &str, action: &str) -> Option<Result<(), PolicyDenial>> {
        let permissions = self.permissions.as_ref()?;
        Some(if permissions.allows(path, action) {
            Ok(())
        } else {
            Err(PolicyDenial::PermissionsLimited)
        })
    }

    /// Count a use; `now_ms` is only read back by an inactivity limit (see [`Policy::needs_time`]).
    pub fn record_use(activity: &mut Activity, now_ms: i64) {
        activity.last_ms = now_ms;
        activity.uses += 1;
    }

    fn parse(v: &Value) -> Result<Policy, String> {
        let Value::Object(m) = v else {
            return Err(format!("policy must be an object, got {v}"));
        };
        let mut p = Policy::default();
        for (k, v) in m {
            match k.as_str() {
                "ttl" => p.ttl_ms = duration_ms(v).map_err(|e| format!("policy.ttl: {e}"))?,
                "inactivity_threshold" => p.inactivity_ms = duration_ms(v).map_err(|e| format!("policy.inactivity_threshold: {e}"))?,
                "usage_limit" => {
                    p.usage_limit = match v {
                        Value::Null => None,
                        v => Some(
                            crate::query::non_negative_int(v)
                                .ok_or_else(|| format!("policy.usage_limit must be a whole number, got {v}"))?
                                as u64,
                        ),
                    }
                }
                "permissions" => {
                    let Value::Object(perms) = v else {
                        return Err(format!("policy.permissions must be an object, got {v}"));
                    };
                    super::permissions::validate(perms).map_err(|e| format!("policy.permissions: {e}"))?;
                    let mut set = Permissions::default();
                    set.add_group(perms);
                    p.permissions = Some(Arc::new(set));
                }
                other => return Err(format!("unknown policy field {other:?}")),
            }
        }
        Ok(p)
    }
}

/// A duration as the original accepts it: milliseconds, or an `ms`-style text such as
/// `"4 seconds"`, `"10m"`, `"2 hours"`. 0, `null` and `"Infinity"` mean "no limit".
pub fn duration_ms(v: &Value) -> Result<Option<u64>, String> {
    let ms = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| *f >= 0.0)
            .ok_or_else(|| format!("must not be negative, got {n}"))?,
        Value::String(s) => parse_ms_text(s)?,
        other => return Err(format!("must be milliseconds or a text like \"4 seconds\", got {other}")),
    };
    Ok((ms > 0.0 && ms.is_finite()).then_some(ms.round() as u64))
}

fn parse_ms_text(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("infinity") {
        return Ok(f64::INFINITY);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("cannot read {s:?} as a duration"))?;
    if n < 0.0 {
        return Err(format!("must not be negative, got {s:?}"));
    }
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1e3,
        "m" | "min" | "mins" | "minute" | "minutes" => 60e3,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600e3,
        "d" | "day" | "days" => 86_400e3,
        "w" | "week" | "weeks" => 604_800e3,
        "y" | "yr" | "yrs" | "year" | "years" => 31_557_600e3,
        other => return Err(format!("unknown unit {other:?} in {s:?}")),
    };
    Ok(n * factor)
}

impl Profile {
    fn default_for(session_type: u8) -> Profile {
        let name = if session_type == STATEFUL {
            "default-stateful"
        } else {
            "default-stateless"
        };
        Profile {
            name: name.into(),
            session: Query::parse(Some(&json!({"$and": [{"type": {"$eq": session_type}}]})), None)
                .expect("the default profile query is valid"),
            policy: Policy::default(),
        }
    }

    fn matches(&self, session: &Map<String, Value>) -> bool {
        self.session.matches(&DocRef {
            path: "",
            data: session,
            created: 0,
            modified: 0,
            tag: None,
        })
    }
}

/// The configured profiles in order, then the two defaults.
#[derive(Debug, Clone)]
pub struct Profiles {
    list: Vec<Arc<Profile>>,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            list: vec![Arc::new(Profile::default_for(STATEFUL)), Arc::new(Profile::default_for(STATELESS))],
        }
    }
}

impl Profiles {
    /// `security.config.profiles`: `[{name, session: <query>, policy: {...}}]`.
    pub fn parse(v: &Value) -> Result<Profiles, ProfileError> {
        let Value::Array(items) = v else {
            return Err(ProfileError::Invalid {
                index: 0,
                message: format!("profiles must be a list, got {v}"),
            });
        };
        let mut list = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let bad = |message: String| ProfileError::Invalid { index, message };
            let name = item.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let session = item.get("session").ok_or_else(|| bad("a profile needs a `session` query".into()))?;
            let session = Query::parse(Some(session), None).map_err(|e: QueryError| bad(format!("session: {e}")))?;
            let policy = Policy::parse(item.get("policy").unwrap_or(&json!({}))).map_err(bad)?;
            list.push(Arc::new(Profile { name, session, policy }));
        }
        let mut p = Profiles { list };
        p.list.extend(Profiles::default().list);
        Ok(p)
    }

    /// The first profile whose query matches the session object seen as `session_type`.
    pub fn resolve(&self, session: &Map<String, Value>, session_type: u8) -> Arc<Profile> {
        let mut doc = session.clone();
        doc.insert("type".into(), session_type.into());
        self.list
            .iter()
            .find(|p| p.matches(&doc))
            .cloned()
            .unwrap_or_else(|| Arc::new(Profile::default_for(session_type)))
    }

    /// A profile by name, for tokens that carry the name of the profile they were issued under.
    pub fn named(&self, name: &str, session_type: u8) -> Arc<Profile> {
        self.list
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Profile::default_for(session_type)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(username: &str, info: Value) -> Map<String, Value> {
        json!({"id": "s", "timestamp": 1, "info": info, "user": {"username": username, "groups": {"g": {}}, "custom_data": {"role": "device"}}})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(&json!(1500)).unwrap(), Some(1500));
        assert_eq!(duration_ms(&json!(0)).unwrap(), None);
        assert_eq!(duration_ms(&json!(null)).unwrap(), None);
        assert_eq!(duration_ms(&json!("Infinity")).unwrap(), None);
        assert_eq!(duration_ms(&json!("4 seconds")).unwrap(), Some(4000));
        assert_eq!(duration_ms(&json!("10m")).unwrap(), Some(600_000));
        assert_eq!(duration_ms(&json!("2 hours")).unwrap(), Some(7_200_000));
        assert_eq!(duration_ms(&json!("1.5s")).unwrap(), Some(1500));
        assert!(duration_ms(&json!("soon")).is_err());
        assert!(duration_ms(&json!(-5)).is_err());
        assert!(duration_ms(&json!(true)).is_err());
    }

    #[test]
    fn first_matching_profile_per_type() {
        let p = Profiles::parse(&json!([
            {"name": "devices", "session": {"user.custom_data.role": "device", "type": 1}, "policy": {"ttl": "2 seconds", "usage_limit": 3}},
            {"name": "short-tokens", "session": {"$and": [{"user.groups.g": {"$exists": true}}, {"type": {"$eq": 0}}]},
             "policy": {"ttl": 1000, "permissions": {"/only/*": {"actions": ["get"]}}}},
        ]))
        .unwrap();
        let s = session("u", json!({}));
        let socket = p.resolve(&s, STATEFUL);
        assert_eq!(socket.name, "devices");
        assert_eq!(socket.policy.ttl_ms, Some(2000));
        assert_eq!(socket.policy.usage_limit, Some(3));
        let token = p.resolve(&s, STATELESS);
        assert_eq!(token.name, "short-tokens");
        let perms = token.policy.permissions.as_ref().unwrap();
        assert!(perms.allows("/only/x", "get") && !perms.allows("/only/x", "set"));
        let mut other = session("v", json!({}));
        other.insert("user".into(), json!({"username": "v"}));
        assert_eq!(p.resolve(&other, STATEFUL).name, "default-stateful");
        assert_eq!(p.resolve(&other, STATELESS).name, "default-stateless");
        assert_eq!(p.named("devices", STATEFUL).name, "devices");
        assert_eq!(p.named("gone", STATELESS).name, "default-stateless");
    }

    #[test]
    fn checks_in_order() {
        let policy = Policy {
            ttl_ms: Some(100),
            inactivity_ms: Some(50),
            usage_limit: Some(2),
            permissions: None,
        };
        let mut a = Activity::new(0);
        assert_eq!(policy.check(0, &a, 10), Ok(()));
        Policy::record_use(&mut a, 10);
        assert_eq!(policy.check(0, &a, 70), Err(PolicyDenial::Inactive));
        assert_eq!(policy.check(0, &a, 40), Ok(()));
        Policy::record_use(&mut a, 40);
        assert_eq!(policy.check(0, &a, 45), Err(PolicyDenial::UsageLimit));
        assert_eq!(policy.check(0, &a, 101), Err(PolicyDenial::Expired));
        assert_eq!(Policy::default().check(0, &a, i64::MAX / 2), Ok(()));
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(Profiles::parse(&json!({})).is_err());
        assert!(Profiles::parse(&json!([{"name": "x"}])).is_err());
        assert!(Profiles::parse(&json!([{"name": "x", "session": {"$bogus": 1}}])).is_err());
        assert!(Profiles::parse(&json!([{"name": "x", "session": {}, "policy": {"ttl": "forever-ish"}}])).is_err());
        assert!(Profiles::parse(&json!([{"name": "x", "session": {}, "policy": {"colour": 1}}])).is_err());
    }
}
