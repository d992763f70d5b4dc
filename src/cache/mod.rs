//! The `Cache` facade. A put reads top to bottom: key → class/TTL → hash →
//! compress → blob → index row → L1. A get: key → L1 (by the blob hash the
//! index names) → disk → verify; fresh only.

mod admit;
mod builder;
pub(crate) mod flight;
mod flusher;
pub(crate) mod guard;
mod local;
pub(crate) mod maint;
pub(crate) mod metrics;
pub(crate) mod plug;
mod quota;
mod read;
mod types;
mod write;

pub use builder::CacheBuilder;
pub use types::{Entry, Meta, Put, Stored};

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::base::clock::{Clock, Millis};
use crate::base::config::Config;
use crate::base::config::Rate;
use crate::base::error::Result;
use crate::base::key::Pattern;
use crate::base::names;
use crate::base::policy::Classes;
use crate::disk::blob::Digest;
use crate::disk::hot::HotMap;
use crate::disk::index;
use crate::disk::stats::{Recorder, Stats};
use crate::disk::store::Store;
use crate::disk::tier::HotTier;
use flight::Flights;
use plug::{Admission, Claim, Coordinator, SharedTier};

/// A disk-backed, content-addressed cache. Cheap to clone; `Send + Sync`.
#[derive(Debug)]
pub struct Cache {
    inner: Arc<Inner>,
    /// A caller's handle (built or cloned), not a shared tier's background
    /// task holding the cache for one local operation: the last caller's
    /// handle writes the batched counters on the caller's thread.
    user: bool,
}

impl Clone for Cache {
    fn clone(&self) -> Self {
        if self.user {
            self.inner
                .handles
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Cache {
            inner: self.inner.clone(),
            user: self.user,
        }
    }
}

impl Drop for Cache {
    /// The last caller's handle writes what is batched now, on this thread:
    /// a background task (the Redis tier's subscriber) may still hold the
    /// cache for a moment, and the last `Inner` would then drop on its
    /// thread, after a short-lived process had already exited (a CLI `get`
    /// that lost its counters).
    fn drop(&mut self) {
        if self.user
            && self
                .inner
                .handles
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
                == 1
        {
            if let Err(e) = self.inner.recorder.flush(&self.inner.store.index, true) {
                tracing::warn!(error = %e, "could not flush access records on close");
            }
            // Likewise the unused part of a quota reservation.
            self.inner.local.give_back_reserved();
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    /// Swapped whole on hot reload; readers take a cheap clone of the Arc.
    config: RwLock<Arc<Config>>,
    classes: RwLock<Arc<Classes>>,
    /// Shared with the flusher thread, which never holds `Inner` itself:
    /// the last handle's drop always runs on a caller's thread, joins the
    /// flusher and writes what is left before the process can exit.
    store: Arc<Store>,
    /// Decompressed, verified bytes keyed by blob hash: it can only serve
    /// content the index currently points at.
    l1: moka::sync::Cache<Digest, Bytes, ahash::RandomState>,
    /// Admits large values read from disk into L1 on their second read.
    door: admit::Doorkeeper,
    clock: Arc<dyn Clock>,
    recorder: Arc<Recorder>,
    latency: metrics::Latency,
    /// key → (hash, expiry) of recent fresh reads: repeated gets skip the index.
    hot: HotMap,
    /// The optional persistent hot tier (sled), if this process owns it.
    tier: Option<HotTier>,
    /// Single-flight calls in progress (fetch and get_or_fetch).
    flights: Flights,
    /// The tier shared with other instances, if one was given.
    shared: Option<Arc<dyn SharedTier>>,
    /// Cross-instance coordination of upstream calls, if one was given.
    coordinator: Option<Arc<dyn Coordinator>>,
    /// This process's rate limit and the root's quota: what admits a
    /// request when there is no shared coordinator or it is unreachable.
    local: local::LocalCoordinator,
    /// Wakes the thread that writes batched access records.
    flusher: flusher::Flusher,
    /// Live caller handles (see [`Cache::user`](Cache)).
    handles: std::sync::atomic::AtomicUsize,
}

/// A handle that does not keep the cache alive (for a shared tier's
/// background tasks, which the cache owns).
#[derive(Debug, Clone)]
pub(crate) struct WeakCache(std::sync::Weak<Inner>);

impl WeakCache {
    /// The cache, while it is alive.
    pub(crate) fn upgrade(&self) -> Option<Cache> {
        self.0.upgrade().map(|inner| Cache { inner, user: false })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flusher.stop();
        if let Err(e) = self.recorder.flush(&self.store.index, true) {
            tracing::warn!(error = %e, "could not flush access records on close");
        }
    }
}

impl Cache {
    /// A builder with the embedded defaults.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Whether this process owns the persistent hot tier.
    pub fn hot_tier_active(&self) -> bool {
        self.inner.tier.is_some()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a new configuration (classes, TTLs, size cap, ...) without
    /// reopening. The root and storage layout settings keep their values.
    pub fn set_config(&self, config: Config) {
        let classes = Classes::from_config(&config);
        *self
            .inner
            .classes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(classes);
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    pub(crate) fn classes(&self) -> Arc<Classes> {
        self.inner
            .classes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Now, by the injected clock.
    pub fn now(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    /// The cache's metrics in Prometheus text format (counters shared by
    /// every process on the root, latency histograms of this process).
    ///
    /// # Errors
    /// A storage error.
    pub fn metrics(&self) -> Result<crate::cache::metrics::Exposition> {
        let stats = self.stats()?;
        let tiers =
            crate::cache::metrics::tiers(self.hot_tier_active(), self.inner.shared.is_some());
        let sizes = crate::cache::metrics::Sizes {
            disk: self.disk_bytes()?,
            memory: self.inner.l1.weighted_size(),
        };
        Ok(crate::cache::metrics::render(
            &stats,
            sizes,
            &self.inner.latency,
            &tiers,
        ))
    }

    /// Metadata of every key matching `pattern` (all keys for `None`), in key order.
    ///
    /// # Errors
    /// [`crate::Error::InvalidPattern`] or a storage error.
    pub fn list(&self, pattern: Option<&str>) -> Result<Vec<Meta>> {
        let pattern = pattern.map(Pattern::new).transpose()?;
        let (lo, hi) = pattern
            .as_ref()
            .map_or((String::new(), None), Pattern::range);
        let now = self.now();
        let rows = self
            .inner
            .store
            .index
            .read(|c| index::range(c, &lo, hi.as_deref()))?;
        Ok(rows
            .into_iter()
            .filter(|r| pattern.as_ref().is_none_or(|p| p.matches(&r.key)))
            .map(|r| Meta::from_row(self.effective(r, now), now))
            .collect())
    }

    /// The shared tier, if one was given at build time.
    pub(crate) fn shared_tier(&self) -> Option<&Arc<dyn SharedTier>> {
        self.inner.shared.as_ref()
    }

    /// The single-flight map of this cache (shared by its clones).
    pub(crate) fn flights(&self) -> &Flights {
        &self.inner.flights
    }

    /// The coordinator of upstream calls across instances, if any.
    pub(crate) fn coordinator(&self) -> Option<&Arc<dyn Coordinator>> {
        self.inner.coordinator.as_ref()
    }

    /// Admits one upstream request to `host`: through the shared
    /// coordinator when there is one and it answers (global quota and
    /// rate), otherwise through the local one (this process's rate limit,
    /// the root's quota). One limiter, two backends.
    ///
    /// # Errors
    /// [`crate::Error::QuotaExceeded`]; a storage error of the local quota.
    pub(crate) async fn admit_upstream(
        &self,
        host: &str,
        quota: Rate,
        rate: Rate,
    ) -> Result<Admission> {
        if let Some(c) = &self.inner.coordinator {
            let a = c.admit(host, quota, rate).await?;
            if !matches!(a, Admission::Local) {
                return Ok(a);
            }
        }
        self.inner.local.admit(host, quota, rate).await
    }

    /// Coordinates an upstream call for `key` with the other instances
    /// (the local coordinator's [`Claim::Alone`] without a shared one).
    pub(crate) async fn claim(&self, key: &str) -> Claim {
        let c: &dyn Coordinator = match &self.inner.coordinator {
            Some(c) => c.as_ref(),
            None => &self.inner.local,
        };
        let claim = c.claim(key).await;
        if matches!(claim, Claim::Filled) {
            self.count(names::avoided("lease"), 1);
        }
        claim
    }

    /// Hits, misses, sizes and rates, shared by every process on the root.
    ///
    /// # Errors
    /// A storage error.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = self
            .inner
            .recorder
            .with_pending(|pending| Stats::load(&self.inner.store.index, pending))?;
        s.quota = self.quota_status(self.config().fetch.quota)?;
        if let Some(shared) = &self.inner.shared {
            s.redis.configured = true;
            s.redis.up = shared.is_up();
            s.redis.confirmed = shared.confirmed();
        }
        Ok(s)
    }

    /// Writes batched access records and counters now.
    ///
    /// # Errors
    /// A storage error.
    pub fn flush(&self) -> Result<()> {
        self.inner.recorder.flush(&self.inner.store.index, true)
    }

    /// Adds to a persisted counter (batched).
    pub(crate) fn count(&self, name: String, delta: i64) {
        let now = self.now();
        if self.inner.recorder.count(name, delta, now) {
            self.flush_soon();
        }
    }

    /// Counts a miss of `class` (batched, allocation-free).
    pub(crate) fn count_miss(&self, class: &str, now: Millis) {
        if self.inner.recorder.miss(class, now) {
            self.flush_soon();
        }
    }

    /// Wakes the background flusher (a read never writes the batch itself).
    fn flush_soon(&self) {
        self.inner.flusher.wake();
    }
}
