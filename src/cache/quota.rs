//! The request quota of upstream calls, persisted in the index so it holds
//! across processes and restarts (the local backend of the fetcher's limiter).

use super::Cache;
use crate::base::clock::Millis;
use crate::base::config::Rate;
use crate::base::error::{Error, Result};
use crate::disk::index;
use crate::disk::stats::QuotaStats;
use crate::disk::store::Store;

/// Counter holding the window of the quota, as written before calendar
/// quotas: the index of a fixed period counted from the epoch. Read once to
/// carry the count over (see [`current_used`]), then kept at `-1`.
const QUOTA_WINDOW: &str = "fetch_quota|window";
/// Counter holding the requests made in the current quota window.
const QUOTA_USED: &str = "fetch_quota|used";
/// Counter holding the start (ms since the epoch) of the current window.
const QUOTA_START: &str = "fetch_quota|start";

/// The requests already used in the window `[start, end)` of `quota`, from
/// the stored counters. The stored window is identified by its start; a
/// root written before calendar quotas holds only the epoch-period index
/// (`fetch_quota|window`): its count is kept when that period overlaps the
/// current window (the migration keeps what was used this month).
fn current_used(
    c: &rusqlite::Connection,
    quota: Rate,
    start: i64,
    end: i64,
) -> rusqlite::Result<u64> {
    let used = index::counter(c, QUOTA_USED)?.max(0) as u64;
    let stored_start = index::counter(c, QUOTA_START)?;
    if stored_start != 0 {
        return Ok(if stored_start == start { used } else { 0 });
    }
    let legacy = index::counter(c, QUOTA_WINDOW)?;
    if legacy <= 0 || used == 0 {
        return Ok(0);
    }
    let len = (quota.per.as_millis() as i64).max(1);
    let (ls, le) = (
        legacy.saturating_mul(len),
        legacy.saturating_add(1).saturating_mul(len),
    );
    Ok(if ls < end && start < le { used } else { 0 })
}

/// [`Cache::take_quota`] on a store at `now`: one request (with 2,048 or
/// more left it reserves a block and drops the rest; tests use small quotas).
#[cfg(test)]
pub(crate) fn take(store: &Store, quota: Rate, now: Millis) -> Result<u64> {
    take_block(store, quota, now).map(|(used, _)| used)
}

/// Requests reserved per write transaction when the quota is large: at most
/// this many, and at most 1/1024 of what is left, so a process that dies
/// holding a reservation strands a negligible part of the quota. A quota
/// with under 2,048 left is counted one request at a time, exactly.
pub(crate) const MAX_BLOCK: u64 = 64;

/// How many requests one transaction reserves when `left` remain.
pub(crate) fn block_size(left: u64) -> u64 {
    (left / 1024).clamp(1, MAX_BLOCK)
}

/// Takes one request from the persisted quota at `now`, reserving more in
/// the same transaction when the quota is large ([`block_size`]). Returns
/// the count used including this request, and how many were reserved in
/// all (this one included): the caller hands out the rest without a write.
pub(crate) fn take_block(store: &Store, quota: Rate, now: Millis) -> Result<(u64, u64)> {
    let (start, end) = quota.window(now);
    let idx = &store.index;
    idx.write(|tx| {
        let used = current_used(tx, quota, start, end).map_err(|e| idx.wrap(e))?;
        if used >= quota.count {
            return Err(Error::QuotaExceeded {
                used,
                limit: quota.count,
                period: quota.period_name(),
            });
        }
        let block = block_size(quota.count - used);
        index::set_counter(tx, QUOTA_START, start).map_err(|e| idx.wrap(e))?;
        index::set_counter(tx, QUOTA_WINDOW, -1).map_err(|e| idx.wrap(e))?;
        index::set_counter(tx, QUOTA_USED, (used + block) as i64).map_err(|e| idx.wrap(e))?;
        Ok((used + 1, block))
    })
}

/// Returns `n` reserved, unused requests of the window starting at `start`
/// (a no-op once the window has moved on).
pub(crate) fn give_back(store: &Store, start: Millis, n: u64) -> Result<()> {
    let idx = &store.index;
    idx.write(|tx| {
        if index::counter(tx, QUOTA_START).map_err(|e| idx.wrap(e))? == start {
            let used = index::counter(tx, QUOTA_USED).map_err(|e| idx.wrap(e))?;
            index::set_counter(tx, QUOTA_USED, used.saturating_sub(n as i64).max(0))
                .map_err(|e| idx.wrap(e))?;
        }
        Ok(())
    })
}

impl Cache {
    /// Counts one request against the persisted quota, or refuses it. The
    /// window is the quota's calendar period (or a fixed period from the
    /// epoch, see [`Rate::window`]) by the cache's clock. The check and the
    /// increment happen in one write transaction, so processes sharing the
    /// root cannot overrun the quota together.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when the window is used up; storage errors.
    #[cfg(test)]
    pub(crate) fn take_quota(&self, quota: Rate) -> Result<u64> {
        take(&self.inner.store, quota, self.now())
    }

    /// Requests made in the current quota window.
    ///
    /// # Errors
    /// A storage error.
    pub(crate) fn quota_used(&self, quota: Rate) -> Result<u64> {
        Ok(self.quota_status(quota)?.used)
    }

    /// Used, left and the reset instant of `quota` now. With a coordinator
    /// (the Redis tier), `used` is what the instances together used, as the
    /// shared counter says, plus what this root admitted on its own while
    /// the counter could not be reached; without one, this root's count.
    ///
    /// # Errors
    /// A storage error.
    pub fn quota_status(&self, quota: Rate) -> Result<QuotaStats> {
        let now = self.now();
        let (start, end) = quota.window(now);
        let local = self
            .inner
            .store
            .index
            .read(|c| current_used(c, quota, start, end))?
            // What this process reserved and has not used yet is not used
            // (other live processes' reservations do count: up to 64 each).
            .saturating_sub(self.inner.local.unused(start));
        let global = self.coordinator().and_then(|c| c.quota_used(quota, now));
        let used = local.saturating_add(global.unwrap_or(0));
        Ok(QuotaStats {
            used,
            limit: quota.count,
            period: quota.period_name(),
            left: quota.count.saturating_sub(used),
            window_start: start,
            resets_at: end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;
    use std::time::Duration;

    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
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
            assert_eq!(cache.take_quota(q).unwrap(), 1);
            assert_eq!(cache.take_quota(q).unwrap(), 2);
        }
        let cache = open(); // a restart keeps the count
        assert_eq!(cache.quota_used(q).unwrap(), 2);
        assert_eq!(cache.take_quota(q).unwrap(), 3);
        match cache.take_quota(q) {
            Err(Error::QuotaExceeded {
                used: 3,
                limit: 3,
                period,
            }) => assert_eq!(period, "day"),
            other => panic!("expected QuotaExceeded, got {other:?}"),
        }
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(cache.take_quota(q).unwrap(), 1);
    }

    fn at(s: &str) -> i64 {
        crate::base::config::Instant::parse(s).unwrap().ms
    }

    #[test]
    fn a_monthly_quota_resets_at_midnight_on_the_first_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(at("2026-01-31T12:00:00Z"));
        let cache = Cache::builder()
            .root(dir.path())
            .clock(clock.clone())
            .open()
            .unwrap();
        let q = rate("2/month");
        assert_eq!(cache.take_quota(q).unwrap(), 1);
        assert_eq!(cache.take_quota(q).unwrap(), 2);
        clock.set(at("2026-01-31T23:59:59.999Z"));
        assert!(matches!(
            cache.take_quota(q),
            Err(Error::QuotaExceeded { used: 2, .. })
        ));
        let s = cache.quota_status(q).unwrap();
        assert_eq!((s.used, s.left), (2, 0));
        assert_eq!(s.resets_at, at("2026-02-01T00:00:00Z"));
        clock.set(at("2026-02-01T00:00:00Z"));
        assert_eq!(cache.quota_status(q).unwrap().used, 0);
        assert_eq!(cache.take_quota(q).unwrap(), 1);
        // 30 days later is still February's window... until March 1st.
        clock.set(at("2026-02-28T23:59:00Z"));
        assert_eq!(cache.take_quota(q).unwrap(), 2);
        assert!(cache.take_quota(q).is_err());
        clock.set(at("2026-03-01T00:00:00Z"));
        assert_eq!(cache.take_quota(q).unwrap(), 1);
    }

    #[test]
    fn a_fixed_offset_moves_the_reset() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(at("2026-03-01T03:00:00Z"));
        let cache = Cache::builder()
            .root(dir.path())
            .clock(clock.clone())
            .open()
            .unwrap();
        let mut q = rate("1/month");
        q.tz = crate::base::config::TzOffset::parse("-05:00").unwrap();
        assert_eq!(cache.take_quota(q).unwrap(), 1);
        // Still February in UTC-5 at 04:59 UTC.
        clock.set(at("2026-03-01T04:59:59Z"));
        assert!(cache.take_quota(q).is_err());
        clock.set(at("2026-03-01T05:00:00Z"));
        assert_eq!(cache.take_quota(q).unwrap(), 1);
    }

    #[test]
    fn the_count_of_a_pre_calendar_root_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-02-14T10:00:00Z");
        let clock = ManualClock::new(now);
        let cache = Cache::builder()
            .root(dir.path())
            .clock(clock.clone())
            .open()
            .unwrap();
        let q = rate("10000/month");
        // As the old code wrote them: the 30-day epoch window and its count.
        let legacy = now.div_euclid(30 * 86_400_000);
        let idx = &cache.inner.store.index;
        idx.write(|tx| {
            index::set_counter(tx, QUOTA_WINDOW, legacy).map_err(|e| idx.wrap(e))?;
            index::set_counter(tx, QUOTA_USED, 1234).map_err(|e| idx.wrap(e))
        })
        .unwrap();
        assert_eq!(cache.quota_status(q).unwrap().used, 1234);
        assert_eq!(cache.take_quota(q).unwrap(), 1235);
        clock.set(at("2026-03-01T00:00:00Z"));
        assert_eq!(cache.take_quota(q).unwrap(), 1);
    }
}
