//! Measured TTLs (seed 004's "TTL optimisation"). Every revalidation learns
//! whether the content changed; the fetcher keeps, per class and per feed,
//! how often it was unchanged and the intervals between observed changes
//! (persisted counters `measure|<class|feed>|<name>|<what>`, shared by
//! every process on the root), and per URL its own estimate in the entry's
//! stored headers (`x-freshcache-changed-at`, `x-freshcache-interval`).
//!
//! The estimator (ARCHITECTURE.md, "Measured TTLs"):
//! - an observed change interval is the time between two revalidations
//!   that found different content (a 200 whose body hash differs from the
//!   stored one); a 304, or a 200 with the same hash, is "unchanged";
//! - the per-URL estimate `m` is an exponentially weighted mean of the
//!   observed intervals (weight 1/2 for the newest), and never less than
//!   the time the content has now gone unchanged (so a slowing origin
//!   lengthens the TTL before its next change is seen);
//! - the TTL is `m / 2`, clamped to the class's `adaptive: { min, max }`:
//!   for an origin that changes every `m`, a copy is then at most `m/2`
//!   old-and-changed, and a revalidation sees each change;
//! - the suggested TTL of a class (stats) is the same rule over the class
//!   mean interval (sum / count of observed intervals).

use std::time::Duration;

use super::freshness::Headers;
use crate::base::clock::Millis;
use crate::cache::Cache;

/// Stored header: when the content last changed (ms since the epoch).
pub(crate) const CHANGED_AT: &str = "x-freshcache-changed-at";
/// Stored header: the URL's estimated change interval (ms).
pub(crate) const INTERVAL: &str = "x-freshcache-interval";

/// Weight of the newest observation in the estimate.
const ALPHA: f64 = 0.5;

fn ms(h: &Headers, name: &str) -> Option<i64> {
    h.get(name)?.parse().ok().filter(|v: &i64| *v >= 0)
}

/// The feed whose document `key` is (`feeds:<name>`), if it is one.
fn feed_of(key: &str) -> Option<&str> {
    key.strip_prefix("feeds:").filter(|f| !f.contains(':'))
}

fn bump(cache: &Cache, class: &str, key: &str, what: &str, v: i64) {
    cache.count(format!("measure|class|{class}|{what}"), v);
    if let Some(feed) = feed_of(key) {
        cache.count(format!("measure|feed|{feed}|{what}"), v);
    }
}

/// Records one revalidation of `key` at `now` into the counters and into
/// `new` (the headers about to be stored), from `old` (the stored ones).
/// `changed: None` means a first fetch (nothing to compare with).
pub(crate) fn observe(
    cache: &Cache,
    class: &str,
    key: &str,
    old: &Headers,
    new: &mut Headers,
    changed: Option<bool>,
    now: Millis,
) {
    let changed_at = ms(old, CHANGED_AT);
    let estimate = ms(old, INTERVAL);
    match changed {
        None => {
            new.insert(CHANGED_AT.into(), now.to_string());
            new.remove(INTERVAL);
        }
        Some(false) => {
            bump(cache, class, key, "unchanged", 1);
            let since = changed_at.map(|c| (now - c).max(0));
            new.insert(CHANGED_AT.into(), changed_at.unwrap_or(now).to_string());
            if let Some(e) = estimate.max(since).filter(|_| estimate.is_some()) {
                new.insert(INTERVAL.into(), e.to_string());
            }
        }
        Some(true) => {
            bump(cache, class, key, "changed", 1);
            new.insert(CHANGED_AT.into(), now.to_string());
            if let Some(c) = changed_at {
                let observed = (now - c).max(0);
                bump(cache, class, key, "intervals", 1);
                bump(cache, class, key, "interval_ms", observed);
                let e = match estimate {
                    Some(e) => ALPHA * observed as f64 + (1.0 - ALPHA) * e as f64,
                    None => observed as f64,
                };
                new.insert(INTERVAL.into(), (e.round() as i64).to_string());
            }
        }
    }
}

/// The TTL the estimator gives an estimated change interval, clamped.
pub fn ttl_for_interval(interval_ms: i64, min: Duration, max: Duration) -> Duration {
    Duration::from_millis((interval_ms.max(0) / 2) as u64).clamp(min, max)
}

/// The adaptive TTL of a URL from its stored headers, if it has evidence.
pub(crate) fn adaptive_ttl(h: &Headers, min: Duration, max: Duration) -> Option<Duration> {
    ms(h, INTERVAL).map(|m| ttl_for_interval(m, min, max))
}
