//! Global upstream politeness: with Redis configured, the request quota and
//! the per-host rate limit are counted in Redis by one Lua script, so N
//! instances together stay within `fetch.quota` and `fetch.rate_limit`.
//!
//! - Quota: a counter per window, the same windows as the local quota
//!   ([`Rate::window`]: the calendar hour, day or month in `fetch.quota_tz`
//!   for `/hour`, `/day`, `/month`, else fixed periods from the Unix epoch)
//!   by the cache's clock, keyed by the window's start and expiring a
//!   minute after its end; checked and incremented atomically; a refused
//!   request does not count.
//! - Rate: a GCRA without burst on Redis's own clock (`TIME`, one clock for
//!   every instance): each admitted request reserves the next slot, spaced
//!   `per / count` apart, and the caller sleeps until its slot.
//!
//! Both keys share the `{limits}` hash tag, so the script is legal on a
//! cluster.

use std::time::Duration;

use redis::Script;

use super::RedisTier;
use crate::base::config::Rate;
use crate::base::error::{Error, Result};
use crate::cache::plug::Admission;

const ADMIT: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return {-1, used} end
used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local interval = tonumber(ARGV[3])
redis.call('SET', KEYS[2], tat + interval, 'PX', tat + interval - now + 1000)
return {tat - now, used}";

/// The script's inputs for one request.
struct Args {
    quota_key: String,
    rate_key: String,
    limit: u64,
    ttl_ms: i64,
    interval_ms: u64,
}

/// `(wait, used)`: `wait < 0` means refused (quota used up).
async fn admit(core: std::sync::Arc<super::Core>, a: Args) -> redis::RedisResult<(i64, u64)> {
    let mut c = core.conn().await?;
    let (wait, used): (i64, i64) = Script::new(ADMIT)
        .key(a.quota_key)
        .key(a.rate_key)
        .arg(a.limit)
        .arg(a.ttl_ms)
        .arg(a.interval_ms)
        .invoke_async(&mut c)
        .await?;
    Ok((wait, used.max(0) as u64))
}

impl RedisTier {
    /// The global count of `quota`'s window that holds `now` (one GET);
    /// `None` when Redis does not answer.
    pub(crate) fn global_quota_used(&self, quota: Rate, now: i64) -> Option<u64> {
        let (start, _) = quota.window(now);
        let key = self.core.keys.quota(start);
        self.block(
            "quota",
            self.core.settings.timeout,
            move |core| async move {
                let mut c = core.conn().await?;
                let used: Option<i64> = redis::cmd("GET").arg(key).query_async(&mut c).await?;
                Ok(used.unwrap_or(0).max(0) as u64)
            },
        )
    }

    fn args(&self, host: &str, quota: Rate, interval: Duration) -> Args {
        let now = self.core.cache().map_or(0, |c| c.now());
        let (start, end) = quota.window(now);
        Args {
            quota_key: self.core.keys.quota(start),
            rate_key: self.core.keys.rate(host),
            limit: quota.count,
            ttl_ms: end.saturating_sub(now).saturating_add(60_000).max(1),
            interval_ms: (interval.as_millis() as u64).max(1),
        }
    }

    /// The configured (`fetch:`) quota and rate-slot interval.
    fn configured(&self) -> (Rate, Duration) {
        let s = &self.core.settings;
        (s.quota, s.rate_limit.interval())
    }

    fn verdict(got: Option<(i64, u64)>, quota: Rate) -> Result<Option<(Duration, u64)>> {
        match got {
            None => Ok(None),
            Some((wait, used)) if wait < 0 => Err(Error::QuotaExceeded {
                used,
                limit: quota.count,
                period: quota.period_name(),
            }),
            Some((wait, used)) => Ok(Some((Duration::from_millis(wait as u64), used))),
        }
    }

    /// Takes one request from the global quota and waits (blocking this
    /// thread) for `host`'s next global rate slot.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when the instances together used the quota
    /// of this window.
    pub fn acquire_quota(&self, host: &str) -> Result<Admission> {
        let (quota, interval) = self.configured();
        let args = self.args(host, quota, interval);
        let got = self.block("admit", self.core.settings.timeout * 2, |core| {
            admit(core, args)
        });
        Ok(match Self::verdict(got, quota)? {
            None => Admission::Local,
            Some((wait, used)) => {
                std::thread::sleep(wait);
                Admission::Global { used, waited: wait }
            }
        })
    }

    /// [`RedisTier::acquire_quota`] for async callers: awaits the Redis call
    /// and sleeps on the caller's runtime instead of blocking a thread.
    ///
    /// # Errors
    /// As [`RedisTier::acquire_quota`].
    pub async fn acquire_quota_async(&self, host: &str) -> Result<Admission> {
        let (quota, interval) = self.configured();
        self.admit_with(host, quota, interval).await
    }

    /// [`RedisTier::acquire_quota_async`] with the caller's quota and rate
    /// slot interval (the fetcher's own settings).
    pub(crate) async fn admit_with(
        &self,
        host: &str,
        quota: Rate,
        interval: Duration,
    ) -> Result<Admission> {
        let args = self.args(host, quota, interval);
        let timeout = self.core.settings.timeout * 2;
        let got = self.wait("admit", timeout, |core| admit(core, args)).await;
        Ok(match Self::verdict(got, quota)? {
            None => Admission::Local,
            Some((wait, used)) => {
                tokio::time::sleep(wait).await;
                Admission::Global { used, waited: wait }
            }
        })
    }
}
