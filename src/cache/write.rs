//! The write path: key → class/TTL → hash → compress → blob → index row →
//! L1, then the shared tier; deletes and invalidations; 304 refreshes.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{Cache, Put, Stored};
use crate::base::clock::Millis;
use crate::base::error::{Error, Result};
use crate::base::key::{Key, Pattern};
use crate::base::names;
use crate::base::policy;
use crate::disk::blob::Digest;
use crate::disk::index::{self, LogId};
use crate::disk::store::{EntryFields, PutItem};

/// Largest value a put copies into L1.
const PUT_L1_MAX: u64 = 64 * 1024;

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
        // A put copies into L1 only values small enough that the copy costs
        // less than the decode it saves; a larger one enters L1 (without a
        // copy) when read: on its first read under 128 KiB, on its second
        // from there (`admit.rs`).
        let l1_max = (config.cache.memory_size.0 / 16).min(PUT_L1_MAX);
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
        if self.inner.shared.is_none() {
            return Ok(self.inner.store.delete(&[key.as_str().to_owned()])? > 0);
        }
        Ok(self.invalidate_pattern(&Pattern::new(key.as_str())?)? > 0)
    }

    /// Removes every key matching `pattern`, in one transaction; returns how many.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] or a storage error (nothing removed then).
    pub fn invalidate(&self, pattern: &str) -> Result<usize> {
        self.invalidate_pattern(&Pattern::new(pattern)?)
    }

    /// With a shared tier, the local deletes and an outbox row for the
    /// invalidation commit in one transaction; the outbox is then published
    /// (in order, by whichever process on this root reaches the tier first).
    /// When the tier is unreachable the invalidation waits there: logged
    /// and counted (`redis|invalidations_not_shared`, and the pending gauge).
    fn invalidate_pattern(&self, pattern: &Pattern) -> Result<usize> {
        let Some(shared) = &self.inner.shared else {
            return self.delete_matching(pattern, None);
        };
        let n = self.delete_matching(pattern, Some(shared.scope()))?;
        if !shared.share_pending() {
            tracing::warn!(%pattern, "shared tier unreachable: invalidation queued in the outbox until it is back");
            self.count(names::redis("invalidations_not_shared"), 1);
        }
        Ok(n)
    }

    /// Deletes every match in one transaction, queueing the invalidation in
    /// `outbox` (a log scope) in the same transaction when given.
    fn delete_matching(&self, pattern: &Pattern, outbox: Option<&str>) -> Result<usize> {
        let now = self.now();
        let store = &self.inner.store;
        store.write_freeing(|tx| {
            if let Some(scope) = outbox {
                index::outbox_push(tx, scope, pattern.as_str(), now)
                    .map_err(|e| store.index.wrap(e))?;
            }
            self.delete_matching_in(tx, pattern, None)
        })
    }

    /// Deletes the matches of `pattern` (only those created before
    /// `before`, when given) inside a write transaction.
    fn delete_matching_in(
        &self,
        tx: &rusqlite::Connection,
        pattern: &Pattern,
        before: Option<Millis>,
    ) -> Result<usize> {
        let store = &self.inner.store;
        let (lo, hi) = pattern.range();
        let rows = index::range(tx, &lo, hi.as_deref()).map_err(|e| store.index.wrap(e))?;
        let keys: Vec<String> = rows
            .into_iter()
            .filter(|r| before.is_none_or(|b| r.created_at < b))
            .map(|r| r.key)
            .filter(|k| pattern.matches(k))
            .collect();
        store.delete_in(tx, &keys)
    }

    /// The position in `scope`'s shared invalidation log this root has
    /// applied: (epoch of the data set, log id).
    pub(crate) fn shared_position(&self, scope: &str) -> Result<Option<(String, LogId)>> {
        self.inner
            .store
            .index
            .read(|c| index::sync_position(c, scope))
    }

    /// Applies invalidations read from the shared log (patterns, in log
    /// order) and records `upto` as applied, in one transaction. `reset`
    /// (after a reconcile) replaces the stored epoch and position; otherwise
    /// the position only moves forward within the stored epoch.
    pub(crate) fn apply_shared(
        &self,
        scope: &str,
        epoch: &str,
        upto: LogId,
        patterns: &[String],
        reset: bool,
    ) -> Result<usize> {
        let parsed: Vec<Pattern> = patterns
            .iter()
            .filter_map(|p| Pattern::new(p).ok())
            .collect();
        let store = &self.inner.store;
        store.write(|tx| {
            let mut n = 0;
            for p in &parsed {
                n += self.delete_matching_in(tx, p, None)?;
            }
            index::set_sync_position(tx, scope, epoch, upto, reset)
                .map_err(|e| store.index.wrap(e))?;
            Ok(n)
        })
    }

    /// The oldest invalidations of `scope` still waiting in the outbox.
    pub(crate) fn outbox_peek(&self, scope: &str, limit: i64) -> Result<Vec<(i64, String)>> {
        self.inner
            .store
            .index
            .read(|c| index::outbox_peek(c, scope, limit))
    }

    /// Outbox row `seq` reached the shared tier as log entry `id` (right
    /// after `prev`): drop its matches created before it again (a
    /// read-through may have backfilled an old copy before the shared one
    /// went; later puts stay), remove the row, and, when this root had
    /// applied the log exactly up to `prev`, move its position past its own
    /// entry (nothing to replay there). One transaction.
    pub(crate) fn outbox_published(
        &self,
        scope: &str,
        seq: i64,
        epoch: &str,
        prev: LogId,
        id: LogId,
    ) -> Result<()> {
        let store = &self.inner.store;
        let w = |e| store.index.wrap(e);
        store.write(|tx| {
            if let Some((pattern, created_at)) = index::outbox_row(tx, seq).map_err(w)? {
                if let Ok(p) = Pattern::new(&pattern) {
                    self.delete_matching_in(tx, &p, Some(created_at))?;
                }
            }
            index::outbox_remove(tx, seq).map_err(w)?;
            if let Some((e, pos)) = index::sync_position(tx, scope).map_err(w)? {
                if e == epoch && pos == prev {
                    index::set_sync_position(tx, scope, epoch, id, false).map_err(w)?;
                }
            }
            Ok(())
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
