//! The `Cache` facade. A put reads top to bottom: key → class/TTL → hash →
//! compress → blob → index row → L1. A get: key → L1 (by the blob hash the
//! index names) → disk → verify; fresh only.

pub(crate) mod flight;
pub(crate) mod guard;
pub(crate) mod maint;
pub(crate) mod metrics;
pub(crate) mod plug;
mod quota;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::base::clock::{Clock, Millis, SystemClock};
use crate::base::config::Config;
use crate::base::error::{Error, Result};
use crate::base::key::{Key, Pattern};
use crate::base::names::{self, Tier};
use crate::base::policy::{self, Classes, Freshness};
use crate::disk::blob::files::{self, BlobFiles};
use crate::disk::blob::Digest;
use crate::disk::hot::HotMap;
use crate::disk::index::{self, Index, Row};
use crate::disk::stats::{Recorder, Stats};
use crate::disk::store::{EntryFields, PutItem, Store};
use crate::disk::tier::HotTier;
use flight::Flights;
use plug::{Claim, Coordinator, Remote, SharedTier};

/// A disk-backed, content-addressed cache. Cheap to clone; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    /// Swapped whole on hot reload; readers take a cheap clone of the Arc.
    config: RwLock<Arc<Config>>,
    classes: RwLock<Arc<Classes>>,
    store: Store,
    /// Decompressed, verified bytes keyed by blob hash: it can only serve
    /// content the index currently points at.
    l1: moka::sync::Cache<Digest, Bytes>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
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
}

/// A handle that does not keep the cache alive (for a shared tier's
/// background tasks, which the cache owns).
#[derive(Debug, Clone)]
pub(crate) struct WeakCache(std::sync::Weak<Inner>);

impl WeakCache {
    /// The cache, while it is alive.
    pub(crate) fn upgrade(&self) -> Option<Cache> {
        self.0.upgrade().map(|inner| Cache { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.recorder.flush(&self.store.index, true) {
            tracing::warn!(error = %e, "could not flush access records on close");
        }
    }
}

/// Options of a put. `Put::default()` picks the class by key prefix.
#[derive(Debug, Clone, Default)]
pub struct Put {
    /// Name a class instead of matching by prefix.
    pub class: Option<String>,
    /// Override the class TTL.
    pub ttl: Option<Duration>,
    /// HTTP validator stored with the entry.
    pub etag: Option<String>,
    /// HTTP validator stored with the entry (kept verbatim).
    pub last_modified: Option<String>,
    /// Response headers as a JSON object (the fetcher stores these).
    pub headers: Option<String>,
}

impl Put {
    /// Names the class.
    pub fn class(mut self, c: impl Into<String>) -> Self {
        self.class = Some(c.into());
        self
    }
    /// Sets the TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets the ETag.
    pub fn etag(mut self, e: impl Into<String>) -> Self {
        self.etag = Some(e.into());
        self
    }
    /// Sets Last-Modified.
    pub fn last_modified(mut self, lm: impl Into<String>) -> Self {
        self.last_modified = Some(lm.into());
        self
    }
}

/// What a put stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub hash: Digest,
    pub class: String,
    pub size: u64,
    pub stored_size: u64,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// The content was already in the store.
    pub deduplicated: bool,
}

/// An entry's metadata and freshness (no bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    pub key: String,
    #[serde(serialize_with = "ser_hex")]
    pub hash: Digest,
    pub class: String,
    pub size: u64,
    pub stored_size: u64,
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    pub created_at: Millis,
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    pub expires_at: Millis,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    #[serde(skip)]
    pub headers: Option<String>,
    pub hits: u64,
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    pub last_access: Millis,
    pub freshness: Freshness,
    /// Milliseconds since created_at, at the time of the read.
    pub age_ms: i64,
}

fn ser_hex<S: serde::Serializer>(d: &Digest, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_hex())
}

impl Meta {
    pub(crate) fn from_row(row: Row, now: Millis) -> Meta {
        Meta {
            freshness: Freshness::at(row.expires_at, now),
            age_ms: now - row.created_at,
            key: row.key,
            hash: row.hash,
            class: row.class,
            size: row.size,
            stored_size: row.stored_size,
            created_at: row.created_at,
            expires_at: row.expires_at,
            etag: row.etag,
            last_modified: row.last_modified,
            headers: row.headers,
            hits: row.hits,
            last_access: row.last_access,
        }
    }
}

/// An entry with its bytes, fresh or stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub meta: Meta,
    pub value: Bytes,
}

/// Builds a [`Cache`].
///
/// ## Defaults
/// Everything comes from the embedded `config/runtime.yml` (root
/// `data/cache`, 10 GiB cap, zstd level 3, blobs over 32 KiB encoded in
/// files, 64 MiB L1, access batches of 1 s) and the system clock.
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl CacheBuilder {
    /// Uses a whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// Sets the cache root.
    pub fn root(mut self, root: impl AsRef<Path>) -> Self {
        self.config.cache.root = root.as_ref().to_path_buf();
        self
    }
    /// Sets the eviction cap (bytes stored).
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.config.cache.max_size.0 = n;
        self
    }
    /// Sets the L1 memory budget.
    pub fn memory_bytes(mut self, n: u64) -> Self {
        self.config.cache.memory_size.0 = n;
        self
    }
    /// Encoded blobs larger than this go to files.
    pub fn inline_max(mut self, n: u64) -> Self {
        self.config.cache.inline_max.0 = n;
        self
    }
    /// Injects a clock (tests use [`crate::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Injects a shared clock.
    pub fn clock_arc(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration this builder will open with.
    pub(crate) fn config_ref(&self) -> &Config {
        &self.config
    }

    /// Opens (creating if needed) the cache with the given plug-ins
    /// (`crate::open` passes the ones the config describes).
    pub(crate) fn build(
        self,
        shared: Option<Arc<dyn SharedTier>>,
        coordinator: Option<Arc<dyn Coordinator>>,
    ) -> Result<Cache> {
        let root = self.config.cache.root.clone();
        prepare_root(&root)?;
        let c = &self.config.cache;
        let store = Store {
            index: Index::open(&root, c.fsync)?,
            files: BlobFiles::new(&root, c.fsync)?,
            inline_max: c.inline_max.0,
            max_blob: crate::base::limits::MAX_BLOB_BYTES,
            unlinks: Default::default(),
            zstd_level: c.zstd_level,
        };
        let hot = HotMap::new(&store.index, c.fsync, 1 << 20)?;
        let tier = if c.hot_tier {
            HotTier::open(&root, c.hot_tier_size.0)
        } else {
            None
        };
        let l1 = moka::sync::Cache::builder()
            .max_capacity(c.memory_size.0)
            .weigher(|_: &Digest, v: &Bytes| u32::try_from(v.len() + 64).unwrap_or(u32::MAX))
            .build();
        let window = c.access_flush.0.as_millis() as Millis;
        let classes = Classes::from_config(&self.config);
        let cache = Cache {
            inner: Arc::new(Inner {
                root,
                classes: RwLock::new(Arc::new(classes)),
                config: RwLock::new(Arc::new(self.config)),
                store,
                l1,
                clock: self.clock,
                recorder: Recorder::new(window),
                latency: Default::default(),
                hot,
                tier,
                flights: Default::default(),
                shared,
                coordinator,
            }),
        };
        if let Some(s) = &cache.inner.shared {
            s.attach(WeakCache(Arc::downgrade(&cache.inner)));
        }
        Ok(cache)
    }
}

/// Creates the root 0700 and refuses one owned by another user.
fn prepare_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !root.exists() {
        files::mkdir(root)?;
    }
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::InsecureRoot {
            path: root.into(),
            reason: "not a directory",
        });
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(Error::InsecureRoot {
            path: root.into(),
            reason: "owned by another user",
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(root, e))?;
    }
    Ok(())
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

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::UnknownClass`], [`Error::TooLarge`],
    /// [`Error::Full`], or a storage error (the old value then stays).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use freshcache::{Cache, Put};
    /// let cache = Cache::open(dir.path())?;
    /// cache.put("odds:g1:1700000000", br#"{"home":-110}"#, Put::default())?;
    /// assert!(cache.get("odds:g1:1700000000")?.is_some());
    /// # Ok::<(), freshcache::Error>(())
    /// ```
    pub fn put(&self, key: &str, value: &[u8], opts: Put) -> Result<Stored> {
        let start = std::time::Instant::now();
        let mut out = self.put_many(&[(key, value, opts)])?;
        self.inner.latency.put.observe(start.elapsed());
        Ok(out.pop().expect("one item in, one out"))
    }

    /// Stores several values in one transaction (group commit): all become
    /// visible together, or none do. Much faster than single puts for
    /// batches (a feed's articles, a warm-up list).
    ///
    /// # Errors
    /// As [`Cache::put`], for the first item that fails; nothing is stored then.
    pub fn put_many(&self, items: &[(&str, &[u8], Put)]) -> Result<Vec<Stored>> {
        let config = self.config();
        let classes = self.classes();
        let max = config.cache.max_value_size.0;
        let mut resolved = Vec::with_capacity(items.len());
        let mut incoming = 0u64;
        for (key, value, opts) in items {
            let key = Key::new(*key)?;
            if value.len() as u64 > max {
                return Err(Error::TooLarge {
                    size: value.len() as u64,
                    max,
                });
            }
            let (class, ttl) = classes.resolve(&key, opts.class.as_deref(), opts.ttl)?;
            incoming += value.len() as u64;
            resolved.push((key, class, ttl));
        }
        self.admit(&config, incoming)?;
        let now = self.now();
        let hashes: Vec<Digest> = items.iter().map(|(_, v, _)| Digest::of(v)).collect();
        let store_items: Vec<PutItem<'_>> = items
            .iter()
            .zip(&resolved)
            .zip(&hashes)
            .map(|(((_, value, opts), (key, class, ttl)), hash)| PutItem {
                key: key.as_str(),
                value,
                hash: *hash,
                fields: EntryFields {
                    class,
                    created_at: now,
                    expires_at: policy::expiry(now, *ttl),
                    etag: opts.etag.as_deref(),
                    last_modified: opts.last_modified.as_deref(),
                    headers: opts.headers.as_deref(),
                },
            })
            .collect();
        let outcomes = self.inner.store.put_many(&store_items)?;
        if let Some(shared) = &self.inner.shared {
            shared.write_through(now, &store_items);
        }
        let l1_max = config.cache.memory_size.0 / 16;
        Ok(store_items
            .iter()
            .zip(outcomes)
            .map(|(it, out)| {
                if (it.value.len() as u64) <= l1_max {
                    self.inner
                        .l1
                        .insert(it.hash, Bytes::copy_from_slice(it.value));
                }
                Stored {
                    hash: it.hash,
                    size: it.value.len() as u64,
                    stored_size: out.stored_size,
                    created_at: now,
                    expires_at: it.fields.expires_at,
                    deduplicated: out.deduplicated,
                    class: it.fields.class.to_string(),
                }
            })
            .collect())
    }

    /// Serialises `value` as JSON and stores it.
    ///
    /// # Errors
    /// As [`Cache::put`], plus [`Error::Json`].
    pub fn put_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        opts: Put,
    ) -> Result<Stored> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Json {
            key: key.into(),
            source: e,
        })?;
        self.put(key, &bytes, opts)
    }

    /// The value of `key` if it is fresh; `Ok(None)` for missing or expired.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] or a storage error. A corrupt blob is not an
    /// error: it is quarantined and the get is a miss.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let start = std::time::Instant::now();
        let key = Key::new(key)?;
        let now = self.now();
        let generation = self.inner.hot.sync(&self.inner.store.index)?;
        let out = match self.hot_get(&key, now) {
            Some(b) => Some(b),
            None => self
                .read_at(&key, now, false, Some(generation))?
                .map(|(_, b)| b),
        };
        self.inner.latency.get.observe(start.elapsed());
        Ok(out)
    }

    /// The cache's metrics in Prometheus text format (counters shared by
    /// every process on the root, latency histograms of this process).
    ///
    /// # Errors
    /// A storage error.
    pub fn metrics(&self) -> Result<crate::cache::metrics::Exposition> {
        let stats = self.stats()?;
        Ok(crate::cache::metrics::render(
            &stats,
            self.disk_bytes()?,
            &self.inner.latency,
        ))
    }

    /// Deserialises the fresh value of `key` from JSON.
    ///
    /// # Errors
    /// As [`Cache::get`], plus [`Error::Json`] when the bytes do not parse as `T`.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Json {
                    key: key.into(),
                    source: e,
                }),
        }
    }

    /// The entry for `key`, fresh or stale, with its metadata.
    ///
    /// # Errors
    /// As [`Cache::get`].
    pub fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let key = Key::new(key)?;
        let now = self.now();
        Ok(self.read(&key, now, true)?.map(|(row, value)| Entry {
            meta: Meta::from_row(row, now),
            value,
        }))
    }

    /// The metadata of `key` without reading its bytes.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] or a storage error.
    pub fn stat(&self, key: &str) -> Result<Option<Meta>> {
        let key = Key::new(key)?;
        let now = self.now();
        let read = self.inner.store.read(key.as_str(), now, |_| false)?;
        Ok(read.map(|r| Meta::from_row(r.row, now)))
    }

    /// Fresh values of several keys, read as of one snapshot.
    ///
    /// # Errors
    /// The first invalid key, or a storage error.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let keys = keys
            .iter()
            .map(|k| Key::new(*k))
            .collect::<Result<Vec<_>>>()?;
        let now = self.now();
        let strs: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let l1_hits = RefCell::new(Vec::new());
        let reads = self
            .inner
            .store
            .read_many(&strs, now, |row| self.want_bytes(row, now, false, &l1_hits))?;
        let l1_hits = l1_hits.into_inner();
        let mut out = Vec::with_capacity(keys.len());
        for (key, read) in keys.iter().zip(reads) {
            out.push(
                self.finish_read(key, read, now, false, &l1_hits)
                    .map(|(_, b)| b),
            );
        }
        Ok(out)
    }

    /// Removes `key`; true if it existed.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] or a storage error.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let key = Key::new(key)?;
        self.invalidate_shared(&Pattern::new(key.as_str())?);
        Ok(self.inner.store.delete(&[key.as_str().to_owned()])? > 0)
    }

    /// Removes every key matching `pattern`, in one transaction; returns how many.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] or a storage error (nothing removed then).
    pub fn invalidate(&self, pattern: &str) -> Result<usize> {
        self.invalidate_shared(&Pattern::new(pattern)?);
        self.invalidate_local(pattern)
    }

    /// Removes matches from the shared tier and tells the other instances.
    /// When it is unreachable the invalidation stays local: it is logged and
    /// counted (`redis|invalidations_not_shared`), because other instances
    /// and a later read-through may still serve those keys until they expire.
    fn invalidate_shared(&self, pattern: &Pattern) {
        if let Some(shared) = &self.inner.shared {
            if !shared.invalidate(pattern) {
                tracing::warn!(%pattern, "shared tier unreachable: invalidation not shared with other instances");
                self.count(names::redis("invalidations_not_shared"), 1);
            }
        }
    }

    /// [`Cache::invalidate`] on this root's tiers only (remote invalidations
    /// arrive here).
    pub(crate) fn invalidate_local(&self, pattern: &str) -> Result<usize> {
        let pattern = Pattern::new(pattern)?;
        let (lo, hi) = pattern.range();
        let store = &self.inner.store;
        store.write(|tx| {
            let rows = index::range(tx, &lo, hi.as_deref()).map_err(|e| store.index.wrap(e))?;
            let keys: Vec<String> = rows
                .into_iter()
                .map(|r| r.key)
                .filter(|k| pattern.matches(k))
                .collect();
            store.delete_in(tx, &keys)
        })
    }

    /// Metadata of every key matching `pattern` (all keys for `None`), in key order.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] or a storage error.
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
            .map(|r| Meta::from_row(r, now))
            .collect())
    }

    /// Marks `key` fresh again without touching its blob (an HTTP 304):
    /// expiry recomputed from `ttl` (default: its class TTL) counted from
    /// now, validators and stored headers replaced. False if the key is gone.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::UnknownClass`] or a storage error.
    pub fn refresh(&self, key: &str, ttl: Option<Duration>, opts: &Put) -> Result<bool> {
        self.refresh_if(key, None, ttl, opts)
    }

    /// [`Cache::refresh`], but only if `key` still holds the content named
    /// `expected` (what a conditional request asked about). False if the key
    /// is gone or now holds other content.
    ///
    /// # Errors
    /// As [`Cache::refresh`].
    pub fn refresh_if(
        &self,
        key: &str,
        expected: Option<&Digest>,
        ttl: Option<Duration>,
        opts: &Put,
    ) -> Result<bool> {
        let key = Key::new(key)?;
        let (_, ttl) = self
            .classes()
            .resolve(&key, opts.class.as_deref(), opts.ttl.or(ttl))?;
        let now = self.now();
        let store = &self.inner.store;
        let refreshed = store.index.write(|tx| {
            let r = index::Refresh {
                now,
                expires_at: policy::expiry(now, ttl),
                etag: opts.etag.as_deref(),
                last_modified: opts.last_modified.as_deref(),
                headers: opts.headers.as_deref(),
                expected,
            };
            index::refresh_entry(tx, key.as_str(), &r).map_err(|e| store.index.wrap(e))
        })?;
        if refreshed {
            self.write_back(key.as_str());
        }
        Ok(refreshed)
    }

    /// Writes the local entry of `key` through to the shared tier again
    /// (after a 304 refresh changed its expiry and validators).
    fn write_back(&self, key: &str) {
        let Some(shared) = &self.inner.shared else {
            return;
        };
        let now = self.now();
        let Ok(Some(read)) = self.inner.store.read(key, now, |_| true) else {
            return;
        };
        let Some(bytes) = read.bytes else { return };
        let r = &read.row;
        let item = PutItem {
            key,
            value: &bytes,
            hash: r.hash,
            fields: EntryFields {
                class: &r.class,
                created_at: r.created_at,
                expires_at: r.expires_at,
                etag: r.etag.as_deref(),
                last_modified: r.last_modified.as_deref(),
                headers: r.headers.as_deref(),
            },
        };
        shared.write_through(now, std::slice::from_ref(&item));
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

    /// Coordinates an upstream call for `key` with the other instances
    /// ([`Claim::Alone`] without a coordinator).
    pub(crate) async fn claim(&self, key: &str) -> Claim {
        let Some(c) = &self.inner.coordinator else {
            return Claim::Alone;
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
        let mut s = Stats::load(
            &self.inner.store.index,
            self.inner.recorder.pending_counters(),
        )?;
        if let Some(shared) = &self.inner.shared {
            s.redis.configured = true;
            s.redis.up = shared.is_up();
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

    fn flush_soon(&self) {
        if let Err(e) = self.inner.recorder.flush(&self.inner.store.index, false) {
            tracing::warn!(error = %e, "could not flush access records");
        }
    }

    /// Whether a read needs the blob bytes: not when the entry is expired and
    /// stale is not allowed, not when L1 holds them (then remember the hit).
    fn want_bytes(
        &self,
        row: &Row,
        now: Millis,
        allow_stale: bool,
        l1_hits: &RefCell<Vec<(Digest, Bytes, Tier)>>,
    ) -> bool {
        if !allow_stale && !Freshness::at(row.expires_at, now).is_fresh() {
            return false;
        }
        if l1_hits.borrow().iter().any(|(d, _, _)| *d == row.hash) {
            return false;
        }
        if let Some(b) = self.inner.l1.get(&row.hash) {
            l1_hits.borrow_mut().push((row.hash, b, Tier::Memory));
            return false;
        }
        if let Some(b) = self.inner.tier.as_ref().and_then(|t| t.get(&row.hash)) {
            self.inner.l1.insert(row.hash, b.clone());
            l1_hits.borrow_mut().push((row.hash, b, Tier::Hot));
            return false;
        }
        true
    }

    /// A repeated get answered from the hot map and L1, without the index.
    /// The caller has synced the hot map.
    fn hot_get(&self, key: &Key, now: Millis) -> Option<Bytes> {
        let e = self.inner.hot.get(key.as_str())?;
        if !Freshness::at(e.expires_at, now).is_fresh() {
            return None;
        }
        let bytes = self.inner.l1.get(&e.hash)?;
        let hit = Some((Tier::Memory, &*e.class));
        if self
            .inner
            .recorder
            .access(key.as_str(), hit, Some(e.last_access), now)
        {
            self.flush_soon();
        }
        Some(bytes)
    }

    /// Reads one key through L1 and the disk tier, counting the hit or miss.
    pub(crate) fn read(
        &self,
        key: &Key,
        now: Millis,
        allow_stale: bool,
    ) -> Result<Option<(Row, Bytes)>> {
        self.read_at(key, now, allow_stale, None)
    }

    /// As [`Cache::read`]; a fresh result is remembered in the hot map if
    /// `generation` (from a sync before the read) is still current then.
    fn read_at(
        &self,
        key: &Key,
        now: Millis,
        allow_stale: bool,
        generation: Option<u64>,
    ) -> Result<Option<(Row, Bytes)>> {
        let l1_hits = RefCell::new(Vec::new());
        let read = self.inner.store.read(key.as_str(), now, |row| {
            self.want_bytes(row, now, allow_stale, &l1_hits)
        })?;
        let out = self.finish_read(key, read, now, allow_stale, &l1_hits.into_inner());
        if let (Some(g), Some((row, _))) = (generation, &out) {
            if Freshness::at(row.expires_at, now).is_fresh() {
                let e = crate::disk::hot::HotEntry {
                    hash: row.hash,
                    expires_at: row.expires_at,
                    class: row.class.as_str().into(),
                    last_access: row.last_access,
                };
                self.inner.hot.insert(key.as_str(), e, g);
            }
        }
        Ok(out)
    }

    fn finish_read(
        &self,
        key: &Key,
        read: Option<crate::disk::store::Read>,
        now: Millis,
        allow_stale: bool,
        l1_hits: &[(Digest, Bytes, Tier)],
    ) -> Option<(Row, Bytes)> {
        let redis = |allow_stale| self.read_through(key, now, allow_stale);
        let Some(read) = read else {
            if let Some(hit) = redis(allow_stale) {
                return Some(hit);
            }
            self.count(names::miss(&self.classes().classify(key.as_str()).0), 1);
            return None;
        };
        let fresh = Freshness::at(read.row.expires_at, now).is_fresh();
        if let Some(hit) = (!fresh).then(|| redis(false)).flatten() {
            return Some(hit);
        }
        if !fresh && !allow_stale {
            self.count(names::miss(&read.row.class), 1);
            return None;
        }
        let (tier, bytes) = match read.bytes {
            Some(b) => {
                let b = Bytes::from(b);
                self.inner.l1.insert(read.row.hash, b.clone());
                if let Some(t) = &self.inner.tier {
                    t.insert(&read.row.hash, &b);
                }
                (Tier::Disk, b)
            }
            None => {
                let (_, b, tier) = l1_hits.iter().find(|(d, _, _)| *d == read.row.hash)?;
                (*tier, b.clone())
            }
        };
        let hit = fresh.then_some((tier, read.row.class.as_str()));
        if self
            .inner
            .recorder
            .access(key.as_str(), hit, Some(read.row.last_access), now)
        {
            self.flush_soon();
        }
        Some((read.row, bytes))
    }

    /// Looks `key` up in the shared tier after a local miss (or a stale
    /// local copy). A usable copy is backfilled into the local store with
    /// its own metadata (never written back through) and returned with the
    /// row it now has.
    fn read_through(&self, key: &Key, now: Millis, allow_stale: bool) -> Option<(Row, Bytes)> {
        let remote = self.inner.shared.as_ref()?.read(key, now, allow_stale)?;
        let fresh = Freshness::at(remote.expires_at, now).is_fresh();
        self.backfill(key, &remote);
        let row = Row {
            key: key.as_str().to_owned(),
            blob_id: -1,
            hash: remote.hash,
            class: remote.class,
            size: remote.value.len() as u64,
            stored_size: remote.value.len() as u64,
            codec: crate::disk::blob::codec::Codec::Raw,
            created_at: remote.created_at,
            expires_at: remote.expires_at,
            etag: remote.etag,
            last_modified: remote.last_modified,
            headers: remote.headers,
            hits: 0,
            last_access: now,
            is_file: false,
        };
        let bytes = Bytes::from(remote.value);
        if (bytes.len() as u64) <= self.config().cache.memory_size.0 / 16 {
            self.inner.l1.insert(row.hash, bytes.clone());
        }
        if fresh {
            self.count(names::hit(Tier::Redis, &row.class), 1);
        }
        Some((row, bytes))
    }

    /// Copies a shared-tier entry into the local store with its metadata.
    fn backfill(&self, key: &Key, remote: &Remote) {
        let fields = EntryFields {
            class: &remote.class,
            created_at: remote.created_at,
            expires_at: remote.expires_at,
            etag: remote.etag.as_deref(),
            last_modified: remote.last_modified.as_deref(),
            headers: remote.headers.as_deref(),
        };
        let result = self
            .admit(&self.config(), remote.value.len() as u64)
            .and_then(|()| {
                self.inner
                    .store
                    .put(key.as_str(), &remote.value, &remote.hash, &fields)
            });
        match result {
            Ok(_) => self.count(names::redis("backfills"), 1),
            Err(e) => {
                tracing::warn!(key = key.as_str(), error = %e, "could not backfill from the shared tier")
            }
        }
    }
}
