//! Keys and patterns. Keys are hierarchical `:`-separated names that exist
//! only as bound SQL parameters, never as file paths. Patterns are parsed
//! into segments and matched in Rust; SQL sees only their literal prefix as
//! a range (`key >= lo AND key < hi`).

use std::fmt;

use crate::base::error::{Error, Result};

/// Longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;

/// A validated cache key such as `odds:game123:2026-11-21T10:00Z`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Validates `s` as a key.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the rule broken: empty, longer than
    /// 512 bytes, an empty segment, a control character, or `*`/`?`.
    pub fn new(s: impl Into<String>) -> Result<Key> {
        let s = s.into();
        check(&s)?;
        Ok(Key(s))
    }

    /// A key `check` has already accepted (no second validation).
    pub(crate) fn checked(s: &str) -> Key {
        debug_assert!(key_problem(s).is_none(), "{s:?} was not checked");
        Key(s.to_owned())
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `:`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split(':')
    }
}

/// Bytes [`key_problem`] looks at: controls, 0xC2 (the lead byte of
/// U+0080..U+00BF), `*`, `?` and `:`.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[0x7F] = true;
    t[0xC2] = true;
    t[b'*' as usize] = true;
    t[b'?' as usize] = true;
    t[b':' as usize] = true;
    t
};

/// Validates `s` as a key without allocating (the get path's check).
///
/// # Errors
/// As [`Key::new`].
pub(crate) fn check(s: &str) -> Result<()> {
    match key_problem(s) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidKey {
            key: abbreviate(s),
            reason,
        }),
    }
}

/// The first rule `s` breaks, in the order the error reports them. One pass
/// over the bytes (every get validates its key; four passes over chars cost
/// a fifth of a hot get): a control character is a byte below 0x20, 0x7F,
/// or U+0080..U+009F (`C2 80`..`C2 9F` in UTF-8) — exactly `char::is_control`.
fn key_problem(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Some("key is empty");
    }
    if b.len() > MAX_KEY_BYTES {
        return Some("key is longer than 512 bytes");
    }
    let (mut control, mut reserved) = (false, false);
    let mut empty_segment = b[0] == b':' || b[b.len() - 1] == b':';
    for (i, &c) in b.iter().enumerate() {
        // One table load per byte; only the rare special bytes branch on.
        if !SPECIAL[c as usize] {
            continue;
        }
        match c {
            0..=0x1F | 0x7F => control = true,
            0xC2 => control |= matches!(b.get(i + 1), Some(0x80..=0x9F)),
            b'*' | b'?' => reserved = true,
            _ => empty_segment |= b.get(i + 1) == Some(&b':'),
        }
    }
    if control {
        Some("key contains a control character")
    } else if reserved {
        Some("`*` and `?` are reserved for patterns")
    } else if empty_segment {
        Some("key has an empty segment")
    } else {
        None
    }
}

/// Keeps error messages readable when someone passes a 10 KB key.
fn abbreviate(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if clean.len() <= 80 {
        return clean;
    }
    let cut = (0..=77)
        .rev()
        .find(|&i| clean.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}... ({} bytes)", &clean[..cut], s.len())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Key> {
        Key::new(s)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A key pattern: `news:reuters:*` (everything under a prefix),
/// `odds:*:2026-11-21` (one segment wildcard), `news:reut*:*`, `a:b?c`.
///
/// Rules: a segment `*` matches exactly one segment, except as the last
/// segment, where it matches one or more (so `*` alone matches every key). Inside a segment `*` matches any
/// run of characters and `?` one character, never crossing a `:`. A pattern
/// without wildcards matches exactly that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<String>,
    tail: bool,
}

impl Pattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] naming the problem.
    pub fn new(s: impl Into<String>) -> Result<Pattern> {
        let text = s.into();
        let bad = |reason| {
            Err(Error::InvalidPattern {
                pattern: abbreviate(&text),
                reason,
            })
        };
        if text.is_empty() {
            return bad("pattern is empty");
        }
        if text.len() > MAX_KEY_BYTES {
            return bad("pattern is longer than 512 bytes");
        }
        if text.chars().any(char::is_control) {
            return bad("pattern contains a control character");
        }
        let mut segments: Vec<String> = text.split(':').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return bad("pattern has an empty segment");
        }
        if segments.iter().any(|s| s.contains("**")) {
            return bad("`**` is not supported; use `*` as the last segment for a prefix");
        }
        let tail = segments.last().is_some_and(|s| s == "*");
        if tail {
            segments.pop();
        }
        Ok(Pattern {
            text,
            segments,
            tail,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has no wildcard: it names one key.
    pub fn is_exact(&self) -> bool {
        !self.tail && !self.text.contains(['*', '?'])
    }

    /// The literal text every matching key starts with.
    pub fn literal_prefix(&self) -> &str {
        let end = self.text.find(['*', '?']).unwrap_or(self.text.len());
        &self.text[..end]
    }

    /// The half-open key range `[lo, hi)` that holds every match; `hi` is
    /// `None` when the range is unbounded above.
    pub fn range(&self) -> (String, Option<String>) {
        let lo = self.literal_prefix().to_owned();
        (lo.clone(), prefix_upper_bound(&lo))
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        let mut parts = key.split(':');
        for seg in &self.segments {
            match parts.next() {
                Some(p) if glob(seg, p) => {}
                _ => return false,
            }
        }
        let rest = parts.next().is_some();
        rest == self.tail
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Pattern> {
        Pattern::new(s)
    }
}

/// The smallest string greater than every string starting with `prefix`,
/// or `None` if there is none (empty prefix).
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        // Next scalar value after c (skipping the surrogate gap).
        let next = match c as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Glob within one segment: `*` any run, `?` one char.
fn glob(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_design_keys() {
        for k in [
            "llm:features:c42:2026-11-21",
            "news:reuters:abc123",
            "odds:g1:1700000000",
            "x",
        ] {
            assert_eq!(Key::new(k).unwrap().as_str(), k);
        }
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        let reason = |k: &str| match Key::new(k) {
            Err(Error::InvalidKey { reason, .. }) => reason,
            other => panic!("expected InvalidKey for {k:?}, got {other:?}"),
        };
        assert_eq!(reason(""), "key is empty");
        assert_eq!(reason("a\0b"), "key contains a control character");
        assert_eq!(reason("a\nb"), "key contains a control character");
        assert_eq!(reason(&"k".repeat(10_000)), "key is longer than 512 bytes");
        assert_eq!(reason("a::b"), "key has an empty segment");
        assert_eq!(reason(":a"), "key has an empty segment");
        assert_eq!(reason("a:"), "key has an empty segment");
        assert_eq!(reason("a:*"), "`*` and `?` are reserved for patterns");
        assert_eq!(reason("a?"), "`*` and `?` are reserved for patterns");
        assert!(Key::new("k".repeat(512)).is_ok());
    }

    #[test]
    fn long_key_error_is_abbreviated() {
        let msg = Key::new("k".repeat(10_000)).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(msg.contains("10000 bytes"));
    }

    #[test]
    fn prefix_pattern_matches_below_prefix_only() {
        let p = Pattern::new("news:reuters:*").unwrap();
        assert!(p.matches("news:reuters:a1"));
        assert!(p.matches("news:reuters:a1:b"));
        assert!(!p.matches("news:reuters"));
        assert!(!p.matches("news:reutersx:a1"));
        assert!(!p.matches("news:ap:a1"));
        assert_eq!(p.literal_prefix(), "news:reuters:");
    }

    #[test]
    fn segment_wildcard_matches_exactly_one_segment() {
        let p = Pattern::new("odds:*:2026-11-21").unwrap();
        assert!(p.matches("odds:g1:2026-11-21"));
        assert!(!p.matches("odds:g1:x:2026-11-21"));
        assert!(!p.matches("odds:g1:2026-11-22"));
        assert!(!p.matches("news:g1:2026-11-21"));
        assert_eq!(p.range(), ("odds:".to_string(), Some("odds;".to_string())));
    }

    #[test]
    fn in_segment_globs() {
        let p = Pattern::new("news:reut*:a?").unwrap();
        assert!(p.matches("news:reuters:a1"));
        assert!(!p.matches("news:reuters:a12"));
        assert!(!p.matches("news:ap:a1"));
        assert!(Pattern::new("*").unwrap().matches("anything"));
        assert!(
            Pattern::new("*").unwrap().matches("a:b"),
            "a lone `*` matches every key"
        );
        assert!(Pattern::new("a:b").unwrap().is_exact());
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for p in ["", "a::*", ":*", "a:**", "a\u{7}*"] {
            assert!(
                matches!(Pattern::new(p), Err(Error::InvalidPattern { .. })),
                "{p:?}"
            );
        }
    }

    #[test]
    fn upper_bound_is_tight() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound(""), None);
        let ub = prefix_upper_bound("a\u{10FFFF}").unwrap();
        assert_eq!(ub, "b");
    }

    /// The rules as first written (four passes over chars): the byte loop
    /// must agree with it on every string.
    fn key_problem_reference(s: &str) -> Option<&'static str> {
        if s.is_empty() {
            return Some("key is empty");
        }
        if s.len() > MAX_KEY_BYTES {
            return Some("key is longer than 512 bytes");
        }
        if s.chars().any(char::is_control) {
            return Some("key contains a control character");
        }
        if s.contains(['*', '?']) {
            return Some("`*` and `?` are reserved for patterns");
        }
        if s.split(':').any(str::is_empty) {
            return Some("key has an empty segment");
        }
        None
    }

    #[test]
    fn key_rules_agree_with_the_reference_on_every_code_point_edge() {
        for c in [
            '\u{0}',
            '\u{1f}',
            ' ',
            '\u{7f}',
            '\u{80}',
            '\u{9f}',
            '\u{a0}',
            '\u{100}',
            '\u{2028}',
            '\u{7ff}',
            '\u{800}',
            '\u{10ffff}',
            '*',
            '?',
            ':',
        ] {
            for s in [
                format!("a{c}b"),
                format!("{c}"),
                format!("a:{c}"),
                format!("{c}:a"),
                format!("\u{c2}{c}"),
            ] {
                assert_eq!(key_problem(&s), key_problem_reference(&s), "{s:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn display_parse_round_trip(segs in proptest::collection::vec("[a-z0-9_.-]{1,8}", 1..5)) {
            let s = segs.join(":");
            let k = Key::new(s.clone()).unwrap();
            proptest::prop_assert_eq!(k.to_string(), s.clone());
            proptest::prop_assert_eq!(k.to_string().parse::<Key>().unwrap(), k);
        }

        #[test]
        fn key_rules_agree_with_the_reference(s in "(\\PC|[\u{0}-\u{1f}\u{7f}-\u{a0}:*?]){0,12}") {
            proptest::prop_assert_eq!(key_problem(&s), key_problem_reference(&s));
        }

        #[test]
        fn every_match_lies_in_the_range(key in "[a-c]{1,3}(:[a-c]{1,3}){0,3}", pat in "[a-c*?]{1,3}(:[a-c*?]{1,3}){0,3}") {
            if let Ok(p) = Pattern::new(pat) {
                if p.matches(&key) {
                    let (lo, hi) = p.range();
                    proptest::prop_assert!(key.as_str() >= lo.as_str());
                    if let Some(hi) = hi { proptest::prop_assert!(key.as_str() < hi.as_str()); }
                }
            }
        }
    }
}
