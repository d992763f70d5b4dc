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
    /// The index file itself is damaged (SQLite's integrity check failed, or
    /// it cannot be read): `freshcache recover` rebuilds it.
    DamagedIndex { detail: String },
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

fn since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
