//! Size-capped eviction: expired entries first, then least recently used.
//!
//! Eviction walks the `entries_by_expiry` and `entries_by_access` indexes
//! from the cold end and stops as soon as the store is at its target: its
//! cost grows with what it removes, not with the cache.
//!
//! "Expired" is the effective expiry ([`crate::base::policy::Classes::effective_expiry`]):
//! besides rows whose stored `expires_at` has passed, an entry of a class
//! with an open TTL window is expired once `created_at + window ttl` has
//! passed. Those are found per open class through `entries_by_class_created`
//! (class, created_at), oldest first, after the stored-expiry ones.

use std::time::{Duration, Instant};

use super::{since, EvictionReport, Progress};
use crate::base::clock::Millis;
use crate::base::error::Result;
use crate::base::names;
use crate::disk::index;
use crate::disk::reserve;
use crate::disk::store::Store;

/// Victims fetched per query during eviction.
const CHUNK: usize = 512;

/// Victims per transaction on a full disk.
const TIGHT_CHUNK: usize = 64;

/// How long one eviction transaction may hold the write lock. Longer
/// amortises page writes better (measured: 200 ms → 1 s cut the 100k-of-1M
/// pass by a third); other writers wait at most this long.
const TXN_BUDGET: Duration = Duration::from_secs(1);

/// Removes entries (expired first, then least recently used) until the
/// bytes charged against the cap are at most `target`. The caller flushes
/// batched access records first, so LRU order includes them.
///
/// # Errors
/// A storage error; what was removed before it stays removed.
pub(crate) fn evict_to(
    store: &Store,
    target: u64,
    now: Millis,
    windows: &[(String, i64)],
    progress: Option<Progress<'_>>,
) -> Result<EvictionReport> {
    let start = Instant::now();
    let idx = &store.index;
    let w = |e| idx.wrap(e);
    let disk_bytes = || idx.read(index::disk_bytes);
    let before = disk_bytes()?;
    let mut report = EvictionReport {
        bytes_before: before,
        ..Default::default()
    };
    let total_to_free = before.saturating_sub(target);
    // On a full disk (a pass failed for want of room), the reserve is
    // released and each transaction deletes one small chunk, so its WAL
    // frames fit in the reserve and the files it frees give room back.
    let mut tight = false;
    loop {
        // Each transaction deletes for up to TXN_BUDGET, then commits so
        // other writers get in; within it, pages touched by many deletes
        // are written to the WAL once (random LRU deletes touch most pages).
        let pass = |tx: &rusqlite::Transaction<'_>| {
            let started = Instant::now();
            let (mut removed, mut expired, mut freed_total) = (0u64, 0u64, 0u64);
            let mut size = index::disk_bytes(tx).map_err(w)?;
            let chunk = if tight { TIGHT_CHUNK } else { CHUNK };
            let done = loop {
                if size <= target {
                    break true;
                }
                let victims = victims(tx, now, windows, chunk).map_err(w)?;
                if victims.is_empty() {
                    break true;
                }
                let expired_now = victims.iter().filter(|v| v.2).count();
                let keys = victims.iter().map(|(k, b, _)| (k.as_str(), Some(*b)));
                let (n, freed) = store.delete_until(tx, keys, size - target)?;
                // Expired victims come first, all of them or none.
                expired += n.min(expired_now) as u64;
                removed += n as u64;
                freed_total += freed;
                size = size.saturating_sub(freed);
                if tight || started.elapsed() >= TXN_BUDGET {
                    break size <= target;
                }
            };
            index::bump(tx, names::EVICTED_ENTRIES, removed as i64).map_err(w)?;
            index::bump(tx, names::EVICTED_BYTES, freed_total as i64).map_err(w)?;
            Ok((done, removed, expired))
        };
        let (done, removed, expired) = match store.write(pass) {
            Err(e) if reserve::is_full(&e) && (!tight || store.reserve.release()) => {
                if !tight {
                    store.reserve.release();
                }
                tight = true;
                continue;
            }
            other => other?,
        };
        report.entries_removed += removed;
        report.expired_removed += expired;
        if let Some(p) = progress {
            p(
                before.saturating_sub(disk_bytes()?).min(total_to_free),
                total_to_free,
            );
        }
        if done {
            break;
        }
    }
    // Give freed pages back to the file system (best effort on a full disk:
    // the entries are gone either way).
    match idx.write(|tx| tx.execute_batch("PRAGMA incremental_vacuum").map_err(w)) {
        Err(e) if reserve::is_full(&e) => {
            tracing::warn!(error = %e, "disk full: index not shrunk after eviction")
        }
        other => other?,
    }
    if tight {
        store.reserve.ensure();
    }
    report.bytes_after = disk_bytes()?;
    report.bytes_removed = before.saturating_sub(report.bytes_after);
    report.elapsed_ms = since(start);
    Ok(report)
}

/// The next eviction victims: expired entries (oldest expiry first), then
/// entries expired by an open TTL window (`windows`: class, window ttl ms;
/// oldest first), then least recently used. All walk an index from its
/// cold end.
fn victims(
    c: &rusqlite::Connection,
    now: i64,
    windows: &[(String, i64)],
    limit: usize,
) -> rusqlite::Result<Vec<(String, i64, bool)>> {
    let mut st = c.prepare_cached(
        "SELECT key, blob_id FROM entries WHERE expires_at <= ?1 ORDER BY expires_at, key LIMIT ?2",
    )?;
    let expired: Vec<(String, i64)> = st
        .query_map(rusqlite::params![now, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if !expired.is_empty() {
        return Ok(expired.into_iter().map(|(k, b)| (k, b, true)).collect());
    }
    let mut st = c.prepare_cached(
        "SELECT key, blob_id FROM entries WHERE class = ?1 AND created_at <= ?2 \
         ORDER BY created_at, key LIMIT ?3",
    )?;
    for (class, ttl_ms) in windows {
        let cutoff = now.saturating_sub(*ttl_ms);
        let expired: Vec<(String, i64)> = st
            .query_map(rusqlite::params![class, cutoff, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        if !expired.is_empty() {
            return Ok(expired.into_iter().map(|(k, b)| (k, b, true)).collect());
        }
    }
    let mut st =
        c.prepare_cached("SELECT key, blob_id FROM entries ORDER BY last_access, key LIMIT ?1")?;
    let lru: Vec<(String, i64)> = st
        .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(lru.into_iter().map(|(k, b)| (k, b, false)).collect())
}
