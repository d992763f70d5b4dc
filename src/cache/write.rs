//! The write path: key → class/TTL → hash → compress → blob → index row →
//! L1, then the shared tier; deletes and invalidations; 304 refreshes.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{Cache, Put, Stored};
use crate::base::error::{Error, Result};
use crate::base::key::{Key, Pattern};
use crate::base::names::{self};
use crate::base::policy::{self};
use crate::disk::blob::Digest;
use crate::disk::index::{self};
use crate::disk::store::{EntryFields, PutItem};

impl Cache {
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
                    // Effective (an open TTL window may shorten it).
                    expires_at: classes.effective_expiry(
                        it.fields.class,
                        now,
                        it.fields.expires_at,
                        now,
                    ),
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
}
