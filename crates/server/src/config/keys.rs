//! Every config key the loader accepts, in one list ([`KEYS`]), with the aliases it reads the
//! same way ([`ALIASES`]). The loader asks [`known`] before it looks at a key, at every level,
//! so a key missing here is warned about as unknown whatever code exists for it; the tests
//! below check that each key listed is read without an "unknown" warning (from its sample
//! value) and that docs/CONFIG.md documents exactly these keys and aliases. A new key therefore
//! has to be added here, and then to the reference, before it does anything.
//!
//! Paths are dotted; `[]` stands for any element of an array; `*` for any other key of an
//! object whose keys are accepted with a "not supported" warning (the original's options that
//! have no meaning here).

/// One accepted key (an array's elements are `key[]`, their keys `key[].name`).
pub struct Key {
    pub path: &'static str,
    /// A valid value as JSON, for the tests; `None` for an object whose keys are listed too.
    pub sample: Option<&'static str>,
}

const fn key(path: &'static str, sample: &'static str) -> Key {
    Key {
        path,
        sample: Some(sample),
    }
}

const fn object(path: &'static str) -> Key {
    Key { path, sample: None }
}

pub const KEYS: &[Key] = &[
    key("port", "55001"),
    key("host", "\"127.0.0.1\""),
    key("name", "\"node-a\""),
    key("secure", "true"),
    key("encryptPayloads", "true"),
    key("dataDir", "\"/var/lib/happn-rs\""),
    key("static", "\"/srv/www\""),
    key("maxFrameBytes", "1048576"),
    key("maxQueueBytes", "1048576"),
    key("maxTotalQueueBytes", "1073741824"),
    key("threads", "1"),
    key("metricsAddr", "\"127.0.0.1:9100\""),
    key("deferListen", "true"),
    object("adminUser"),
    key("adminUser.password", "\"change-me\""),
    key("adminUser.custom_data", "{}"),
    key("adminUser.publicKey", "\"AiNc+OG9jt6GjoyVkf+J4+yAL5QPk2oqbGmyZKdTXRfS\""),
    key("sessionTokenSecret", "\"a long random string\""),
    object("users"),
    key("users[].username", "\"sensor1\""),
    key("users[].password", "\"pw\""),
    key("users[].custom_data", "{\"site\": \"north\"}"),
    key("users[].publicKey", "\"AiNc+OG9jt6GjoyVkf+J4+yAL5QPk2oqbGmyZKdTXRfS\""),
    key("users[].groups", "[\"devices\"]"),
    object("groups"),
    key("groups[].name", "\"devices\""),
    key("groups[].custom_data", "{}"),
    key(
        "groups[].permissions",
        "{\"/devices/*\": {\"actions\": [\"get\", \"set\", \"on\"]}}",
    ),
    object("transport"),
    key("transport.mode", "\"https\""),
    key("transport.cert", "\"-----BEGIN CERTIFICATE-----\""),
    key("transport.key", "\"-----BEGIN PRIVATE KEY-----\""),
    key("transport.certPath", "\"/etc/happn/cert.pem\""),
    key("transport.keyPath", "\"/etc/happn/key.pem\""),
    object("middleware"),
    object("middleware.security"),
    key("middleware.security.exclusions", "[\"/public/*\"]"),
    key("middleware.security.cookieName", "\"happn_token\""),
    object("connections"),
    key("connections.max", "10000"),
    key("connections.maxPerIp", "100"),
    key("connections.headerTimeout", "\"5s\""),
    object("limits"),
    key("limits.maxSubscriptions", "1000"),
    key("limits.requestsPerSecond", "500"),
    key("limits.requestBurst", "1000"),
    object("cluster"),
    key("cluster.url", "\"postgres://happn@db/happn\""),
    key("cluster.schema", "\"public\""),
    key("cluster.poolSize", "8"),
    key("cluster.advertise", "\"ws://node-a:55000\""),
    key("cluster.retention", "\"10 minutes\""),
    key("cluster.maxEvents", "2000000"),
    object("utils"),
    key("utils.logLevel", "\"info\""),
    object("services"),
    object("services.security"),
    key("services.security.config.adminGroup", "{\"custom_data\": {}}"),
    key(
        "services.security.config.profiles",
        "[{\"name\": \"short\", \"session\": {\"user.username\": \"sensor1\"}, \"policy\": {\"ttl\": 60000}}]",
    ),
    key("services.security.config.defaultNonceTTL", "60000"),
    object("services.security.config.accountLockout"),
    key("services.security.config.accountLockout.enabled", "true"),
    key("services.security.config.accountLockout.attempts", "4"),
    key("services.security.config.accountLockout.retryInterval", "600000"),
    key("services.security.config.*", "true"),
    object("services.pubsub"),
    object("services.pubsub.config.primusOpts"),
    key("services.pubsub.config.primusOpts.allowSkippedHeartBeats", "2"),
    key("services.pubsub.config.primusOpts.pongSkipTime", "1000"),
    key("services.pubsub.config.primusOpts.timeout", "30000"),
    object("services.data"),
    key("services.data.config.filename", "\"happn.redb\""),
    key("services.data.config.durability", "\"relaxed\""),
    key("services.data.config.acceptEmptyFile", "true"),
    key("services.data.config.compactInterval", "5000"),
    object("services.data.config.datastores"),
    key("services.data.config.datastores[].name", "\"live\""),
    key("services.data.config.datastores[].isDefault", "true"),
    key("services.data.config.datastores[].patterns", "[\"/sensors/live/*\"]"),
    key("services.data.config.datastores[].provider", "\"nedb\""),
    object("services.data.config.datastores[].settings"),
    key("services.data.config.datastores[].settings.filename", "\"live.redb\""),
    key("services.data.config.datastores[].settings.memory", "false"),
    key("services.data.config.datastores[].settings.*", "1000"),
    object("services.connect"),
];

/// `(alias, key)`: a path starting with `alias` is read as the same path starting with `key`.
pub const ALIASES: &[(&str, &str)] = &[
    ("services.auth", "services.security"),
    ("services.security.config.adminUser", "adminUser"),
    ("services.security.config.sessionTokenSecret", "sessionTokenSecret"),
    ("services.connect.config.middleware", "middleware"),
    ("services.data.config.dbfile", "services.data.config.filename"),
    (
        "services.data.config.datastores[].settings.dbfile",
        "services.data.config.datastores[].settings.filename",
    ),
];

/// `path` as [`KEYS`] spells it: array indexes as `[]`, aliases replaced.
pub fn canonical(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            c => out.push(c),
        }
    }
    for (alias, key) in ALIASES {
        if out == *alias || out.strip_prefix(alias).is_some_and(|rest| rest.starts_with('.')) {
            out = format!("{key}{}", &out[alias.len()..]);
        }
    }
    out
}

/// Whether the loader reads `path` (a config path such as `users[2].password`): listed, or
/// under an object whose other keys are accepted (`*`).
pub fn known(path: &str) -> bool {
    let path = canonical(path);
    KEYS.iter().any(|k| k.path == path)
        || path
            .rsplit_once('.')
            .is_some_and(|(parent, _)| KEYS.iter().any(|k| k.path.strip_suffix(".*") == Some(parent)))
}

/// [`known`], warning about `path` when it is not (for readers outside config.rs).
pub fn check(path: &str, warnings: &mut Vec<String>) -> bool {
    let ok = known(path);
    if !ok {
        warnings.push(format!("unknown config key `{path}` ignored"));
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_value;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    /// Put `v` at `path` in `doc`, making the objects and one-element arrays on the way.
    fn insert(doc: &mut Value, path: &str, v: Value) {
        let segments: Vec<&str> = path.split('.').collect();
        let mut at = doc;
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let (name, array) = match seg.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (*seg, false),
            };
            let obj = at.as_object_mut().expect("an object on the way");
            if last && !array {
                obj.insert(name.to_string(), v);
                return;
            }
            at = obj.entry(name).or_insert_with(|| if array { json!([{}]) } else { json!({}) });
            if array {
                at = &mut at[0];
            }
        }
    }

    /// One document with every key at its sample value (`*` as a key of its own).
    fn every_key() -> Value {
        let mut doc = json!({});
        for k in KEYS {
            if let Some(sample) = k.sample {
                let path = k.path.replace('*', "someOriginalOption");
                insert(
                    &mut doc,
                    &path,
                    serde_json::from_str(sample).unwrap_or_else(|e| panic!("{}: {e}", k.path)),
                );
            }
        }
        doc
    }

    #[test]
    fn every_listed_key_is_read() {
        let loaded = from_value(&every_key()).unwrap_or_else(|e| panic!("{e}"));
        let unsupported: Vec<&String> = loaded.warnings.iter().filter(|w| w.contains("is not supported")).collect();
        assert_eq!(
            unsupported.len(),
            loaded.warnings.len(),
            "only 'not supported' warnings: {:?}",
            loaded.warnings
        );
        let expected = ["deferListen", "compactInterval", "provider", "someOriginalOption"];
        for e in expected {
            assert!(
                unsupported.iter().any(|w| w.contains(e)),
                "{e} warned as not supported: {unsupported:?}"
            );
        }
        assert_eq!(unsupported.len(), expected.len() + 1, "{unsupported:?}");
        let c = loaded.config;
        assert_eq!((c.port, c.secure, c.limits.max_subscriptions), (55001, true, 1000));
        assert!(c.cluster.is_some_and(|cl| cl.pool_size == 8));
        assert!(c.data.relaxed && c.data.datastores.len() == 1);
    }

    #[test]
    fn unlisted_keys_are_warned_at_every_level() {
        let mut doc = every_key();
        let mut bogus = vec!["bogusKey".to_string()];
        for k in KEYS.iter().filter(|k| k.sample.is_none()) {
            if KEYS.iter().any(|w| w.path.strip_suffix(".*") == Some(k.path)) {
                continue;
            }
            let inside = match k.path.strip_prefix("services.") {
                Some(name) if !name.contains('.') => format!("{}.config", k.path),
                _ if KEYS.iter().any(|e| e.path.starts_with(&format!("{}[].", k.path))) => format!("{}[]", k.path),
                _ => k.path.to_string(),
            };
            if inside.ends_with(".config") && KEYS.iter().any(|w| w.path == format!("{inside}.*")) {
                continue;
            }
            bogus.push(format!("{inside}.bogusKey"));
        }
        for b in &bogus {
            insert(&mut doc, b, json!({}));
        }
        let warnings = from_value(&doc).unwrap_or_else(|e| panic!("{e}")).warnings;
        for b in &bogus {
            let shown = b.replace("[]", "[0]");
            assert!(
                warnings.iter().any(|w| w == &format!("unknown config key `{shown}` ignored")),
                "{shown} not warned about: {warnings:?}"
            );
        }
        assert!(bogus.len() > 15, "{bogus:?}");
    }

    #[test]
    fn aliases_and_indexes() {
        assert_eq!(canonical("users[12].password"), "users[].password");
        assert_eq!(canonical("services.auth.config.adminUser.password"), "adminUser.password");
        assert_eq!(
            canonical("services.data.config.datastores[3].settings.dbfile"),
            "services.data.config.datastores[].settings.filename"
        );
        assert!(known("services.security.config.anythingElse"));
        assert!(!known("services.security.configX"));
        assert!(!known("portX") && !known("adminUserX"));
        for (alias, key) in ALIASES {
            assert!(
                known(alias) || KEYS.iter().any(|k| k.path.starts_with(&format!("{key}."))),
                "{alias}"
            );
        }
    }

    /// The reference's keys: the first cell of each table row that is a `code` span; the rows
    /// under "## Aliases" are `(alias, key)` pairs.
    fn documented() -> (BTreeSet<String>, BTreeSet<(String, String)>) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CONFIG.md");
        let text = std::fs::read_to_string(path).expect("docs/CONFIG.md");
        let mut keys = BTreeSet::new();
        let mut aliases = BTreeSet::new();
        let mut in_aliases = false;
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                in_aliases = h.trim() == "Aliases";
            }
            let Some(row) = line.strip_prefix('|') else { continue };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let code = |c: &str| c.strip_prefix('`').and_then(|c| c.strip_suffix('`')).map(str::to_string);
            match (in_aliases, code(cells[0])) {
                (false, Some(k)) => {
                    assert!(keys.insert(k.clone()), "{k} documented twice");
                }
                (true, Some(a)) => {
                    let k = cells.get(1).and_then(|c| code(c)).unwrap_or_else(|| panic!("alias {a}: no key"));
                    aliases.insert((a, k));
                }
                _ => {}
            }
        }
        (keys, aliases)
    }

    #[test]
    fn the_reference_documents_exactly_these_keys() {
        let (doc_keys, doc_aliases) = documented();
        let keys: BTreeSet<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
        let undocumented: Vec<&String> = keys.difference(&doc_keys).collect();
        let unknown: Vec<&String> = doc_keys.difference(&keys).collect();
        assert!(undocumented.is_empty(), "keys missing from docs/CONFIG.md: {undocumented:?}");
        assert!(
            unknown.is_empty(),
            "docs/CONFIG.md documents keys the loader does not read: {unknown:?}"
        );
        let aliases: BTreeSet<(String, String)> = ALIASES.iter().map(|(a, k)| (a.to_string(), k.to_string())).collect();
        assert_eq!(doc_aliases, aliases, "the Aliases table of docs/CONFIG.md");
    }
}
