//! The optional persistent hot tier (sled, `<root>/hot.sled`): decompressed
//! bytes of small, recently read blobs keyed by blob hash, so a restarted
//! process is warm at once. Keyed by hash like L1, it can never serve
//! content the index does not point at; every read is verified.
//!
//! sled locks its directory: one process owns the tier, the others run
//! without it (a log line, never an error). Bounded in bytes by evicting in
//! insertion order (a second tree, seq → hash).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use crate::disk::blob::Digest;

/// Directory name inside the cache root.
pub const HOT_DIR: &str = "hot.sled";

/// Blobs larger than this are not kept in the hot tier.
pub const MAX_ITEM: usize = 64 * 1024;

/// See the module docs.
#[derive(Debug)]
pub struct HotTier {
    _db: sled::Db,
    blobs: sled::Tree,
    order: sled::Tree,
    bytes: AtomicU64,
    seq: AtomicU64,
    max_bytes: u64,
    evicting: Mutex<()>,
    /// Entries whose bytes failed verification (dropped, never returned).
    pub corrupt: AtomicU64,
}

impl HotTier {
    /// Opens the tier, or `None` (with a log line) if another process owns
    /// it or it cannot be opened.
    pub fn open(root: &Path, max_bytes: u64) -> Option<HotTier> {
        let path = root.join(HOT_DIR);
        let db = match sled::Config::new()
            .path(&path)
            .cache_capacity(8 << 20)
            .open()
        {
            Ok(db) => db,
            Err(e) => {
                tracing::info!(path = %path.display(), error = %e, "hot tier unavailable (owned by another process?); running without it");
                return None;
            }
        };
        let (blobs, order) = match (db.open_tree("blobs"), db.open_tree("order")) {
            (Ok(b), Ok(o)) => (b, o),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "hot tier trees unavailable; running without it");
                return None;
            }
        };
        let bytes = blobs
            .iter()
            .values()
            .flatten()
            .map(|v| v.len() as u64)
            .sum();
        let seq = order
            .last()
            .ok()
            .flatten()
            .map_or(0, |(k, _)| seq_of(&k) + 1);
        Some(HotTier {
            _db: db,
            blobs,
            order,
            bytes: AtomicU64::new(bytes),
            seq: AtomicU64::new(seq),
            max_bytes,
            evicting: Mutex::new(()),
            corrupt: AtomicU64::new(0),
        })
    }

    /// The verified bytes of `hash`, if held. A mismatch is removed.
    pub fn get(&self, hash: &Digest) -> Option<Bytes> {
        let v = self.blobs.get(hash.0).ok().flatten()?;
        if Digest::of(&v) != *hash {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%hash, "hot tier entry failed verification; dropped");
            if let Ok(Some(old)) = self.blobs.remove(hash.0) {
                self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
            }
            return None;
        }
        Some(Bytes::from(v.to_vec()))
    }

    /// Keeps `bytes` (already verified against `hash`) if small enough.
    pub fn insert(&self, hash: &Digest, bytes: &[u8]) {
        if bytes.len() > MAX_ITEM || bytes.len() as u64 > self.max_bytes {
            return;
        }
        match self.blobs.insert(hash.0, bytes) {
            Ok(None) => {
                self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                let _ = self.order.insert(seq.to_be_bytes(), &hash.0);
            }
            Ok(Some(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "hot tier write failed");
                return;
            }
        }
        if self.bytes.load(Ordering::Relaxed) > self.max_bytes {
            self.evict();
        }
    }

    /// Drops the oldest entries until under 90% of the budget.
    fn evict(&self) {
        let Ok(_guard) = self.evicting.try_lock() else {
            return;
        };
        let target = self.max_bytes / 10 * 9;
        while self.bytes.load(Ordering::Relaxed) > target {
            let Ok(Some((k, h))) = self.order.pop_min() else {
                break;
            };
            let _ = k;
            if let Ok(Some(old)) = self.blobs.remove(&h) {
                self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

fn seq_of(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
