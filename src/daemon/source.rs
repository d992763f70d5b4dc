//! Where the daemon's data comes from: [`FeedSource`] refreshes a feed and
//! loads a warm-up item. The daemon's scheduling, shutdown and metrics only
//! see this trait, so tests inject a fake and library users their loader.

use std::future::Future;

use crate::base::config::{FeedConfig, WarmItem};
use crate::base::error::Result;
use crate::cache::Cache;

/// What a refresh or warm-up load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// 200: a new body was stored.
    Fetched,
    /// 304: the stored copy is fresh again; no body moved.
    NotModified,
    /// The stored copy was fresh: no request.
    Fresh,
    /// A key was read from disk into the memory tier.
    Loaded,
    /// A key to load was not in the cache.
    Miss,
}

impl Outcome {
    /// The `outcome` label of the daemon's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Fetched => "200",
            Outcome::NotModified => "304",
            Outcome::Fresh => "fresh",
            Outcome::Loaded => "loaded",
            Outcome::Miss => "miss",
        }
    }
}

/// What refreshing one feed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// What the fetch did.
    pub outcome: Outcome,
    /// Status of the final response; `None` without a request.
    pub status: Option<u16>,
    /// Body bytes received (0 for a 304).
    pub body_bytes: u64,
    /// Articles stored (0 unless the feed changed).
    pub articles: usize,
}

/// The daemon's upstream. Futures must be cancel-safe: on shutdown an
/// in-flight refresh is dropped after `daemon.shutdown_grace`.
pub trait FeedSource: Send + Sync + 'static {
    /// Revalidates `feed` (a conditional GET) and stores what changed.
    fn refresh(&self, feed: FeedConfig) -> impl Future<Output = Result<Refresh>> + Send;

    /// Loads one warm-up item into the cache.
    fn warm(&self, item: WarmItem) -> impl Future<Output = Result<Outcome>> + Send;
}

impl<S: FeedSource> FeedSource for std::sync::Arc<S> {
    fn refresh(&self, feed: FeedConfig) -> impl Future<Output = Result<Refresh>> + Send {
        S::refresh(self, feed)
    }

    fn warm(&self, item: WarmItem) -> impl Future<Output = Result<Outcome>> + Send {
        S::warm(self, item)
    }
}

/// Warms a key without a URL: reads it from disk into the memory tier.
///
/// # Errors
/// A storage error.
pub fn warm_key(cache: &Cache, key: &str) -> Result<Outcome> {
    Ok(match cache.get(key)? {
        Some(_) => Outcome::Loaded,
        None => Outcome::Miss,
    })
}
