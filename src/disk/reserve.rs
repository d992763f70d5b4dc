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
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::base::error::Error;

/// Directory of the reserve inside the cache root.
pub const RESERVE_DIR: &str = "reserve";
/// Number of chunks.
pub const RESERVE_CHUNKS: u32 = 8;
/// Size of one chunk: room for SQLite's shared-memory file and the WAL
/// frames of a small delete transaction (eviction on a full disk commits
/// in small transactions).
pub const CHUNK_BYTES: u64 = 1 << 20;

/// The reserve of one root. Every operation goes through a descriptor of
/// the directory opened with `O_NOFOLLOW`, and `*at` calls that follow no
/// link: a `reserve` that is a symlink (or holds one) is never written or
/// unlinked through.
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

    /// The directory, never through a link; `None` if it is not there (or
    /// is not a directory).
    fn open_dir(&self) -> Option<OwnedFd> {
        rustix::fs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    fn present(dir: &OwnedFd, i: u32) -> bool {
        rustix::fs::statat(dir, i.to_string(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
                && st.st_size as u64 >= CHUNK_BYTES
        })
    }

    /// Recreates missing chunks while they fit; returns how many are in
    /// place. Costs a few `stat`s when all are there.
    pub fn ensure(&self) -> u32 {
        let dir = match self.open_dir() {
            Some(d) => d,
            None => {
                if std::fs::symlink_metadata(&self.dir).is_ok()
                    || crate::disk::blob::files::mkdir(&self.dir).is_err()
                {
                    return 0; // something else (a link?) stands there
                }
                match self.open_dir() {
                    Some(d) => d,
                    None => return 0,
                }
            }
        };
        let mut n = 0;
        for i in 0..RESERVE_CHUNKS {
            if Self::present(&dir, i) {
                n += 1;
                continue;
            }
            if !Self::make(&dir, i) {
                break;
            }
            n += 1;
        }
        n
    }

    fn make(dir: &OwnedFd, i: u32) -> bool {
        let tmp = format!("{i}.{}.tmp", std::process::id());
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        let made = (|| -> std::io::Result<()> {
            let fd = rustix::fs::openat(
                dir,
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut f = std::fs::File::from(fd);
            match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, CHUNK_BYTES) {
                Ok(()) => {}
                // A file system without fallocate: write the bytes.
                Err(rustix::io::Errno::OPNOTSUPP) => {
                    f.write_all(&vec![0u8; CHUNK_BYTES as usize])?;
                    f.sync_all()?;
                }
                Err(e) => return Err(e.into()),
            }
            rustix::fs::renameat(dir, tmp.as_str(), dir, i.to_string())?;
            Ok(())
        })();
        if made.is_err() {
            let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        }
        made.is_ok()
    }

    /// Unlinks one chunk; true if there was one to give back.
    pub fn release(&self) -> bool {
        let Some(dir) = self.open_dir() else {
            return false;
        };
        for i in (0..RESERVE_CHUNKS).rev() {
            if rustix::fs::unlinkat(&dir, i.to_string(), AtFlags::empty()).is_ok() {
                tracing::warn!(path = %self.dir.join(i.to_string()).display(), "disk full: released a chunk of the space reserve");
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
