//! Path patterns. happn-rs treats `*` as "any run of characters, `/` included" and every other
//! character as literal, and a pattern must match the whole path. The same rule serves get,
//! remove, subscriptions and permissions (the original built unanchored regexes from the raw
//! text; see COMPATIBILITY.md).

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    /// The literal pieces between `*`s; one piece means no wildcard.
    pieces: Vec<String>,
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            pieces: text.split('*').map(str::to_string).collect(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_wildcard(&self) -> bool {
        self.pieces.len() > 1
    }

    /// Everything before the first `*`: every match starts with it, so an ordered store can
    /// scan just that key range.
    pub fn literal_prefix(&self) -> &str {
        &self.pieces[0]
    }

    pub fn matches(&self, path: &str) -> bool {
        // `*` alone (the _ADMIN group's grant, `on('*')`) matches everything: checked on every
        // request, so it skips the prefix and suffix comparisons.
        if self.text == "*" {
            return true;
        }
        let (first, rest) = self.pieces.split_first().expect("split yields at least one piece");
        let Some(last) = rest.last() else {
            return path == first;
        };
        if path.len() < first.len() + last.len() || !path.starts_with(first.as_str()) || !path.ends_with(last.as_str()) {
            return false;
        }
        // Middle pieces in order, each as early as possible: with only `*` as a wildcard the
        // leftmost match never loses a solution.
        let mut window = &path[first.len()..path.len() - last.len()];
        for piece in &rest[..rest.len() - 1] {
            match window.find(piece.as_str()) {
                Some(at) => window = &window[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The smallest string greater than every string that starts with `prefix` (`None`: no bound,
/// for the empty prefix or one made only of `char::MAX`): the exclusive end of a store's range
/// scan over [`Pattern::literal_prefix`]. UTF-8 byte order (redb's `&str` keys, PostgreSQL's
/// `COLLATE "C"`) is code point order, so bumping the last code point that can be bumped
/// (skipping the surrogate gap, which no string holds) gives it.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).matches(s)
    }

    #[test]
    fn exact_paths_are_literal() {
        assert!(m("/a/b", "/a/b"));
        assert!(!m("/a/b", "/a/b/c"));
        assert!(!m("a/b", "/a/b"), "no normalisation");
        assert!(m("", ""));
    }

    #[test]
    fn wildcards_are_anchored() {
        assert!(m("/r/*", "/r/3"));
        assert!(!m("/r/*", "/x/r/3"), "start-anchored (the original deleted /x/r/3)");
        assert!(!m("/a/*/c", "/a/x/cde"), "end-anchored");
        assert!(m("/a/*/c", "/a/x/c"));
        assert!(m("/a/*", "/a/"), "* matches the empty run");
        assert!(m("*", "anything/at/all"));
        assert!(m("/a/*", "/a/b/c/d"), "* crosses /");
        assert!(m("*/x/*", "/q/x/z"));
        assert!(m("/a*b*c", "/aXbYbZc"));
        assert!(!m("/a*b*c", "/aXc"));
        assert!(m("/a**", "/a"));
    }

    #[test]
    fn metacharacters_are_literal() {
        assert!(!m("/dot.*", "/dotX"));
        assert!(m("/dot.*", "/dot.x"));
        for meta in ["+", "?", "(", "[", "^", "$", "|", "\\"] {
            let p = format!("/m{meta}/*");
            assert!(m(&p, &format!("/m{meta}/1")), "{p}");
            assert!(!m(&p, "/m/1"), "{p}");
        }
    }

    #[test]
    fn prefix() {
        assert_eq!(Pattern::new("/a/*/c").literal_prefix(), "/a/");
        assert_eq!(Pattern::new("/a/b").literal_prefix(), "/a/b");
        assert!(!Pattern::new("/a/b").is_wildcard());
    }

    /// Reference: a straightforward recursive glob matcher.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| reference(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && reference(rest, &s[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(p in "[ab/*.]{0,8}", s in "[ab/.]{0,10}") {
            prop_assert_eq!(Pattern::new(&p).matches(&s), reference(p.as_bytes(), s.as_bytes()));
        }
    }

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("/a/").as_deref(), Some("/a0"));
        assert_eq!(prefix_end("/a\u{D7FF}").as_deref(), Some("/a\u{E000}"));
        assert_eq!(prefix_end("/a\u{10FFFF}").as_deref(), Some("/b"));
        assert_eq!(prefix_end("/\u{7F}").as_deref(), Some("/\u{80}"), "across the one-byte boundary");
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        for s in ["/a/", "/a/\u{10FFFF}x", "/a/zzz", "/a/\u{E000}"] {
            assert!(s.starts_with("/a/") && s.as_bytes() < prefix_end("/a/").unwrap().as_bytes());
        }
        assert!("/a0" >= prefix_end("/a/").unwrap().as_str());
    }
}
