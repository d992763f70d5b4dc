//! TTL classes and the one definition of "fresh".

use std::time::Duration;

use crate::base::clock::Millis;
use crate::base::config::Config;
use crate::base::error::{Error, Result};
use crate::base::key::Key;

/// The class of keys that no configured prefix matches.
pub const DEFAULT_CLASS: &str = "default";

/// The longest TTL anything may give an entry: 100 years (`36525d`). Class
/// TTLs above it are refused by config validation, a put's TTL above it by
/// [`Classes::resolve`] ([`Error::InvalidTtl`], exit 2), and a server's
/// `max-age` / `Expires` is clamped to it. So every computed expiry stays far
/// inside what `i64` milliseconds and RFC 3339 can represent.
pub const MAX_TTL: Duration = Duration::from_secs(36_525 * 86_400);

/// Whether an entry is usable as a fresh signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    /// `now < expires_at`.
    Fresh,
    /// Expired: kept for revalidation and explicit stale-if-error only.
    Stale,
}

impl Freshness {
    /// The single definition of freshness: fresh strictly before `expires_at`.
    pub fn at(expires_at: Millis, now: Millis) -> Freshness {
        if now < expires_at {
            Freshness::Fresh
        } else {
            Freshness::Stale
        }
    }

    /// `Fresh`?
    pub fn is_fresh(self) -> bool {
        self == Freshness::Fresh
    }
}

/// An open period `[from, to)` during which entries of a class are fresh
/// for at most `ttl_ms` from their `created_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    from: Millis,
    to: Millis,
    ttl_ms: i64,
}

/// TTL classes, matched by longest key prefix.
#[derive(Debug, Clone)]
pub struct Classes {
    /// (name, prefix, ttl), longest prefix first.
    by_prefix: Vec<(String, String, Duration)>,
    default_ttl: Duration,
    /// TTL windows by class name (only classes that have some).
    windows: std::collections::HashMap<String, Vec<Window>>,
    /// `ttl: { adaptive: { min, max } }` by class name.
    adaptive: std::collections::HashMap<String, (Duration, Duration)>,
}

impl Classes {
    /// Builds the class table from config.
    pub fn from_config(config: &Config) -> Classes {
        let mut by_prefix: Vec<_> = config
            .classes
            .iter()
            .map(|(name, c)| (name.clone(), c.prefix.clone(), c.ttl.0))
            .collect();
        by_prefix.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        let windows = config
            .classes
            .iter()
            .filter(|(_, c)| !c.windows.is_empty())
            .map(|(name, c)| {
                let ws = c
                    .windows
                    .iter()
                    .map(|w| Window {
                        from: w.from.ms,
                        to: w.to.as_end(),
                        ttl_ms: i64::try_from(w.ttl.0.as_millis()).unwrap_or(i64::MAX),
                    })
                    .collect();
                (name.clone(), ws)
            })
            .collect();
        let adaptive = config
            .classes
            .iter()
            .filter_map(|(n, c)| c.adaptive.map(|a| (n.clone(), (a.min.0, a.max.0))))
            .collect();
        Classes {
            by_prefix,
            default_ttl: config.cache.default_ttl.0,
            windows,
            adaptive,
        }
    }

    /// The adaptive TTL bounds `(min, max)` of `class`, if it opted in.
    pub fn adaptive(&self, class: &str) -> Option<(Duration, Duration)> {
        self.adaptive.get(class).copied()
    }

    /// The one definition of when an entry stops being fresh: its stored
    /// `expires_at` (class TTL, a put's TTL or server freshness, fixed at
    /// write time), shortened while a TTL window of its class is open to
    /// `created_at + window ttl`, whenever the entry was stored. Outside
    /// every window the stored expiry holds again.
    pub fn effective_expiry(
        &self,
        class: &str,
        created_at: Millis,
        expires_at: Millis,
        now: Millis,
    ) -> Millis {
        match self.open_window_ttl(class, now) {
            Some(ttl) => expires_at.min(created_at.saturating_add(ttl)),
            None => expires_at,
        }
    }

    /// The shortest TTL (ms) of the windows of `class` open at `now`.
    pub fn open_window_ttl(&self, class: &str, now: Millis) -> Option<i64> {
        self.windows
            .get(class)?
            .iter()
            .filter(|w| w.from <= now && now < w.to)
            .map(|w| w.ttl_ms)
            .min()
    }

    /// Every class with a window open at `now`, with its shortest window TTL (ms).
    pub fn open_windows(&self, now: Millis) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .windows
            .keys()
            .filter_map(|c| Some((c.clone(), self.open_window_ttl(c, now)?)))
            .collect();
        out.sort();
        out
    }

    /// The class and TTL for `key`: the named class if given (it must
    /// exist), else the longest matching prefix, else `default`. An explicit
    /// `ttl` overrides the class TTL.
    ///
    /// # Errors
    /// [`Error::UnknownClass`] when `class` names no configured class;
    /// [`Error::InvalidTtl`] when `ttl` is longer than [`MAX_TTL`].
    pub fn resolve(
        &self,
        key: &Key,
        class: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<(String, Duration)> {
        if let Some(t) = ttl {
            check_ttl(t)?;
        }
        let (name, class_ttl) = match class {
            Some(DEFAULT_CLASS) => (DEFAULT_CLASS.to_string(), self.default_ttl),
            Some(c) => self
                .by_prefix
                .iter()
                .find(|(n, _, _)| n == c)
                .map(|(n, _, t)| (n.clone(), *t))
                .ok_or_else(|| Error::UnknownClass {
                    class: c.to_string(),
                })?,
            None => self.classify(key.as_str()),
        };
        Ok((name, ttl.unwrap_or(class_ttl)))
    }

    /// The class name chosen by longest prefix (no allocation).
    pub fn class_of(&self, key: &str) -> &str {
        self.by_prefix
            .iter()
            .find(|(_, p, _)| key.starts_with(p.as_str()))
            .map_or(DEFAULT_CLASS, |(n, _, _)| n.as_str())
    }

    /// The class name and TTL chosen by longest prefix.
    pub fn classify(&self, key: &str) -> (String, Duration) {
        self.by_prefix
            .iter()
            .find(|(_, p, _)| key.starts_with(p.as_str()))
            .map_or(
                (DEFAULT_CLASS.to_string(), self.default_ttl),
                |(n, _, t)| (n.clone(), *t),
            )
    }
}

/// Refuses a TTL longer than [`MAX_TTL`].
///
/// # Errors
/// [`Error::InvalidTtl`].
pub fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl > MAX_TTL {
        return Err(Error::InvalidTtl {
            ttl_secs: ttl.as_secs(),
        });
    }
    Ok(())
}

/// `created_at + ttl`, saturating.
pub fn expiry(created_at: Millis, ttl: Duration) -> Millis {
    created_at.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(yaml: &str) -> Classes {
        let c = Config::from_layers(Some(("t".into(), yaml)), Vec::new()).unwrap();
        Classes::from_config(&c)
    }

    #[test]
    fn longest_prefix_wins() {
        let c = classes("classes:\n  llm: { prefix: 'llm:', ttl: 1h }\n");
        let k = Key::new("llm:features:c1:2026-11-21").unwrap();
        assert_eq!(
            c.resolve(&k, None, None).unwrap(),
            ("llm_features".into(), Duration::from_secs(86_400))
        );
        let k = Key::new("llm:other").unwrap();
        assert_eq!(c.resolve(&k, None, None).unwrap().0, "llm");
        let k = Key::new("unknown:thing").unwrap();
        assert_eq!(
            c.resolve(&k, None, None).unwrap(),
            (DEFAULT_CLASS.into(), Duration::from_secs(3600))
        );
    }

    #[test]
    fn named_class_and_explicit_ttl() {
        let c = classes("");
        let k = Key::new("x:y").unwrap();
        assert_eq!(
            c.resolve(&k, Some("odds"), None).unwrap(),
            ("odds".into(), Duration::from_secs(60))
        );
        let r = c
            .resolve(&k, Some("odds"), Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(r.1, Duration::from_secs(5));
        assert!(matches!(
            c.resolve(&k, Some("nope"), None),
            Err(Error::UnknownClass { .. })
        ));
    }

    #[test]
    fn windows_shorten_the_expiry_only_while_open() {
        let c = classes(
            "classes:\n  players: { prefix: 'players:', ttl: 24h, windows: \
             [{ from: 2026-03-11, to: 2026-03-20, ttl: 1h }] }\n",
        );
        let at = |s: &str| crate::base::config::Instant::parse(s).unwrap().ms;
        let created = at("2026-03-10T20:00:00Z");
        let stored = expiry(created, Duration::from_secs(86_400));
        let before = at("2026-03-10T23:00:00Z");
        assert_eq!(
            c.effective_expiry("players", created, stored, before),
            stored
        );
        let open = at("2026-03-11T00:00:00Z");
        assert_eq!(
            c.effective_expiry("players", created, stored, open),
            created + 3_600_000
        );
        // `to` as a date includes the whole day.
        let last = at("2026-03-20T23:59:59Z");
        assert_eq!(c.open_window_ttl("players", last), Some(3_600_000));
        let closed = at("2026-03-21T00:00:00Z");
        assert_eq!(
            c.effective_expiry("players", created, stored, closed),
            stored
        );
        // Other classes are untouched.
        assert_eq!(c.effective_expiry("teams", created, stored, open), stored);
        assert_eq!(c.open_windows(open), vec![("players".into(), 3_600_000)]);
    }

    #[test]
    fn windows_are_validated_with_the_field_named() {
        let bad = |yaml: &str| {
            Config::from_layers(Some(("t".into(), yaml)), Vec::new())
                .unwrap_err()
                .to_string()
        };
        let e = bad("classes:\n  players: { prefix: 'p:', ttl: 1h, windows: [{ from: 2026-03-20, to: 2026-03-11, ttl: 1h }] }\n");
        assert!(e.contains("classes.players.windows[0].to"), "{e}");
        let e = bad("classes:\n  players: { prefix: 'p:', ttl: 1h, windows: [{ from: 'March 1', to: 2026-03-11, ttl: 1h }] }\n");
        assert!(
            e.contains("windows[0].from") && e.contains("RFC 3339"),
            "{e}"
        );
        let e = bad("classes:\n  players: { prefix: 'p:', ttl: 1h, windows: [{ from: 2026-03-01, to: 2026-03-11, ttl: 0s }] }\n");
        assert!(e.contains("classes.players.windows[0].ttl"), "{e}");
    }

    #[test]
    fn ttl_over_100_years_is_refused_not_stored() {
        let c = classes("");
        let k = Key::new("odds:far:1").unwrap();
        let far = Duration::from_secs(3_000_000 * 86_400);
        let e = c.resolve(&k, None, Some(far)).unwrap_err();
        assert!(matches!(e, Error::InvalidTtl { .. }), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("100 years"), "{e}");
        let e = c.resolve(&k, None, Some(Duration::MAX)).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(c.resolve(&k, None, Some(MAX_TTL)).unwrap().1, MAX_TTL);
    }

    #[test]
    fn fresh_strictly_before_expiry() {
        assert_eq!(Freshness::at(1000, 999), Freshness::Fresh);
        assert_eq!(Freshness::at(1000, 1000), Freshness::Stale);
        assert_eq!(Freshness::at(1000, 1001), Freshness::Stale);
        assert_eq!(expiry(1000, Duration::from_secs(60)), 61_000);
        assert_eq!(expiry(i64::MAX - 1, Duration::from_secs(60)), i64::MAX);
    }
}
