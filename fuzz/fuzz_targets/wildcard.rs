//! The path wildcard matcher (`crates/engine/src/path.rs`, used by get, remove, subscriptions and
//! permissions) against a brute-force glob over bytes: `*` matches any run (`/` included), every
//! other byte itself, and the whole path must match. Also: `literal_prefix` is a prefix of every
//! match, and `is_wildcard` means "contains `*`".
#![no_main]

use happn_engine::Pattern;
use libfuzzer_sys::fuzz_target;

/// Dynamic programming over (pattern position, path position): `ok[j]` = the pattern read so far
/// matches the first `j` bytes of the path.
fn brute_force(pattern: &[u8], path: &[u8]) -> bool {
    let mut ok = vec![false; path.len() + 1];
    ok[0] = true;
    for &p in pattern {
        let mut next = vec![false; path.len() + 1];
        if p == b'*' {
            // Any run: reachable from any earlier reachable position.
            let mut any = false;
            for j in 0..=path.len() {
                any |= ok[j];
                next[j] = any;
            }
        } else {
            for j in 1..=path.len() {
                next[j] = ok[j - 1] && path[j - 1] == p;
            }
        }
        ok = next;
    }
    ok[path.len()]
}

fuzz_target!(|input: (&str, &str)| {
    let (pattern, path) = input;
    // Paths and patterns are short in practice; the brute force is quadratic.
    if pattern.len() > 200 || path.len() > 2000 {
        return;
    }
    let p = Pattern::new(pattern);
    let matched = p.matches(path);
    assert_eq!(matched, brute_force(pattern.as_bytes(), path.as_bytes()), "{pattern:?} on {path:?}");
    assert_eq!(p.is_wildcard(), pattern.contains('*'));
    assert_eq!(p.as_str(), pattern);
    if matched {
        assert!(path.starts_with(p.literal_prefix()), "{pattern:?} matched {path:?}");
    }
    // A pattern without `*` matches exactly itself.
    assert!(p.is_wildcard() || p.matches(pattern));
    // A wildcard pattern matches itself too (each `*` matching one `*`).
    assert!(p.matches(pattern));
});
