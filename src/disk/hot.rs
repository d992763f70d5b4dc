//! The hot map: key → (blob hash, expiry, class) for keys this process read
//! recently, so a repeated get is answered from memory without an index
//! lookup — and never from a mapping another process has changed.
//!
//! Invariant: before the map answers, `sync` has seen the root's change
//! counter (`seq`) unmoved and even since its last full sync, or has asked
//! SQLite (`PRAGMA
//! data_version`, which moves whenever any other connection commits) and,
//! if anything was written, dropped every key in the index's change log
//! since the last sync. Every write that changes or removes an existing
//! mapping (overwrite, delete, invalidate, evict, quarantine, refresh) logs
//! its key in the same transaction. A mapping read from the index is only
//! inserted if no sync processed changes while it was being read
//! (`generation` unchanged), so a concurrent change can never be lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

use crate::base::clock::Millis;
use crate::base::error::Result;
use crate::disk::blob::Digest;
use crate::disk::index::{self, Index};

/// One remembered mapping.
#[derive(Debug, Clone)]
pub(crate) struct HotEntry {
    pub hash: Digest,
    pub expires_at: Millis,
    pub class: Arc<str>,
    /// The entry's last access as the index had it when remembered.
    pub last_access: Millis,
}

#[derive(Debug)]
struct Watch {
    conn: Connection,
    data_version: i64,
    seq: i64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct HotMap {
    map: RwLock<HashMap<Box<str>, HotEntry, ahash::RandomState>>,
    watch: Mutex<Watch>,
    generation: AtomicU64,
    capacity: usize,
    /// The change counter's value loaded before the last full sync
    /// (`u64::MAX`: none yet). Equal and even now → nothing committed since.
    synced_seq: AtomicU64,
}

impl HotMap {
    pub(crate) fn new(idx: &Index, synchronous_full: bool, capacity: usize) -> Result<HotMap> {
        let conn = index::open_connection(idx.path(), synchronous_full)?;
        let wrap = |e| idx.wrap(e);
        let data_version = data_version(&conn).map_err(wrap)?;
        let seq = index::last_change(&conn).map_err(wrap)?;
        Ok(HotMap {
            map: RwLock::new(HashMap::default()),
            watch: Mutex::new(Watch {
                conn,
                data_version,
                seq,
            }),
            generation: AtomicU64::new(0),
            capacity,
            synced_seq: AtomicU64::new(u64::MAX),
        })
    }

    /// Brings the map up to date with every commit so far; returns the
    /// generation to pass to [`HotMap::insert`].
    pub(crate) fn sync(&self, idx: &Index) -> Result<u64> {
        // Fast path: no write transaction anywhere since the last full sync.
        let seq = idx.seq().map(|s| s.load());
        if let Some(v) = seq {
            if v % 2 == 0 && v == self.synced_seq.load(Ordering::Acquire) {
                return Ok(self.generation.load(Ordering::SeqCst));
            }
        }
        let mut w = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        let dv = data_version(&w.conn).map_err(|e| idx.wrap(e))?;
        if dv != w.data_version {
            let (keys, newest, complete) =
                index::changes_since(&w.conn, w.seq).map_err(|e| idx.wrap(e))?;
            {
                let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
                if complete && !keys.iter().any(|k| k == index::CHANGED_ALL) {
                    for k in &keys {
                        map.remove(k.as_str());
                    }
                } else {
                    map.clear();
                }
                // Bumped under the map's write lock, so an insert racing
                // with this sync either precedes the removal or sees the bump.
                self.generation.fetch_add(1, Ordering::SeqCst);
            }
            w.seq = newest;
            w.data_version = dv;
        }
        // Loaded before this sync: a commit that finished during it moved
        // the counter past `v`, so the next call syncs again.
        if let Some(v) = seq {
            self.synced_seq.store(v, Ordering::Release);
        }
        Ok(self.generation.load(Ordering::SeqCst))
    }

    pub(crate) fn get(&self, key: &str) -> Option<HotEntry> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Remembers a mapping read while the map was at `generation`.
    pub(crate) fn insert(&self, key: &str, entry: HotEntry, generation: u64) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        // Checked under the write lock: a sync that processed changes since
        // the read has bumped the generation before taking this lock.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key.into(), entry);
    }
}

fn data_version(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}
