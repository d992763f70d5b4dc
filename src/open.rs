//! Opening a cache with the tiers its configuration describes. This is the
//! one place that names both the cache and the implementations plugged
//! into it: with `redis.url` set, the Redis tier is both the cache's shared
//! tier and its coordinator.

use std::path::Path;
#[cfg(feature = "redis")]
use std::sync::Arc;

use crate::base::config::Config;
use crate::base::error::Result;
#[cfg(feature = "redis")]
use crate::cache::plug::{Coordinator, SharedTier};
use crate::cache::{Cache, CacheBuilder};
#[cfg(feature = "redis")]
use crate::redis::RedisTier;

impl CacheBuilder {
    /// Opens (creating if needed) the cache, with the shared Redis tier
    /// when the config sets `redis.url` (never connecting here: an
    /// unreachable Redis only means a degraded tier).
    ///
    /// # Errors
    /// [`crate::Error::InsecureRoot`] for a root owned by another user,
    /// [`crate::Error::Io`] if it cannot be created, [`crate::Error::Index`]
    /// if the index is not a SQLite database, [`crate::Error::Config`] for a
    /// Redis URL the client cannot parse.
    pub fn open(self) -> Result<Cache> {
        #[cfg(feature = "redis")]
        if let Some(tier) = RedisTier::from_config(self.config_ref())? {
            let tier = Arc::new(tier);
            let shared: Arc<dyn SharedTier> = tier.clone();
            let coordinator: Arc<dyn Coordinator> = tier;
            return self.build(Some(shared), Some(coordinator));
        }
        #[cfg(not(feature = "redis"))]
        if self.config_ref().redis.url.is_some() {
            return Err(crate::Error::Config {
                source_name: "runtime config".into(),
                field: "redis.url".into(),
                reason: "set, but this freshcache was built without the `redis` feature".into(),
            });
        }
        self.build(None, None)
    }
}

impl Cache {
    /// Opens the cache at `root` with the embedded default config.
    ///
    /// # Errors
    /// See [`CacheBuilder::open`].
    pub fn open(root: impl AsRef<Path>) -> Result<Cache> {
        Cache::builder().root(root).open()
    }

    /// Opens the cache a config describes.
    ///
    /// # Errors
    /// See [`CacheBuilder::open`].
    pub fn with_config(config: Config) -> Result<Cache> {
        Cache::builder().config(config).open()
    }
}
