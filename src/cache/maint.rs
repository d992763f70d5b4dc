//! The maintenance operations as `Cache` methods: admission control,
//! eviction, gc and verification over the store ([`crate::maint`]).

use std::time::Duration;

use super::Cache;
use crate::base::config::{Config, OnFull};
use crate::base::error::{Error, Result};
use crate::disk::index;
use crate::maint::{
    evict, gc, recover, verify, EvictionReport, GcReport, Progress, RecoverReport, VerifyReport,
};

impl Cache {
    /// Admission control: called by `put` before it writes.
    pub(crate) fn admit(&self, config: &Config, incoming: u64) -> Result<()> {
        let Some(limit) = config.cache.hard_limit else {
            return Ok(());
        };
        let idx = &self.inner.store.index;
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
                self.evict_to(low.saturating_sub(incoming), None)?;
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
        // LRU order includes this process's batched reads; on a full disk
        // they wait (eviction is what makes room for them).
        match self.flush() {
            Err(e) if crate::disk::reserve::is_full(&e) => {
                tracing::warn!(error = %e, "disk full: access records not flushed before eviction")
            }
            other => other?,
        }
        let now = self.now();
        let windows = self.classes().open_windows(now);
        evict::evict_to(&self.inner.store, target, now, &windows, progress)
    }

    /// Removes orphan blob files (no index row) older than `cleanup.gc_grace`
    /// and temp files older than that and at least 15 minutes. An orphan is unlinked only inside a write
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
        let grace = grace.unwrap_or(self.config().cleanup.gc_grace.0);
        gc::collect(&self.inner.store, self.root(), grace, progress)
    }

    /// Checks every blob against its name, every row's blob, refcounts and
    /// running totals. With `repair`, quarantines bad blobs, drops rows that
    /// point at nothing, fixes refcounts and totals.
    ///
    /// # Errors
    /// A storage error (problems in the data are reported, not errors).
    pub fn verify(&self, repair: bool, progress: Option<Progress<'_>>) -> Result<VerifyReport> {
        self.flush()?;
        verify::verify(&self.inner.store, repair, self.now(), progress)
    }

    /// Rebuilds the index of the root `config` names from what can still be
    /// read and verified (see `freshcache recover`): readable rows are
    /// salvaged, every blob re-hashed, what cannot be proven dropped; the
    /// damaged file is kept under `quarantine/`. Run it with no other
    /// process using the root.
    ///
    /// # Errors
    /// A storage error; the old index stays in place then.
    pub fn recover(config: &Config) -> Result<RecoverReport> {
        use crate::base::clock::Clock;
        let root = &config.cache.root;
        if !root.is_dir() {
            return Err(Error::InsecureRoot {
                path: root.clone(),
                reason: "not a directory",
            });
        }
        recover::recover(root, crate::base::clock::SystemClock.now_ms())
    }

    /// True when `e` says the index is damaged (the remedy is
    /// [`Cache::recover`]).
    pub fn is_damaged_index(e: &Error) -> bool {
        index::is_damaged(e)
    }
}
