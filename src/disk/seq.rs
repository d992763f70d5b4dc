//! The change counter: one `u64` in a small shared-memory file of the root
//! (`index.seq`), moved by every write transaction of every process, so a
//! repeated get can tell "nothing was committed since I last looked" from
//! one atomic load instead of asking SQLite (`PRAGMA data_version` opens a
//! read transaction on the WAL index: half the cost of a hot get).
//!
//! Protocol (a seqlock across processes). A writer, holding SQLite's write
//! lock (`BEGIN IMMEDIATE` done, so writers of all processes are
//! serialised), makes the value odd before its COMMIT ([`ChangeSeq::begin`])
//! and even again after it ([`ChangeSeq::end`]), whether the commit worked
//! or not. A reader trusts its hot map only if the value is even and equal
//! to the one it loaded before its last full sync; an odd or moved value
//! sends it to the full sync (data_version + the change log), which is
//! always correct. A writer killed between commit and `end` leaves the
//! value odd: readers take the slow path until the next writer, which
//! skips to the next odd value (`+2`) and ends even again.
//!
//! The one assumption: every process writing the index bumps the counter
//! (all freshcache writes go through `Index::write`/`try_write`). A foreign
//! SQLite writer is not seen by the fast path.

#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// File name of the counter, beside the index.
pub const SEQ_FILE: &str = "index.seq";
/// Size of the file (one page).
const LEN: u64 = 4096;

/// See the module docs.
#[derive(Debug)]
pub struct ChangeSeq {
    map: MmapRaw,
    /// Holds a shared `flock` on the file for as long as the cache is open:
    /// `freshcache recover` takes it exclusively, so it never rebuilds an
    /// index under a running process (see [`lock_exclusive`]).
    _lock: std::fs::File,
}

fn open_file(root: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(root.join(SEQ_FILE))
}

/// The root for `recover` alone: an exclusive lock on the counter file,
/// refused (never waited for) while any process has the root open.
///
/// # Errors
/// The file cannot be opened, or another process holds the root open.
pub fn lock_exclusive(root: &Path) -> std::io::Result<std::fs::File> {
    let file = open_file(root)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "another process has this cache root open (a daemon, a CLI command, a service): \
             stop it first",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Takes the shared lock on the counter file every open cache holds (see
/// [`lock_exclusive`]), before anything else of the root is touched.
/// A file system without `flock` (`ENOLCK`, `EOPNOTSUPP`) opens unlocked:
/// recover's exclusion is then the documented "no other process" rule.
///
/// # Errors
/// The file cannot be opened, or `recover` holds the root.
pub fn lock_shared(root: &Path) -> std::io::Result<std::fs::File> {
    let file = open_file(root)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) | Err(rustix::io::Errno::NOLCK | rustix::io::Errno::OPNOTSUPP) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "`freshcache recover` is rebuilding this root's index: try again when it is done",
        )),
        Err(e) => Err(e.into()),
    }
}

impl ChangeSeq {
    /// Maps `<root>/index.seq`, creating it (0600, never through a link),
    /// with its page allocated on disk: a store into a hole of a sparse
    /// file on a full disk would be a SIGBUS, not an error.
    ///
    /// # Errors
    /// The file cannot be opened, allocated or mapped. The cache then does
    /// not open: a process that wrote the index without moving the counter
    /// would let other processes serve a mapping it had changed.
    pub fn open(root: &Path) -> std::io::Result<ChangeSeq> {
        let path = root.join(SEQ_FILE);
        let file = lock_shared(root)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        if meta.len() < LEN {
            // A new file (zeros: even, stable) or a short one: grow it. The
            // mapping is made only once the file is long enough.
            file.set_len(LEN)?;
        }
        // Allocate the page (a no-op when it is; never changes its bytes).
        // Where fallocate is not supported, the page is written past the
        // counter (bytes 8..): never over a value another process that
        // created the file meanwhile may have moved.
        if let Err(e) = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, LEN) {
            if matches!(e, rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT) {
                return Err(e.into());
            }
            if meta.len() < LEN {
                let from = meta.len().max(8);
                file.write_all_at(&[0u8; LEN as usize][from as usize..], from)?;
            }
        }
        // SAFETY: the mapping is of a regular file we opened read-write and
        // sized to LEN bytes, with its page allocated; it lives as long as
        // `self`. Other processes change its contents concurrently, which is
        // why its memory is only ever accessed through the `AtomicU64` in
        // `cell`, by a raw pointer (never as a Rust slice or reference to
        // plain bytes). Shrinking the file under us would fault on access;
        // the root is 0700 and owned by this user, and only this module
        // touches the file.
        let map = MmapOptions::new().len(LEN as usize).map_raw(&file)?;
        Ok(ChangeSeq { map, _lock: file })
    }

    fn cell(&self) -> &AtomicU64 {
        let ptr = self.map.as_mut_ptr().cast::<AtomicU64>();
        // SAFETY: the mapping is page-aligned (so 8-byte aligned) and LEN
        // bytes long, it outlives the returned reference (borrowed from
        // `self`), the pointer comes from a writable shared mapping (not
        // from a shared reference to its bytes), and all access to these
        // bytes, in this and every other process, is atomic: `AtomicU64`
        // has the same layout as `u64`, and shared-memory atomics are how a
        // seqlock across processes is built.
        unsafe { &*ptr }
    }

    /// The current value (`Acquire`: a reader that sees a value sees every
    /// commit finished before it was stored).
    pub fn load(&self) -> u64 {
        self.cell().load(Ordering::Acquire)
    }

    /// Before a COMMIT, holding the write lock: the next odd value.
    pub fn begin(&self) {
        let c = self.cell();
        let v = c.load(Ordering::Acquire);
        c.store(
            if v % 2 == 0 {
                v.wrapping_add(1)
            } else {
                v.wrapping_add(2)
            },
            Ordering::SeqCst,
        );
    }

    /// After the COMMIT (or its failure), still holding the write lock.
    pub fn end(&self) {
        self.cell().fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_root_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let a = ChangeSeq::open(dir.path()).unwrap();
        let b = ChangeSeq::open(dir.path()).unwrap();
        assert_eq!(a.load(), 0);
        a.begin();
        assert_eq!(b.load() % 2, 1, "odd while a commit is in flight");
        a.end();
        assert_eq!((a.load(), b.load()), (2, 2));
    }

    #[test]
    fn a_writer_killed_before_end_leaves_it_odd_and_the_next_one_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let s = ChangeSeq::open(dir.path()).unwrap();
        s.begin(); // ... commit, then the process dies: no end()
        assert_eq!(s.load(), 1);
        s.begin();
        assert_eq!(s.load(), 3, "skips to the next odd value");
        s.end();
        assert_eq!(s.load(), 4);
    }

    #[test]
    fn recover_and_open_caches_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let a = ChangeSeq::open(dir.path()).unwrap();
        let b = ChangeSeq::open(dir.path()).unwrap(); // shared with shared
        assert!(
            lock_exclusive(dir.path()).is_err(),
            "open caches hold the root"
        );
        drop((a, b));
        let alone = lock_exclusive(dir.path()).unwrap();
        let e = ChangeSeq::open(dir.path()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        drop(alone);
        assert!(ChangeSeq::open(dir.path()).is_ok());
    }

    #[test]
    fn a_symlinked_counter_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(SEQ_FILE)).unwrap();
        assert!(ChangeSeq::open(dir.path()).is_err());
        assert_eq!(std::fs::metadata(outside.path()).unwrap().len(), 0);
    }
}
