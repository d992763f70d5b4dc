//! The read path: key → hot map → L1 (by the blob hash the index names) →
//! disk → verify → shared tier; fresh only unless asked for stale.

use std::cell::RefCell;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{plug::Remote, Cache, Entry, Meta};
use crate::base::clock::Millis;
use crate::base::config::Consistency;
use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::names::{self, Tier};
use crate::base::policy::Freshness;
use crate::disk::blob::Digest;
use crate::disk::index::{self, Row};
use crate::disk::store::EntryFields;

impl Cache {
    /// The value of `key` if it is fresh; `Ok(None)` for missing or expired.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] or a storage error. A corrupt blob is not an
    /// error: it is quarantined and the get is a miss.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let start = std::time::Instant::now();
        crate::base::key::check(key)?;
        let now = self.now();
        let generation = self.inner.hot.sync(&self.inner.store.index)?;
        // Unconfirmed local entries take the counted (or refused) path below.
        let hot = match self.unconfirmed() {
            None => self.hot_get(key, now),
            Some(_) => None,
        };
        let out = match hot {
            Some(b) => Some(b),
            None => self
                .read_at(key, now, false, Some(generation))?
                .map(|(_, b)| b),
        };
        self.inner.latency.get.observe(start.elapsed());
        Ok(out)
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
        Ok(read.map(|r| Meta::from_row(self.effective(r.row, now), now)))
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
                self.finish_read(key.as_str(), read, now, false, &l1_hits)
                    .map(|(_, b)| b),
            );
        }
        Ok(out)
    }

    /// Entries in the last `fraction` of their (effective) TTL at `now` —
    /// or expiring within `lead` ms, so a TTL shorter than the daemon's pass
    /// interval is still refreshed before it runs out — not yet expired,
    /// with at least `min_hits` recorded reads, soonest expiry first, at
    /// most `limit` (the daemon's refresh-ahead). Walks
    /// `entries_by_expiry` from `now` upward, and for classes with an open
    /// TTL window `entries_by_class_created`.
    ///
    /// # Errors
    /// A storage error.
    pub(crate) fn expiring_hot(
        &self,
        now: Millis,
        min_hits: u64,
        fraction: f64,
        lead: Millis,
        limit: usize,
    ) -> Result<Vec<Meta>> {
        let windows = self.classes().open_windows(now);
        let rows = self.inner.store.index.read(|c| {
            let mut keys: Vec<String> = Vec::new();
            let mut st = c.prepare_cached(
                "SELECT key FROM entries WHERE expires_at > ?1 AND hits >= ?2 \
                 AND (expires_at - ?1) <= MAX(CAST((expires_at - created_at) * ?3 AS INTEGER), ?5) \
                 ORDER BY expires_at, key LIMIT ?4",
            )?;
            let found = st.query_map(
                rusqlite::params![now, min_hits as i64, fraction, limit as i64, lead],
                |r| r.get::<_, String>(0),
            )?;
            for k in found {
                keys.push(k?);
            }
            let mut st = c.prepare_cached(
                "SELECT key FROM entries WHERE class = ?1 AND created_at > ?2 AND hits >= ?3 \
                 ORDER BY created_at, key LIMIT ?4",
            )?;
            for (class, ttl) in &windows {
                let found = st.query_map(
                    rusqlite::params![class, now - ttl, min_hits as i64, limit as i64],
                    |r| r.get::<_, String>(0),
                )?;
                for k in found {
                    keys.push(k?);
                }
            }
            let mut rows = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(f) = index::lookup(c, &k, &|_| false)? {
                    rows.push(f.row);
                }
            }
            Ok(rows)
        })?;
        let mut out: Vec<Meta> = rows
            .into_iter()
            .map(|r| Meta::from_row(self.effective(r, now), now))
            .filter(|m| {
                let ttl = (m.expires_at - m.created_at).max(0) as f64;
                let left = m.expires_at - now;
                m.freshness.is_fresh() && (left <= lead || (left as f64) <= ttl * fraction)
            })
            .collect();
        out.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.key.cmp(&b.key)));
        out.dedup_by(|a, b| a.key == b.key);
        out.truncate(limit);
        Ok(out)
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
        if !allow_stale && !Freshness::at(self.expiry_of(row, now), now).is_fresh() {
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

    /// The effective expiry of `row` at `now` (TTL windows applied): the
    /// one rule of [`crate::base::policy::Classes::effective_expiry`].
    pub(crate) fn expiry_of(&self, row: &Row, now: Millis) -> Millis {
        self.classes()
            .effective_expiry(&row.class, row.created_at, row.expires_at, now)
    }

    /// `row` with its effective expiry at `now` in `expires_at`.
    pub(crate) fn effective(&self, mut row: Row, now: Millis) -> Row {
        row.expires_at = self.expiry_of(&row, now);
        row
    }

    /// A repeated get answered from the hot map and L1, without the index.
    /// The caller has synced the hot map. The hot map does not hold
    /// `created_at`, so while a TTL window of the entry's class is open
    /// (by the configuration in force now, which hot reload swaps) the
    /// read goes to the index, where the effective expiry is computed.
    fn hot_get(&self, key: &str, now: Millis) -> Option<Bytes> {
        let e = self.inner.hot.get(key)?;
        if !Freshness::at(e.expires_at, now).is_fresh()
            || self.classes().open_window_ttl(&e.class, now).is_some()
        {
            return None;
        }
        let bytes = self.inner.l1.get(&e.hash)?;
        let hit = Some((Tier::Memory, &*e.class));
        if self
            .inner
            .recorder
            .access(key, hit, Some(e.last_access), now)
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
        self.read_at(key.as_str(), now, allow_stale, None)
    }

    /// As [`Cache::read`]; a fresh result is remembered in the hot map if
    /// `generation` (from a sync before the read) is still current then.
    fn read_at(
        &self,
        key: &str,
        now: Millis,
        allow_stale: bool,
        generation: Option<u64>,
    ) -> Result<Option<(Row, Bytes)>> {
        let l1_hits = RefCell::new(Vec::new());
        let read = self.inner.store.read(key, now, |row| {
            self.want_bytes(row, now, allow_stale, &l1_hits)
        })?;
        let out = self.finish_read(key, read, now, allow_stale, &l1_hits.into_inner());
        if let (Some(g), Some((row, _))) = (generation, &out) {
            if Freshness::at(row.expires_at, now).is_fresh()
                && self.classes().open_window_ttl(&row.class, now).is_none()
            {
                let e = crate::disk::hot::HotEntry {
                    hash: row.hash,
                    expires_at: row.expires_at,
                    class: row.class.as_str().into(),
                    last_access: row.last_access,
                };
                self.inner.hot.insert(key, e, g);
            }
        }
        Ok(out)
    }

    fn finish_read(
        &self,
        key: &str,
        read: Option<crate::disk::store::Read>,
        now: Millis,
        allow_stale: bool,
        l1_hits: &[(Digest, Bytes, Tier)],
    ) -> Option<(Row, Bytes)> {
        let redis = |allow_stale| self.read_through(key, now, allow_stale);
        let Some(mut read) = read else {
            if let Some(hit) = redis(allow_stale) {
                return Some(hit);
            }
            self.count_miss(self.classes().class_of(key), now);
            return None;
        };
        read.row.expires_at = self.expiry_of(&read.row, now);
        let fresh = Freshness::at(read.row.expires_at, now).is_fresh();
        if let Some(hit) = (!fresh).then(|| redis(false)).flatten() {
            return Some(hit);
        }
        if !fresh && !allow_stale {
            self.count_miss(&read.row.class, now);
            return None;
        }
        match self.unconfirmed() {
            None => {}
            // Strict: the local copy may have been withdrawn elsewhere; only
            // the shared tier's current copy may answer.
            Some(Consistency::Strict) => {
                if let Some(hit) = fresh.then(|| redis(allow_stale)).flatten() {
                    return Some(hit);
                }
                self.count_miss(&read.row.class, now);
                return None;
            }
            Some(Consistency::Available) => self.count(names::redis("unconfirmed_reads"), 1),
        }
        let (tier, bytes) = match read.bytes {
            Some(b) => {
                if self.inner.door.admit(&read.row.hash, b.len()) {
                    self.inner.l1.insert(read.row.hash, b.clone());
                    if let Some(t) = &self.inner.tier {
                        t.insert(&read.row.hash, &b);
                    }
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
            .access(key, hit, Some(read.row.last_access), now)
        {
            self.flush_soon();
        }
        Some((read.row, bytes))
    }

    /// `None` while local entries are confirmed against the shared
    /// invalidation log (or there is no shared tier); otherwise the
    /// configured treatment of unconfirmed entries.
    pub(crate) fn unconfirmed(&self) -> Option<Consistency> {
        let shared = self.inner.shared.as_ref()?;
        if shared.confirmed() {
            return None;
        }
        Some(self.config().redis.consistency)
    }

    /// Looks `key` up in the shared tier after a local miss (or a stale
    /// local copy). A usable copy is backfilled into the local store with
    /// its own metadata (never written back through) and returned with the
    /// row it now has.
    fn read_through(&self, key: &str, now: Millis, allow_stale: bool) -> Option<(Row, Bytes)> {
        let shared = self.inner.shared.as_ref()?;
        let key = &Key::checked(key);
        let remote = shared.read(key, now, allow_stale)?;
        let expires_at = self.classes().effective_expiry(
            &remote.class,
            remote.created_at,
            remote.expires_at,
            now,
        );
        let fresh = Freshness::at(expires_at, now).is_fresh();
        if !fresh && !allow_stale {
            return None;
        }
        self.backfill(key, &remote);
        if !shared.still_valid(key, &remote) {
            // Invalidated while it was on its way here: not served, not kept.
            if let Err(e) = self.inner.store.delete(&[key.as_str().to_owned()]) {
                tracing::warn!(key = key.as_str(), error = %e, "could not drop a raced backfill");
            }
            return None;
        }
        let row = Row {
            key: key.as_str().to_owned(),
            blob_id: -1,
            hash: remote.hash,
            class: remote.class,
            size: remote.value.len() as u64,
            stored_size: remote.value.len() as u64,
            codec: crate::disk::blob::codec::Codec::Raw,
            created_at: remote.created_at,
            expires_at,
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
