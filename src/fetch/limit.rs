//! Upstream politeness for the fetcher: the quota and the per-host rate of
//! its settings, admitted by the cache's coordinators (one limiter, two
//! backends: the shared coordinator when one is plugged in and answers,
//! else the local one — this process's GCRA and the root's persisted
//! quota; see `cache::local`).

use reqwest::Url;

use crate::base::config::Rate;
use crate::base::error::Result;
use crate::cache::Cache;

/// The fetcher's rate limit (`fetch.rate_limit` or its builder's).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: Rate,
}

impl RateLimiter {
    pub(crate) fn new(rate: Rate) -> RateLimiter {
        RateLimiter { rate }
    }

    /// Admits one request to `host` (for `url`) against `quota` and this
    /// limiter's rate, waiting for its slot.
    ///
    /// # Errors
    /// [`crate::Error::QuotaExceeded`]; a storage error of the local quota.
    pub(crate) async fn admit(
        &self,
        cache: &Cache,
        _url: &Url,
        host: &str,
        quota: Rate,
    ) -> Result<()> {
        cache
            .admit_upstream(host, quota, self.rate)
            .await
            .map(|_| ())
    }
}
