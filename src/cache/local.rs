//! The local backend of upstream coordination, the [`Coordinator`] every
//! cache has: this process's per-host rate limit (a GCRA) and the root's
//! persisted request quota. A shared coordinator (the Redis tier) is asked
//! first when one is plugged in; this one admits what it cannot (no shared
//! tier, or it is unreachable). Leases: none across instances, so a claim
//! is always [`Claim::Alone`] (callers of one process already share one
//! call through the cache's single-flight map).
//!
//! The rate limit is a small GCRA on `tokio::time::Instant` rather than the
//! `governor` crate: it is thirty lines, needs no extra dependency, and
//! follows tokio's clock, so tests can pause time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::plug::{Admission, BoxFuture, Claim, Coordinator};
use crate::base::clock::{Clock, Millis};
use crate::base::config::Rate;
use crate::base::error::{Error, Result};
use crate::disk::store::Store;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct LocalCoordinator {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// Theoretical arrival time of the next request, per host.
    tat: Mutex<HashMap<String, Instant>>,
}

impl LocalCoordinator {
    pub(crate) fn new(store: Arc<Store>, clock: Arc<dyn Clock>) -> LocalCoordinator {
        LocalCoordinator {
            store,
            clock,
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves the next slot for `host` at `rate` (bursts of up to
    /// `rate.count`) and says how long to wait for it.
    pub(crate) fn reserve(&self, host: &str, rate: Rate, now: Instant) -> Duration {
        let count = u32::try_from(rate.count.max(1)).unwrap_or(u32::MAX);
        let interval = rate.per / count;
        let tolerance = interval * (count - 1);
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(host).copied().unwrap_or(now).max(now);
        map.insert(host.to_owned(), tat + interval);
        (tat.checked_sub(tolerance).unwrap_or(now)).saturating_duration_since(now)
    }
}

impl Coordinator for LocalCoordinator {
    fn claim<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Claim> {
        Box::pin(async { Claim::Alone })
    }

    fn admit<'a>(
        &'a self,
        host: &'a str,
        quota: Rate,
        rate: Rate,
    ) -> BoxFuture<'a, Result<Admission>> {
        Box::pin(async move {
            let waited = self.reserve(host, rate, Instant::now());
            if !waited.is_zero() {
                tokio::time::sleep(waited).await;
            }
            // A write transaction: on the blocking pool, so the async
            // workers keep serving while it waits for another process.
            let (store, now) = (self.store.clone(), self.clock.now_ms());
            let used = tokio::task::spawn_blocking(move || super::quota::take(&store, quota, now))
                .await
                .unwrap_or_else(|e| {
                    Err(Error::Upstream {
                        url: host.to_owned(),
                        reason: format!("the quota could not be counted: {e}"),
                    })
                })?;
            Ok(Admission::Counted { used, waited })
        })
    }

    fn quota_used(&self, _quota: Rate, _now: Millis) -> Option<u64> {
        None // the root's own count is read by `Cache::quota_status`
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::SystemClock;

    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn allows_a_burst_of_count_then_spaces_requests() {
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::Cache::open(dir.path()).unwrap();
        let local = LocalCoordinator::new(cache.inner.store.clone(), Arc::new(SystemClock));
        let r = rate("2/s");
        let t0 = Instant::now();
        assert_eq!(local.reserve("a", r, t0), Duration::ZERO);
        assert_eq!(local.reserve("a", r, t0), Duration::ZERO);
        assert_eq!(local.reserve("a", r, t0), Duration::from_millis(500));
        assert_eq!(local.reserve("a", r, t0), Duration::from_millis(1000));
        // Another host has its own budget.
        assert_eq!(local.reserve("b", r, t0), Duration::ZERO);
        // After a quiet second the burst is available again.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(local.reserve("a", r, t1), Duration::ZERO);
    }
}
