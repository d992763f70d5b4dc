//! [`FetcherBuilder`]: timeouts, retries, limits and TTL policy, with
//! defaults from the cache's `fetch:` config.

use std::time::Duration;

use super::Fetcher;
use crate::base::config::{Rate, ServerTtl};
use crate::base::error::{Error, Result};
use crate::cache::Cache;

/// Fetcher settings. `Default` mirrors the embedded config's `fetch:` section.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) quota: Rate,
    pub(crate) retries: u32,
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) max_redirects: u32,
    pub(crate) server_ttl: ServerTtl,
}

/// Builds a [`Fetcher`].
///
/// ## Defaults
/// From the cache's config `fetch:` section: rate limit 2/s per host, quota
/// 10,000/month, timeout 30 s, connect timeout 5 s, 3 retries, 5 redirects,
/// the shorter of class TTL and server max-age. Backoff starts at 250 ms and
/// is capped (as is an acceptable `Retry-After`) at 30 s.
#[derive(Debug, Clone)]
pub struct FetcherBuilder {
    cache: Cache,
    rate_limit: Rate,
    timeout: Duration,
    connect_timeout: Duration,
    settings: Settings,
}

impl FetcherBuilder {
    /// Per-host request rate.
    pub fn rate_limit(mut self, rate: Rate) -> Self {
        self.rate_limit = rate;
        self
    }
    /// Requests allowed per period, persisted in the index.
    pub fn quota(mut self, quota: Rate) -> Self {
        self.settings.quota = quota;
        self
    }
    /// Whole-request timeout (connect, headers and body).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Connect timeout.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }
    /// Retries after the first attempt.
    pub fn retries(mut self, n: u32) -> Self {
        self.settings.retries = n;
        self
    }
    /// First backoff delay (doubles per retry, with jitter).
    pub fn retry_base(mut self, d: Duration) -> Self {
        self.settings.retry_base = d;
        self
    }
    /// Longest backoff, and longest `Retry-After` the fetcher will wait for.
    pub fn retry_max(mut self, d: Duration) -> Self {
        self.settings.retry_max = d;
        self
    }
    /// Redirects followed before giving up.
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.settings.max_redirects = n;
        self
    }
    /// Whether the server's freshness may lengthen the class TTL.
    pub fn server_ttl(mut self, p: ServerTtl) -> Self {
        self.settings.server_ttl = p;
        self
    }

    /// Builds the fetcher (one HTTP client with a keep-alive pool).
    ///
    /// # Errors
    /// [`Error::Upstream`] if the TLS backend cannot be initialised.
    pub fn build(self) -> Result<Fetcher> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("freshcache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Upstream {
                url: String::new(),
                reason: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Fetcher {
            cache: self.cache,
            client,
            rate: self.rate_limit,
            settings: self.settings,
        })
    }
}

impl Fetcher {
    /// A builder with the cache's `fetch:` config.
    pub fn builder(cache: &Cache) -> FetcherBuilder {
        let f = cache.config().fetch.clone();
        FetcherBuilder {
            cache: cache.clone(),
            rate_limit: f.rate_limit,
            timeout: f.timeout.0,
            connect_timeout: f.connect_timeout.0,
            settings: Settings {
                quota: f.quota,
                retries: f.retries,
                retry_base: Duration::from_millis(250),
                retry_max: Duration::from_secs(30),
                max_redirects: f.max_redirects,
                server_ttl: f.server_ttl,
            },
        }
    }

    /// A fetcher with the cache's `fetch:` config.
    ///
    /// # Errors
    /// As [`FetcherBuilder::build`].
    pub fn new(cache: &Cache) -> Result<Fetcher> {
        Fetcher::builder(cache).build()
    }
}
