//! Keeping the disk bounded: size-capped eviction (expired first, then least
//! recently used), admission control, orphan collection and verification.
//!
//! Eviction walks the `entries_by_expiry` and `entries_by_access` indexes
//! from the cold end and stops as soon as the cache is under the low
//! watermark: its cost grows with what it removes, not with the cache.

use std::time::Instant;

use serde::Serialize;

pub(crate) mod evict;
pub(crate) mod gc;
pub(crate) mod recover;
pub(crate) mod verify;

pub use recover::RecoverReport;

/// Progress callback: (done, total); total is 0 when unknown.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// What an eviction pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvictionReport {
    /// Entries removed.
    pub entries_removed: u64,
    /// Of those, entries that had expired.
    pub expired_removed: u64,
    /// Bytes charged against the cap before.
    pub bytes_before: u64,
    /// Bytes charged against the cap after.
    pub bytes_after: u64,
    /// `bytes_before - bytes_after`.
    pub bytes_removed: u64,
    /// The cap used.
    pub max_bytes: u64,
    /// Eviction starts above this.
    pub high_watermark_bytes: u64,
    /// Eviction stops at this.
    pub low_watermark_bytes: u64,
    /// Wall time of the pass.
    pub elapsed_ms: u64,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Blob files no row named, removed.
    pub orphan_files_removed: u64,
    /// Their bytes.
    pub orphan_bytes_removed: u64,
    /// Abandoned temp files removed.
    pub temp_files_removed: u64,
    /// Files in blobs-v1 whose names are not digests (left alone).
    pub foreign_files: u64,
    /// Wall time of the pass.
    pub elapsed_ms: u64,
}

/// One problem verification found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// Stored bytes do not hash to the blob's name (flipped bit, truncation).
    CorruptBlob {
        /// The blob's hash (hex).
        hash: String,
    },
    /// A file blob's file is missing.
    MissingBlob {
        /// The blob's hash (hex).
        hash: String,
    },
    /// refs differs from the number of entries pointing at the blob.
    WrongRefcount {
        /// The blob's hash (hex).
        hash: String,
        /// The recorded count.
        refs: i64,
        /// Entries that point at it.
        actual: i64,
    },
    /// An entry points at no blob row.
    DanglingEntry {
        /// The entry's key.
        key: String,
    },
    /// The index file itself is damaged (SQLite's integrity check failed, or
    /// it cannot be read): `freshcache recover` rebuilds it.
    DamagedIndex {
        /// What SQLite reported.
        detail: String,
    },
    /// A running total differs from the sum it stands for.
    WrongTotal {
        /// The counter.
        name: String,
        /// Its recorded value.
        recorded: i64,
        /// The sum computed by scanning.
        actual: i64,
    },
}

/// What verification found and, with repair, fixed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Blobs hashed.
    pub blobs_checked: u64,
    /// Entries checked.
    pub entries_checked: u64,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
    /// Whether repair was asked for.
    pub repaired: bool,
    /// Keys that lost their value during repair.
    pub keys_dropped: Vec<String>,
    /// Wall time of the pass.
    pub elapsed_ms: u64,
}

impl VerifyReport {
    /// The report of a verify that could not open the index at all.
    pub fn damaged_index(detail: String) -> VerifyReport {
        VerifyReport {
            problems: vec![Problem::DamagedIndex { detail }],
            ..Default::default()
        }
    }

    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
