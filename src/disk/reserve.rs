//! Room for the operations that free space on a full disk.
//!
//! `<root>/reserve` is a preallocated file ([`RESERVE_BYTES`]). When an
//! operation that frees space (rm, invalidate, evict) or opening the index
//! (SQLite must create its `-shm` and `-wal` files) fails because the disk
//! is full, the reserve is unlinked and the operation retried once; the
//! reserve is recreated, best effort, once it fits again (after the freeing
//! operation succeeded, or at the next open). Puts never release it, so a
//! disk filled by puts always leaves the room a delete needs.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::base::error::Error;

/// File name of the reserve inside the cache root.
pub const RESERVE_FILE: &str = "reserve";
/// Size of the reserve: room for SQLite's shared-memory file and the WAL
/// frames of a delete transaction (eviction on a full disk commits in small
/// transactions so it stays within this).
pub const RESERVE_BYTES: u64 = 8 << 20;

/// The reserve of one root.
#[derive(Debug, Clone)]
pub struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    /// The reserve of `root` (nothing is created yet).
    pub fn new(root: &Path) -> Reserve {
        Reserve {
            path: root.join(RESERVE_FILE),
            bytes: RESERVE_BYTES,
        }
    }

    /// True when the reserve file is in place at its full size.
    pub fn present(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file() && m.len() >= self.bytes)
    }

    /// Creates the reserve if it is missing; false when there is no room
    /// (nothing is left behind then). Costs one `stat` when it is there.
    pub fn ensure(&self) -> bool {
        if self.present() {
            return true;
        }
        let tmp = self
            .path
            .with_file_name(format!("{RESERVE_FILE}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let made = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, self.bytes) {
                Ok(()) => {}
                // A file system without fallocate: write the bytes.
                Err(rustix::io::Errno::OPNOTSUPP) => {
                    let chunk = vec![0u8; 64 << 10];
                    let mut left = self.bytes;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        f.write_all(&chunk[..n])?;
                        left -= n as u64;
                    }
                    f.sync_all()?;
                }
                Err(e) => return Err(e.into()),
            }
            std::fs::rename(&tmp, &self.path)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        made.is_ok()
    }

    /// Unlinks the reserve; true if there was one to give back.
    pub fn release(&self) -> bool {
        let released = std::fs::remove_file(&self.path).is_ok();
        if released {
            tracing::warn!(path = %self.path.display(), "disk full: released the space reserve");
        }
        released
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
