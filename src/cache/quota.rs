//! The request quota of upstream calls, persisted in the index so it holds
//! across processes and restarts (the local backend of the fetcher's limiter).

use super::Cache;
use crate::base::config::Rate;
use crate::base::error::{Error, Result};
use crate::disk::index;

/// Counter holding the index of the current quota window.
const QUOTA_WINDOW: &str = "fetch_quota|window";
/// Counter holding the requests made in the current quota window.
const QUOTA_USED: &str = "fetch_quota|used";

impl Cache {
    /// Counts one request against the persisted quota, or refuses it. Windows
    /// are fixed periods counted from the Unix epoch, by the cache's clock.
    /// The check and the increment happen in one write transaction, so
    /// processes sharing the root cannot overrun the quota together.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when the window is used up; storage errors.
    pub(crate) fn take_quota(&self, quota: Rate) -> Result<u64> {
        let period_ms = (quota.per.as_millis() as i64).max(1);
        let window = self.now().div_euclid(period_ms);
        let idx = &self.inner.store.index;
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
                    period: quota.period_name(),
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
    pub(crate) fn quota_used(&self, quota: Rate) -> Result<u64> {
        let period_ms = (quota.per.as_millis() as i64).max(1);
        let window = self.now().div_euclid(period_ms);
        let (w, used) = self.inner.store.index.read(|c| {
            Ok((
                index::counter(c, QUOTA_WINDOW)?,
                index::counter(c, QUOTA_USED)?,
            ))
        })?;
        Ok(if w == window { used.max(0) as u64 } else { 0 })
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
}
