//! Keeping the disk bounded: size-capped eviction (expired first, then least
//! recently used), admission control, orphan collection and verification.
//!
//! Eviction walks the `entries_by_expiry` and `entries_by_access` indexes
//! from the cold end and stops as soon as the cache is under the low
//! watermark: its cost grows with what it removes, not with the cache.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::base::config::{Config, OnFull};
use crate::base::error::{Error, Result};
use crate::cache::Cache;
use crate::disk::blob::codec;
use crate::disk::blob::files::{BLOBS_DIR, TMP_DIR};
use crate::disk::blob::Digest;
use crate::disk::index::{self, totals};
use crate::disk::stats::names;

/// Temp files younger than this are in-flight writes of some process and
/// are never collected, whatever grace period a caller asks for.
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(15 * 60);

/// Victims fetched per query during eviction.
const CHUNK: usize = 512;

/// How long one eviction transaction may hold the write lock. Longer
/// amortises page writes better (measured: 200 ms → 1 s cut the 100k-of-1M
/// pass by a third); other writers wait at most this long.
const TXN_BUDGET: Duration = Duration::from_secs(1);

/// Progress callback: (done, total); total is 0 when unknown.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// What an eviction pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EvictionReport {
    pub entries_removed: u64,
    pub expired_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub bytes_removed: u64,
    pub max_bytes: u64,
    pub high_watermark_bytes: u64,
    pub low_watermark_bytes: u64,
    pub elapsed_ms: u64,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GcReport {
    pub orphan_files_removed: u64,
    pub orphan_bytes_removed: u64,
    pub temp_files_removed: u64,
    /// Files in blobs-v1 whose names are not digests (left alone).
    pub foreign_files: u64,
    pub elapsed_ms: u64,
}

/// One problem verification found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// Stored bytes do not hash to the blob's name (flipped bit, truncation).
    CorruptBlob { hash: String },
    /// A file blob's file is missing.
    MissingBlob { hash: String },
    /// refs differs from the number of entries pointing at the blob.
    WrongRefcount {
        hash: String,
        refs: i64,
        actual: i64,
    },
    /// An entry points at no blob row.
    DanglingEntry { key: String },
    /// A running total differs from the sum it stands for.
    WrongTotal {
        name: String,
        recorded: i64,
        actual: i64,
    },
}

/// What verification found and, with repair, fixed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub blobs_checked: u64,
    pub entries_checked: u64,
    pub problems: Vec<Problem>,
    pub repaired: bool,
    /// Keys that lost their value during repair.
    pub keys_dropped: Vec<String>,
    pub elapsed_ms: u64,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Admission control: called by `put` before it writes.
pub(crate) fn admit(cache: &Cache, config: &Config, incoming: u64) -> Result<()> {
    let Some(limit) = config.cache.hard_limit else {
        return Ok(());
    };
    let idx = &cache.inner.store.index;
    let current = idx.read(index::disk_bytes)?;
    if current + incoming <= limit.0 {
        return Ok(());
    }
    match config.cache.on_full {
        OnFull::Reject => Err(Error::Full {
            stored: current,
            limit: limit.0,
        }),
        OnFull::Evict => {
            let low = (limit.0 as f64 * config.cache.low_watermark) as u64;
            cache.evict_to(low.saturating_sub(incoming), None)?;
            let now_stored = idx.read(index::disk_bytes)?;
            if now_stored + incoming > limit.0 {
                return Err(Error::Full {
                    stored: now_stored,
                    limit: limit.0,
                });
            }
            Ok(())
        }
    }
}

fn since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

impl Cache {
    /// Bytes charged against the cap: encoded blobs plus each entry's index
    /// cost (see `index::disk_bytes`).
    ///
    /// # Errors
    /// A storage error.
    pub fn disk_bytes(&self) -> Result<u64> {
        self.inner.store.index.read(index::disk_bytes)
    }

    /// One eviction pass against the configured cap: when the cache is above
    /// the high watermark, removes expired entries, then least recently used
    /// ones, until it is at or below the low watermark.
    ///
    /// # Errors
    /// A storage error; what was removed before it stays removed.
    pub fn evict(&self) -> Result<EvictionReport> {
        self.evict_with(None, None)
    }

    /// Eviction with an explicit cap (`None`: the configured `max_size`).
    ///
    /// # Errors
    /// As [`Cache::evict`].
    pub fn evict_with(
        &self,
        max_bytes: Option<u64>,
        progress: Option<Progress<'_>>,
    ) -> Result<EvictionReport> {
        let config = self.config();
        let max = max_bytes.unwrap_or(config.cache.max_size.0);
        let high = (max as f64 * config.cache.high_watermark) as u64;
        let low = (max as f64 * config.cache.low_watermark) as u64;
        let before = self.disk_bytes()?;
        let mut report = if before > high {
            self.evict_to(low, progress)?
        } else {
            EvictionReport {
                bytes_before: before,
                bytes_after: before,
                ..Default::default()
            }
        };
        report.max_bytes = max;
        report.high_watermark_bytes = high;
        report.low_watermark_bytes = low;
        tracing::info!(
            removed = report.entries_removed,
            expired = report.expired_removed,
            bytes_removed = report.bytes_removed,
            before = report.bytes_before,
            after = report.bytes_after,
            ms = report.elapsed_ms,
            "eviction pass"
        );
        Ok(report)
    }

    /// Removes entries (expired first, then least recently used) until the
    /// bytes charged against the cap are at most `target`, whatever the
    /// watermarks say.
    ///
    /// # Errors
    /// A storage error; what was removed before it stays removed.
    pub fn evict_to_bytes(&self, target: u64) -> Result<EvictionReport> {
        self.evict_to(target, None)
    }

    pub(crate) fn evict_to(
        &self,
        target: u64,
        progress: Option<Progress<'_>>,
    ) -> Result<EvictionReport> {
        let start = Instant::now();
        self.flush()?; // LRU order includes this process's batched reads
        let store = &self.inner.store;
        let idx = &store.index;
        let w = |e| idx.wrap(e);
        let now = self.now();
        let before = self.disk_bytes()?;
        let mut report = EvictionReport {
            bytes_before: before,
            ..Default::default()
        };
        let total_to_free = before.saturating_sub(target);
        loop {
            // Each transaction deletes for up to TXN_BUDGET, then commits so
            // other writers get in; within it, pages touched by many deletes
            // are written to the WAL once (random LRU deletes touch most pages).
            let (done, removed, expired) = store.write(|tx| {
                let started = Instant::now();
                let (mut removed, mut expired, mut freed_total) = (0u64, 0u64, 0u64);
                let mut size = index::disk_bytes(tx).map_err(w)?;
                let done = loop {
                    if size <= target {
                        break true;
                    }
                    let victims = victims(tx, now, CHUNK).map_err(w)?;
                    if victims.is_empty() {
                        break true;
                    }
                    let keys: Vec<String> = victims.iter().map(|(k, _)| k.clone()).collect();
                    let (n, freed) = store.delete_until(tx, &keys, size - target)?;
                    expired += victims[..n].iter().filter(|(_, e)| *e).count() as u64;
                    removed += n as u64;
                    freed_total += freed;
                    size = size.saturating_sub(freed);
                    if started.elapsed() >= TXN_BUDGET {
                        break size <= target;
                    }
                };
                index::bump(tx, names::EVICTED_ENTRIES, removed as i64).map_err(w)?;
                index::bump(tx, names::EVICTED_BYTES, freed_total as i64).map_err(w)?;
                Ok((done, removed, expired))
            })?;
            report.entries_removed += removed;
            report.expired_removed += expired;
            if let Some(p) = progress {
                p(
                    before.saturating_sub(self.disk_bytes()?).min(total_to_free),
                    total_to_free,
                );
            }
            if done {
                break;
            }
        }
        // Give freed pages back to the file system.
        idx.write(|tx| tx.execute_batch("PRAGMA incremental_vacuum").map_err(w))?;
        report.bytes_after = self.disk_bytes()?;
        report.bytes_removed = before.saturating_sub(report.bytes_after);
        report.elapsed_ms = since(start);
        Ok(report)
    }

    /// Removes orphan blob files (no index row) older than `cleanup.gc_grace`
    /// and temp files older than that and at least [`TEMP_MIN_AGE`]. An orphan is unlinked only inside a write
    /// transaction that sees no row for it, so a concurrent writer that
    /// re-uses the blob either commits first (and the file stays) or finds
    /// the file gone inside its own transaction and rewrites it.
    ///
    /// # Errors
    /// A storage error.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with(None, None)
    }

    /// GC with an explicit grace period and a progress callback.
    ///
    /// # Errors
    /// As [`Cache::gc`].
    pub fn gc_with(
        &self,
        grace: Option<Duration>,
        progress: Option<Progress<'_>>,
    ) -> Result<GcReport> {
        let start = Instant::now();
        let grace = grace.unwrap_or(self.config().cleanup.gc_grace.0);
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let old = |m: &std::fs::Metadata| m.modified().is_ok_and(|t| t <= cutoff);
        let temp_cutoff = SystemTime::now()
            .checked_sub(grace.max(TEMP_MIN_AGE))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = GcReport::default();
        let root = self.root().to_path_buf();

        for e in read_dir(&root.join(TMP_DIR))? {
            let m = e.1;
            let old_temp = m.modified().is_ok_and(|t| t <= temp_cutoff);
            if m.is_file() && old_temp && std::fs::remove_file(&e.0).is_ok() {
                report.temp_files_removed += 1;
            }
        }
        let mut candidates: Vec<(Digest, u64)> = Vec::new();
        let shards = read_dir(&root.join(BLOBS_DIR))?;
        let total = shards.len() as u64;
        for (i, (shard, m)) in shards.into_iter().enumerate() {
            if !m.is_dir() {
                report.foreign_files += 1;
                continue;
            }
            let prefix = shard
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            for (file, fm) in read_dir(&shard)? {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                match Digest::from_hex(&format!("{prefix}{name}")) {
                    Some(d) if fm.is_file() => {
                        if old(&fm) {
                            candidates.push((d, fm.len()));
                        }
                    }
                    _ => report.foreign_files += 1,
                }
            }
            if let Some(p) = progress {
                p(i as u64 + 1, total);
            }
        }
        let store = &self.inner.store;
        for chunk in candidates.chunks(256) {
            let (n, bytes) = store.index.write(|tx| {
                let (mut n, mut bytes) = (0u64, 0u64);
                for (d, len) in chunk {
                    if index::find_blob(tx, d)
                        .map_err(|e| store.index.wrap(e))?
                        .is_none()
                    {
                        store.files.remove(d)?;
                        n += 1;
                        bytes += len;
                    }
                }
                Ok((n, bytes))
            })?;
            report.orphan_files_removed += n;
            report.orphan_bytes_removed += bytes;
        }
        report.elapsed_ms = since(start);
        tracing::info!(
            orphans = report.orphan_files_removed,
            bytes = report.orphan_bytes_removed,
            temp = report.temp_files_removed,
            "gc pass"
        );
        Ok(report)
    }

    /// Checks every blob against its name, every row's blob, refcounts and
    /// running totals. With `repair`, quarantines bad blobs, drops rows that
    /// point at nothing, fixes refcounts and totals.
    ///
    /// # Errors
    /// A storage error (problems in the data are reported, not errors).
    pub fn verify(&self, repair: bool, progress: Option<Progress<'_>>) -> Result<VerifyReport> {
        let start = Instant::now();
        self.flush()?;
        let store = &self.inner.store;
        let idx = &store.index;
        let w = |e| idx.wrap(e);
        let mut report = VerifyReport {
            repaired: repair,
            ..Default::default()
        };

        // 1. Every blob hashes to its name.
        let blobs: Vec<(i64, Digest, u64, u64, i64, bool)> = idx.read(|c| {
            let mut st =
                c.prepare("SELECT id, hash, size, stored_size, codec, data IS NULL FROM blobs")?;
            let rows = st.query_map([], |r| {
                let h: Vec<u8> = r.get(1)?;
                Ok((
                    r.get(0)?,
                    Digest::from_slice(&h).unwrap_or(Digest([0; 32])),
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect()
        })?;
        let total = blobs.len() as u64;
        let mut bad = Vec::new();
        for (i, (id, hash, size, stored_size, codec, is_file)) in blobs.into_iter().enumerate() {
            report.blobs_checked += 1;
            let stored = if is_file {
                store.files.read(&hash, stored_size)?
            } else {
                idx.read(|c| {
                    c.query_row("SELECT data FROM blobs WHERE id = ?1", [id], |r| {
                        r.get::<_, Option<Vec<u8>>>(0)
                    })
                    .optional()
                    .map(Option::flatten)
                })?
            };
            let ok = match (&stored, codec::Codec::from_i64(codec)) {
                (Some(b), Some(c)) => {
                    b.len() as u64 == stored_size && codec::decode(c, b, size, &hash).is_some()
                }
                _ => false,
            };
            if !ok {
                report.problems.push(match stored {
                    None => Problem::MissingBlob {
                        hash: hash.to_hex(),
                    },
                    Some(_) => Problem::CorruptBlob {
                        hash: hash.to_hex(),
                    },
                });
                bad.push((id, hash, stored));
            }
            if let Some(p) = progress {
                p(i as u64 + 1, total);
            }
        }

        // 2. Refcounts, dangling entries, totals.
        let (refs, dangling, totals_now) = idx.read(|c| {
            let mut st = c.prepare(
                "SELECT b.hash, b.refs, (SELECT COUNT(*) FROM entries e WHERE e.blob_id = b.id) FROM blobs b",
            )?;
            let refs: Vec<(Vec<u8>, i64, i64)> =
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
            let mut st = c.prepare(
                "SELECT e.key FROM entries e LEFT JOIN blobs b ON b.id = e.blob_id WHERE b.id IS NULL",
            )?;
            let dangling: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            let totals_now = actual_totals(c)?;
            Ok((refs, dangling, totals_now))
        })?;
        report.entries_checked = totals_now[totals::ENTRIES] as u64;
        for (h, recorded, actual) in &refs {
            if recorded != actual {
                let hash = Digest::from_slice(h)
                    .map(|d| d.to_hex())
                    .unwrap_or_default();
                report.problems.push(Problem::WrongRefcount {
                    hash,
                    refs: *recorded,
                    actual: *actual,
                });
            }
        }
        for key in &dangling {
            report
                .problems
                .push(Problem::DanglingEntry { key: key.clone() });
        }
        let recorded = idx.read(|c| {
            [
                totals::ENTRIES,
                totals::STORED_BYTES,
                totals::LOGICAL_BYTES,
                totals::FILE_BYTES,
                totals::KEY_BYTES,
            ]
            .into_iter()
            .map(|n| Ok((n, index::counter(c, n)?)))
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        for (name, value) in recorded {
            if totals_now[name] != value {
                report.problems.push(Problem::WrongTotal {
                    name: name.into(),
                    recorded: value,
                    actual: totals_now[name],
                });
            }
        }

        if repair && !report.is_clean() {
            let now = self.now();
            for (id, hash, _) in bad {
                // Re-checked inside the write lock: the scan ran outside any
                // transaction, so the blob may have been released, healed or
                // its id reused since.
                let keys = store.write(|tx| {
                    let row: Option<BlobRow> = tx
                        .query_row(
                            "SELECT hash, size, stored_size, codec, data FROM blobs WHERE id = ?1",
                            [id],
                            |r| {
                                Ok((
                                    r.get(0)?,
                                    r.get::<_, i64>(1)? as u64,
                                    r.get::<_, i64>(2)? as u64,
                                    r.get(3)?,
                                    r.get(4)?,
                                ))
                            },
                        )
                        .optional()
                        .map_err(w)?;
                    let Some((h, size, stored_size, codec, inline)) = row else {
                        return Ok(Vec::new());
                    };
                    if h != hash.0 {
                        return Ok(Vec::new());
                    }
                    let bytes = match inline {
                        Some(b) => Some(b),
                        None => store.files.read(&hash, stored_size)?,
                    };
                    let still_bad = match (&bytes, codec::Codec::from_i64(codec)) {
                        (Some(b), Some(c)) => {
                            b.len() as u64 != stored_size
                                || codec::decode(c, b, size, &hash).is_none()
                        }
                        _ => true,
                    };
                    if !still_bad {
                        return Ok(Vec::new());
                    }
                    if let Some(b) = &bytes {
                        store.files.quarantine(&hash, Some(b), now)?;
                    }
                    let keys = index::keys_of_blob(tx, id).map_err(w)?;
                    for k in &keys {
                        index::delete_entry(tx, k).map_err(w)?;
                    }
                    tx.execute("DELETE FROM blobs WHERE id = ?1", [id])
                        .map_err(w)?;
                    store.defer_unlink(hash);
                    index::bump(tx, crate::disk::store::CORRUPT_BLOBS, 1).map_err(w)?;
                    Ok(keys)
                })?;
                report.keys_dropped.extend(keys);
            }
            store.write(|tx| {
                for key in &dangling {
                    index::delete_entry(tx, key).map_err(w)?;
                }
                tx.execute_batch(
                    "UPDATE blobs SET refs = (SELECT COUNT(*) FROM entries e WHERE e.blob_id = blobs.id);",
                )
                .map_err(w)?;
                // Blobs nothing references any more.
                let unreferenced: Vec<(Vec<u8>, bool)> = {
                    let mut st = tx.prepare("SELECT hash, data IS NULL FROM blobs WHERE refs = 0").map_err(w)?;
                    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(w)?;
                    rows.collect::<rusqlite::Result<_>>().map_err(w)?
                };
                tx.execute("DELETE FROM blobs WHERE refs = 0", []).map_err(w)?;
                for (h, is_file) in unreferenced {
                    if let (true, Some(d)) = (is_file, Digest::from_slice(&h)) {
                        store.defer_unlink(d);
                    }
                }
                let t = actual_totals(tx).map_err(w)?;
                for (name, value) in t {
                    index::set_counter(tx, name, value).map_err(w)?;
                }
                Ok(())
            })?;
            report.keys_dropped.extend(dangling);
        }
        report.elapsed_ms = since(start);
        Ok(report)
    }
}

/// hash, size, stored_size, codec, inline data.
type BlobRow = (Vec<u8>, u64, u64, i64, Option<Vec<u8>>);

/// The true values of the running totals, computed by scanning.
fn actual_totals(c: &rusqlite::Connection) -> rusqlite::Result<HashMap<&'static str, i64>> {
    let (entries, logical): (i64, i64) = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(b.size), 0) FROM entries e JOIN blobs b ON b.id = e.blob_id",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (stored, files): (i64, i64) = c.query_row(
        "SELECT COALESCE(SUM(stored_size), 0), COALESCE(SUM(CASE WHEN data IS NULL THEN stored_size END), 0) FROM blobs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let keys: i64 = c.query_row(
        "SELECT COALESCE(SUM(length(CAST(key AS BLOB))), 0) FROM entries",
        [],
        |r| r.get(0),
    )?;
    Ok(HashMap::from([
        (totals::KEY_BYTES, keys),
        (totals::ENTRIES, entries),
        (totals::LOGICAL_BYTES, logical),
        (totals::STORED_BYTES, stored),
        (totals::FILE_BYTES, files),
    ]))
}

/// The next eviction victims: expired entries (oldest expiry first), then
/// least recently used. Both walk an index from its cold end.
fn victims(
    c: &rusqlite::Connection,
    now: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(String, bool)>> {
    let mut st = c.prepare_cached(
        "SELECT key FROM entries WHERE expires_at <= ?1 ORDER BY expires_at, key LIMIT ?2",
    )?;
    let expired: Vec<String> = st
        .query_map(rusqlite::params![now, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !expired.is_empty() {
        return Ok(expired.into_iter().map(|k| (k, true)).collect());
    }
    let mut st = c.prepare_cached("SELECT key FROM entries ORDER BY last_access, key LIMIT ?1")?;
    let lru: Vec<String> = st
        .query_map([limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(lru.into_iter().map(|k| (k, false)).collect())
}

fn read_dir(dir: &std::path::Path) -> Result<Vec<(std::path::PathBuf, std::fs::Metadata)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|err| Error::io(dir, err))?;
        // symlink_metadata: never follow links out of the root.
        if let Ok(m) = std::fs::symlink_metadata(e.path()) {
            out.push((e.path(), m));
        }
    }
    Ok(out)
}
