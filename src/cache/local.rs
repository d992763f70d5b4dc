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
    /// Requests of a large quota reserved in the index by this process and
    /// not used yet (see [`super::quota::block_size`]): a revalidation under
    /// such a quota costs one write transaction, the refresh, not two.
    block: Mutex<Option<Block>>,
}

/// Reserved requests of one quota window.
#[derive(Debug, Clone, Copy)]
struct Block {
    quota: Rate,
    start: Millis,
    /// The window's count once the next reserved request is used.
    next: u64,
    left: u64,
}

impl LocalCoordinator {
    pub(crate) fn new(store: Arc<Store>, clock: Arc<dyn Clock>) -> LocalCoordinator {
        LocalCoordinator {
            store,
            clock,
            tat: Mutex::new(HashMap::new()),
            block: Mutex::new(None),
        }
    }

    /// Takes one reserved request of `quota`'s window at `start`, if any:
    /// the window's count including it.
    fn take_reserved(&self, quota: Rate, start: Millis) -> Option<u64> {
        let mut b = self.block.lock().unwrap_or_else(|p| p.into_inner());
        let blk = b
            .as_mut()
            .filter(|b| b.quota == quota && b.start == start && b.left > 0)?;
        let used = blk.next;
        blk.next += 1;
        blk.left -= 1;
        Some(used)
    }

    /// Reserved requests of the window at `start` not used yet (whatever
    /// quota reserved them: the root keeps one count per window).
    pub(crate) fn unused(&self, start: Millis) -> u64 {
        let b = self.block.lock().unwrap_or_else(|p| p.into_inner());
        b.filter(|b| b.start == start).map_or(0, |b| b.left)
    }

    /// Returns the unused part of the reservation to the root (best effort;
    /// a no-op once its window has ended). Called by the last caller's
    /// handle and on drop.
    pub(crate) fn give_back_reserved(&self) {
        let block = self.block.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(b) = block.filter(|b| b.left > 0) {
            if let Err(e) = super::quota::give_back(&self.store, b.start, b.left) {
                tracing::warn!(error = %e, "reserved quota not returned");
            }
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

impl Drop for LocalCoordinator {
    /// Returns the unused part of a reservation (best effort: a killed
    /// process strands at most [`super::quota::MAX_BLOCK`] requests, never
    /// more than 1/1024 of what was left).
    fn drop(&mut self) {
        self.give_back_reserved();
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
            let now = self.clock.now_ms();
            let start = quota.window(now).0;
            if let Some(used) = self.take_reserved(quota, start) {
                return Ok(Admission::Counted { used, waited });
            }
            // A write transaction: on the blocking pool, so the async
            // workers keep serving while it waits for another process.
            let store = self.store.clone();
            let (used, block) =
                tokio::task::spawn_blocking(move || super::quota::take_block(&store, quota, now))
                    .await
                    .unwrap_or_else(|e| {
                        Err(Error::Upstream {
                            url: host.to_owned(),
                            reason: format!("the quota could not be counted: {e}"),
                        })
                    })?;
            if block > 1 {
                let old = self
                    .block
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(Block {
                        quota,
                        start,
                        next: used + 1,
                        left: block - 1,
                    });
                // Two admissions raced past an empty block (or the config
                // changed the quota): the older reservation goes back rather
                // than being stranded; `give_back` ignores one whose window
                // has ended.
                if let Some(old) = old.filter(|o| o.left > 0) {
                    let store = self.store.clone();
                    // Detached: nothing waits for it.
                    drop(tokio::task::spawn_blocking(move || {
                        super::quota::give_back(&store, old.start, old.left)
                    }));
                }
            }
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

    fn persisted_used(cache: &crate::Cache) -> i64 {
        cache
            .inner
            .store
            .index
            .read(|c| crate::disk::index::counter(c, "fetch_quota|used"))
            .unwrap()
    }

    async fn admit(local: &LocalCoordinator, quota: Rate) -> u64 {
        match local.admit("h", quota, rate("1000000/s")).await.unwrap() {
            Admission::Counted { used, .. } => used,
            other => panic!("expected a counted admission, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_large_quota_is_reserved_in_blocks_and_the_rest_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::Cache::open(dir.path()).unwrap();
        let q = rate("1000000/month");
        let local = LocalCoordinator::new(cache.inner.store.clone(), Arc::new(SystemClock));
        assert_eq!(admit(&local, q).await, 1);
        // One transaction reserved 64; the next 63 write nothing.
        assert_eq!(persisted_used(&cache), 64);
        for n in 2..=64 {
            assert_eq!(admit(&local, q).await, n);
        }
        assert_eq!(persisted_used(&cache), 64);
        assert_eq!(admit(&local, q).await, 65);
        assert_eq!(persisted_used(&cache), 128);
        // The cache's own view counts only what was used.
        assert_eq!(local.unused(q.window(SystemClock.now_ms()).0), 63);
        drop(local);
        assert_eq!(persisted_used(&cache), 65, "the unused 63 given back");
    }

    #[tokio::test]
    async fn a_small_quota_is_counted_one_request_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::Cache::open(dir.path()).unwrap();
        let q = rate("2047/month");
        let local = LocalCoordinator::new(cache.inner.store.clone(), Arc::new(SystemClock));
        for n in 1..=3 {
            assert_eq!(admit(&local, q).await, n);
            assert_eq!(persisted_used(&cache), n as i64);
        }
        assert_eq!(local.unused(q.window(SystemClock.now_ms()).0), 0);
    }

    #[test]
    fn blocks_never_exceed_a_1024th_of_what_is_left() {
        assert_eq!(crate::cache::quota::block_size(0), 1);
        assert_eq!(crate::cache::quota::block_size(2047), 1);
        assert_eq!(crate::cache::quota::block_size(2048), 2);
        assert_eq!(crate::cache::quota::block_size(u64::MAX), 64);
    }
}
