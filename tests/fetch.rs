//! Fetcher tests against real HTTP servers on 127.0.0.1: a scripted axum
//! origin (every test asserts the request headers the fetcher sent), a raw
//! TCP origin for broken responses, and a real nginx for native validators.

#[path = "common/fetch_origin.rs"]
mod origin;

#[path = "fetch/feeds.rs"]
mod feeds;
#[path = "fetch/nginx.rs"]
mod nginx;
#[path = "fetch/robustness.rs"]
mod robustness;
#[path = "fetch/semantics.rs"]
mod semantics;
#[path = "fetch/urls.rs"]
mod urls;
#[path = "fetch/validators.rs"]
mod validators;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freshcache::config::Rate;
use freshcache::{Cache, FetchOptions, Fetcher, ManualClock};

/// A cache on a temp dir with a manual clock set to the wall clock (the
/// origin's `Date` headers are real).
pub fn cache() -> (tempfile::TempDir, Cache, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = ManualClock::new(now);
    let cache = Cache::builder()
        .root(dir.path().join("c"))
        .clock(clock.clone())
        .open()
        .unwrap();
    (dir, cache, clock)
}

/// A fetcher with fast backoff and no rate limit to speak of (the rate
/// limiter has its own unit tests). Its timeouts only guard a hang: a
/// local origin on a loaded machine may be slow to answer, and a timeout
/// would turn into a retry (another request counted). Tests of timeouts
/// use [`fetcher_with_timeout`].
pub fn fetcher(cache: &Cache) -> Fetcher {
    fetcher_with_timeout(cache, Duration::from_secs(30))
}

/// [`fetcher`] with a request timeout of `timeout`.
pub fn fetcher_with_timeout(cache: &Cache, timeout: Duration) -> Fetcher {
    Fetcher::builder(cache)
        .rate_limit(Rate::parse("100000/s").unwrap())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .retries(2)
        .retry_base(Duration::from_millis(5))
        .build()
        .unwrap()
}

pub fn opts() -> FetchOptions {
    FetchOptions::default()
}

pub fn revalidate() -> FetchOptions {
    FetchOptions {
        revalidate: true,
        ..FetchOptions::default()
    }
}
