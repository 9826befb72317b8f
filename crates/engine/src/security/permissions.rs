//! Path permissions: `{"<pattern>": {"actions": ["get","set","remove","on","*"]}}` per group.
//! Patterns are anchored (`*` = any run), and the actions of every matching entry across all
//! of a session's groups are combined, so a narrower grant is never lost to a broader one.

use crate::path::Pattern;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default)]
pub struct Permissions {
    entries: Vec<(Pattern, Vec<String>)>,
}

impl Permissions {
    pub fn allow_all() -> Self {
        Permissions {
            entries: vec![(Pattern::new("*"), vec!["*".into()])],
        }
    }

    /// Add a group's `permissions` object. Keys may carry the original's `\u002e` escape for dots.
    pub fn add_group(&mut self, permissions: &Map<String, Value>) {
        for (key, spec) in permissions {
            let path = key.replace("\\u002e", ".");
            let actions: Vec<String> = spec
                .get("actions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            self.entries.push((Pattern::new(&path), actions));
        }
    }

    pub fn allows(&self, path: &str, action: &str) -> bool {
        self.entries
            .iter()
            .any(|(p, actions)| actions.iter().any(|a| a == "*" || a == action) && p.matches(path))
    }
}

/// Why a permission map is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("a permission path must not be empty")]
    EmptyPath,
    #[error("permission {0:?} needs an `actions` list")]
    NoActions(String),
    #[error("permission {0:?}: `actions` must be a list, got {1}")]
    ActionsNotAList(String, Value),
    #[error("permission {0:?}: every action must be a non-empty string, got {1}")]
    BadAction(String, Value),
}

/// A permission map must be `{"<path>": {"actions": ["<action>", ...]}}`; anything else is
/// refused when a group or policy is written, so a typo never silently grants nothing.
pub fn validate(permissions: &Map<String, Value>) -> Result<(), PermissionError> {
    for (path, spec) in permissions {
        if path.is_empty() {
            return Err(PermissionError::EmptyPath);
        }
        let Some(actions) = spec.get("actions") else {
            return Err(PermissionError::NoActions(path.clone()));
        };
        let Value::Array(list) = actions else {
            return Err(PermissionError::ActionsNotAList(path.clone(), actions.clone()));
        };
        if let Some(bad) = list.iter().find(|a| a.as_str().is_none_or(str::is_empty)) {
            return Err(PermissionError::BadAction(path.clone(), bad.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anchored_and_combined() {
        let mut p = Permissions::default();
        p.add_group(
            json!({"/allowed/*": {"actions": ["get", "on"]}, "/allowed/writable/*": {"actions": ["set"]}})
                .as_object()
                .unwrap(),
        );
        assert!(p.allows("/allowed/x", "get"));
        assert!(p.allows("/allowed/writable/x", "set"), "narrower grant kept");
        assert!(p.allows("/allowed/writable/x", "get"));
        assert!(!p.allows("/allowed/x", "set"));
        assert!(!p.allows("/x/allowed/y", "get"), "anchored");
        assert!(!p.allows("*", "on"));
        let mut q = Permissions::default();
        q.add_group(json!({"/a\\u002eb/*": {"actions": ["*"]}}).as_object().unwrap());
        assert!(q.allows("/a.b/c", "remove"));
        assert!(Permissions::allow_all().allows("*", "on"));
    }

    #[test]
    fn validation() {
        assert!(validate(json!({"/a/*": {"actions": ["get", "post"]}}).as_object().unwrap()).is_ok());
        assert!(validate(json!({"/a/*": {"actions": "get"}}).as_object().unwrap()).is_err());
        assert!(validate(json!({"/a/*": {}}).as_object().unwrap()).is_err());
        assert!(validate(json!({"/a/*": {"actions": [1]}}).as_object().unwrap()).is_err());
        assert!(validate(json!({"": {"actions": ["get"]}}).as_object().unwrap()).is_err());
    }
}
