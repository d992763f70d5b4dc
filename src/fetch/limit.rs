//! Upstream politeness: one limiter, two backends. With a coordinator (the
//! Redis tier), the quota and the per-host rate are global; without one, or
//! while it is unavailable, this process's GCRA and the root's persisted
//! quota ([`Cache::take_quota`]) apply.
//!
//! The rate limit is a small GCRA on `tokio::time::Instant` rather than the
//! `governor` crate: it is thirty lines, needs no extra dependencies, and
//! follows tokio's clock, so tests can pause time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use reqwest::Url;

use crate::base::config::Rate;
use crate::base::error::Result;
use crate::cache::plug::Admission;
use crate::cache::Cache;

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

    /// Reserves the next slot for `host` and says how long to wait for it.
    pub(crate) fn reserve(&self, host: &str, now: Instant) -> Duration {
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(host).copied().unwrap_or(now).max(now);
        map.insert(host.to_owned(), tat + self.interval);
        (tat.checked_sub(self.tolerance).unwrap_or(now)).saturating_duration_since(now)
    }

    /// Waits until a request to `host` is allowed (local backend).
    pub(crate) async fn acquire(&self, host: &str) {
        let wait = self.reserve(host, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Admits one request to `host` for `url`: through the cache's
    /// coordinator when it has one and it answers (global quota and rate),
    /// otherwise through this process's GCRA and the root's quota.
    ///
    /// # Errors
    /// [`crate::Error::QuotaExceeded`]; a storage error of the local quota.
    pub(crate) async fn admit(
        &self,
        cache: &Cache,
        url: &Url,
        host: &str,
        quota: Rate,
    ) -> Result<()> {
        if let Some(c) = cache.coordinator() {
            if let Admission::Global { .. } = c.admit(host, quota, self.interval).await? {
                return Ok(());
            }
        }
        self.acquire(host).await;
        let cache = cache.clone();
        super::off_runtime(url, move || cache.take_quota(quota))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
