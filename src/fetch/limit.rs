//! Upstream politeness: a per-host rate limit (in this process) and a
//! request quota per period (persisted in the index, so it holds across
//! processes and restarts).
//!
//! The rate limit is a small GCRA on `tokio::time::Instant` rather than the
//! `governor` crate: it is thirty lines, needs no extra dependencies, and
//! follows tokio's clock, so tests can pause time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::base::config::Rate;
use crate::base::error::{Error, Result};
use crate::cache::Cache;
use crate::disk::index;

/// Counter holding the index of the current quota window.
const QUOTA_WINDOW: &str = "fetch_quota|window";
/// Counter holding the requests made in the current quota window.
const QUOTA_USED: &str = "fetch_quota|used";

/// Per-host GCRA: `count` requests per `per`, bursts of up to `count`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    /// Theoretical arrival time of the next request, per host.
    tat: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(rate: Rate) -> RateLimiter {
        let count = u32::try_from(rate.count.max(1)).unwrap_or(u32::MAX);
        let interval = rate.per / count;
        RateLimiter {
            interval,
            tolerance: interval * (count - 1),
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// The spacing of requests to one host (the global limiter's slot).
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Reserves the next slot for `host` and says how long to wait for it.
    pub(crate) fn reserve(&self, host: &str, now: Instant) -> Duration {
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(host).copied().unwrap_or(now).max(now);
        map.insert(host.to_owned(), tat + self.interval);
        (tat.checked_sub(self.tolerance).unwrap_or(now)).saturating_duration_since(now)
    }

    /// Waits until a request to `host` is allowed.
    pub(crate) async fn acquire(&self, host: &str) {
        let wait = self.reserve(host, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A human name for a quota period (`month` for 30 days).
pub(crate) fn period_name(per: Duration) -> String {
    match per.as_secs() {
        1 => "second".into(),
        60 => "minute".into(),
        3600 => "hour".into(),
        86_400 => "day".into(),
        2_592_000 => "month".into(),
        _ => humantime::format_duration(per).to_string(),
    }
}

/// Counts one request against the persisted quota, or refuses it. Windows
/// are fixed periods counted from the Unix epoch, by the cache's clock.
/// The check and the increment happen in one write transaction, so
/// processes sharing the root cannot overrun the quota together.
///
/// # Errors
/// [`Error::QuotaExceeded`] when the window is used up; storage errors.
pub(crate) fn take_quota(cache: &Cache, quota: Rate) -> Result<u64> {
    let period_ms = (quota.per.as_millis() as i64).max(1);
    let window = cache.now().div_euclid(period_ms);
    let idx = &cache.inner.store.index;
    idx.write(|tx| {
        let stored_window = index::counter(tx, QUOTA_WINDOW).map_err(|e| idx.wrap(e))?;
        let mut used = index::counter(tx, QUOTA_USED).map_err(|e| idx.wrap(e))?;
        if stored_window != window {
            index::set_counter(tx, QUOTA_WINDOW, window).map_err(|e| idx.wrap(e))?;
            used = 0;
        }
        let used = used.max(0) as u64;
        if used >= quota.count {
            return Err(Error::QuotaExceeded {
                used,
                limit: quota.count,
                period: period_name(quota.per),
            });
        }
        index::set_counter(tx, QUOTA_USED, used as i64 + 1).map_err(|e| idx.wrap(e))?;
        Ok(used + 1)
    })
}

/// Requests made in the current quota window.
///
/// # Errors
/// A storage error.
pub(crate) fn quota_used(cache: &Cache, quota: Rate) -> Result<u64> {
    let period_ms = (quota.per.as_millis() as i64).max(1);
    let window = cache.now().div_euclid(period_ms);
    let (w, used) = cache.inner.store.index.read(|c| {
        Ok((
            index::counter(c, QUOTA_WINDOW)?,
            index::counter(c, QUOTA_USED)?,
        ))
    })?;
    Ok(if w == window { used.max(0) as u64 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;

    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn allows_a_burst_of_count_then_spaces_requests() {
        let rl = RateLimiter::new(rate("2/s"));
        let t0 = Instant::now();
        assert_eq!(rl.reserve("a", t0), Duration::ZERO);
        assert_eq!(rl.reserve("a", t0), Duration::ZERO);
        assert_eq!(rl.reserve("a", t0), Duration::from_millis(500));
        assert_eq!(rl.reserve("a", t0), Duration::from_millis(1000));
        // Another host has its own budget.
        assert_eq!(rl.reserve("b", t0), Duration::ZERO);
        // After a quiet second the burst is available again.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(rl.reserve("a", t1), Duration::ZERO);
    }

    #[test]
    fn quota_is_persisted_and_resets_with_the_period() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000_000_000);
        let open = || {
            Cache::builder()
                .root(dir.path())
                .clock(clock.clone())
                .open()
                .unwrap()
        };
        let q = rate("3/day");
        {
            let cache = open();
            assert_eq!(take_quota(&cache, q).unwrap(), 1);
            assert_eq!(take_quota(&cache, q).unwrap(), 2);
        }
        let cache = open(); // a restart keeps the count
        assert_eq!(quota_used(&cache, q).unwrap(), 2);
        assert_eq!(take_quota(&cache, q).unwrap(), 3);
        match take_quota(&cache, q) {
            Err(Error::QuotaExceeded {
                used: 3,
                limit: 3,
                period,
            }) => assert_eq!(period, "day"),
            other => panic!("expected QuotaExceeded, got {other:?}"),
        }
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(take_quota(&cache, q).unwrap(), 1);
    }
}
