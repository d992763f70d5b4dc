//! Room for the operations that free space on a full disk.
//!
//! `<root>/reserve/` holds [`RESERVE_CHUNKS`] preallocated files of
//! [`CHUNK_BYTES`] each. When an operation that frees space (rm,
//! invalidate, evict) or opening the index (SQLite must create its `-shm`
//! and `-wal` files) fails because the disk is full, one chunk is unlinked
//! and the operation retried, chunk after chunk; missing chunks are
//! recreated, best effort, whenever they fit again (at every open, and
//! after a freeing operation succeeded). Puts never release a chunk, so a
//! disk filled by puts always leaves the room a delete needs, and a read on
//! a full disk uses one chunk only while it runs (SQLite deletes its
//! `-shm`/`-wal` files when the last connection closes; the next open
//! recreates the chunk).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::base::error::Error;

/// Directory of the reserve inside the cache root.
pub const RESERVE_DIR: &str = "reserve";
/// Number of chunks.
pub const RESERVE_CHUNKS: u32 = 8;
/// Size of one chunk: room for SQLite's shared-memory file and the WAL
/// frames of a small delete transaction (eviction on a full disk commits
/// in small transactions).
pub const CHUNK_BYTES: u64 = 1 << 20;

/// The reserve of one root.
#[derive(Debug, Clone)]
pub struct Reserve {
    dir: PathBuf,
}

impl Reserve {
    /// The reserve of `root` (nothing is created yet).
    pub fn new(root: &Path) -> Reserve {
        Reserve {
            dir: root.join(RESERVE_DIR),
        }
    }

    fn chunk(&self, i: u32) -> PathBuf {
        self.dir.join(i.to_string())
    }

    fn present(&self, i: u32) -> bool {
        std::fs::symlink_metadata(self.chunk(i))
            .is_ok_and(|m| m.is_file() && m.len() >= CHUNK_BYTES)
    }

    /// Recreates missing chunks while they fit; returns how many are in
    /// place. Costs a few `stat`s when all are there.
    pub fn ensure(&self) -> u32 {
        let mut n = 0;
        for i in 0..RESERVE_CHUNKS {
            if self.present(i) {
                n += 1;
                continue;
            }
            if !self.make(i) {
                break;
            }
            n += 1;
        }
        n
    }

    fn make(&self, i: u32) -> bool {
        if std::fs::symlink_metadata(&self.dir).is_err()
            && crate::disk::blob::files::mkdir(&self.dir).is_err()
        {
            return false;
        }
        let tmp = self.dir.join(format!("{i}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let made = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, CHUNK_BYTES) {
                Ok(()) => {}
                // A file system without fallocate: write the bytes.
                Err(rustix::io::Errno::OPNOTSUPP) => {
                    f.write_all(&vec![0u8; CHUNK_BYTES as usize])?;
                    f.sync_all()?;
                }
                Err(e) => return Err(e.into()),
            }
            std::fs::rename(&tmp, self.chunk(i))
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        made.is_ok()
    }

    /// Unlinks one chunk; true if there was one to give back.
    pub fn release(&self) -> bool {
        for i in (0..RESERVE_CHUNKS).rev() {
            let p = self.chunk(i);
            if std::fs::remove_file(&p).is_ok() {
                tracing::warn!(path = %p.display(), "disk full: released a chunk of the space reserve");
                return true;
            }
        }
        false
    }
}

/// True when `e` says the disk (or quota) is full.
pub fn is_full(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => io_full(source),
        Error::Index { source, .. } => sqlite_full(source),
        Error::Shared { source } => is_full(source),
        _ => false,
    }
}

fn io_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() || c == rustix::io::Errno::DQUOT.raw_os_error()
    )
}

/// SQLITE_FULL, or an I/O error SQLite could not classify further while
/// growing its shared-memory file (`SQLITE_IOERR_SHMSIZE`) or writing.
pub(crate) fn sqlite_full(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.code == rusqlite::ErrorCode::DiskFull
                || f.extended_code == ffi::SQLITE_IOERR_SHMSIZE
                || f.extended_code == ffi::SQLITE_IOERR_SHMMAP
        }
        _ => false,
    }
}
