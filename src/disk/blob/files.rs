//! Large blobs as files: `blobs-v1/<2 hex>/<62 hex>`, one encoded frame
//! each, written to `tmp/` (created exclusively, never through a symlink)
//! and renamed into place. File names come only from digests. Nothing
//! below the root is reached through a symlink.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::base::error::{Error, Result};
use crate::disk::blob::Digest;

/// Directory name of the versioned blob layout.
pub const BLOBS_DIR: &str = "blobs-v1";
/// Directory for temp files; anything in it is garbage after a crash.
pub const TMP_DIR: &str = "tmp";
/// Where blobs that failed verification are moved.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A test seam: called before every file-system call the blob store makes
/// with the operation's name (`mkdir`, `create`, `write`, `fsync`, `link`,
/// `rename`, `open`, `read`, `stat`, `unlink`); an error it returns is what
/// that call fails with. Real `EINTR` is retried, so an injected one is too.
pub type IoHook = std::sync::Arc<dyn Fn(&'static str) -> Option<std::io::Error> + Send + Sync>;

/// What opening a blob's file found.
#[derive(Debug)]
pub enum Opened {
    /// The file and its length.
    File(File, u64),
    /// No such file.
    Missing,
    /// The file or its shard directory is a symlink (or not a regular
    /// file): never followed, treated as a corrupt blob.
    NotAFile,
}

/// The file half of the blob store. Every path below the root is reached
/// through directory descriptors opened with `O_NOFOLLOW | O_DIRECTORY`
/// and `*at` calls, so nothing in the root is followed out of it.
pub struct BlobFiles {
    root: PathBuf,
    fsync: bool,
    seq: AtomicU64,
    blobs: OwnedFd,
    tmp: OwnedFd,
    quarantine: OwnedFd,
    hook: Option<IoHook>,
}

impl std::fmt::Debug for BlobFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobFiles")
            .field("root", &self.root)
            .field("fsync", &self.fsync)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl BlobFiles {
    /// Uses `<root>/blobs-v1`, `<root>/tmp`, `<root>/quarantine`, creating them 0700.
    ///
    /// # Errors
    /// [`Error::Io`] if the directories cannot be created, or one of them
    /// is a symlink (refused: it could lead out of the root).
    #[allow(dead_code)] // the unit tests' constructor
    pub fn new(root: &Path, fsync: bool) -> Result<BlobFiles> {
        BlobFiles::with_hook(root, fsync, None)
    }

    /// [`BlobFiles::new`] with an [`IoHook`] (fault injection in tests).
    ///
    /// # Errors
    /// As [`BlobFiles::new`].
    pub fn with_hook(root: &Path, fsync: bool, hook: Option<IoHook>) -> Result<BlobFiles> {
        let open = |d: &str| -> Result<OwnedFd> {
            let p = root.join(d);
            mkdir(&p)?;
            rustix::fs::open(&p, DIR_FLAGS, Mode::empty()).map_err(|e| Error::io(&p, e.into()))
        };
        Ok(BlobFiles {
            root: root.to_path_buf(),
            fsync,
            seq: AtomicU64::new(0),
            blobs: open(BLOBS_DIR)?,
            tmp: open(TMP_DIR)?,
            quarantine: open(QUARANTINE_DIR)?,
            hook,
        })
    }

    /// Consults the hook for `op`.
    fn fault(&self, op: &'static str) -> std::io::Result<()> {
        match self.hook.as_ref().and_then(|h| h(op)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs one call (after the hook), retrying `EINTR`.
    fn call<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        loop {
            match self.fault(op).and_then(|()| f()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// The path of a blob's file.
    pub fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.root.join(BLOBS_DIR).join(&hex[..2]).join(&hex[2..])
    }

    /// The shard directory of `d` (opened without following a symlink),
    /// created when `create`; `Ok(None)` when it does not exist or is not a
    /// directory (a symlink, say).
    fn shard(&self, d: &Digest, create: bool) -> Result<Option<OwnedFd>> {
        let hex = d.to_hex();
        let name = &hex[..2];
        let path = || self.root.join(BLOBS_DIR).join(name);
        loop {
            match self.call("open", || {
                rustix::fs::openat(&self.blobs, name, DIR_FLAGS, Mode::empty()).map_err(Into::into)
            }) {
                Ok(fd) => return Ok(Some(fd)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    match self.call("mkdir", || {
                        rustix::fs::mkdirat(&self.blobs, name, Mode::from_raw_mode(0o700))
                            .map_err(Into::into)
                    }) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(Error::io(path(), e)),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) if not_followed(&e) => return Ok(None),
                Err(e) => return Err(Error::io(path(), e)),
            }
        }
    }

    /// Writes `stored` as the file for `d`: temp file, optional fsync, rename.
    ///
    /// # Errors
    /// [`Error::Io`] with the path (e.g. a full disk); nothing is left in place.
    pub fn write(&self, d: &Digest, stored: &[u8]) -> Result<()> {
        self.place(d, stored, false).map(|_| ())
    }

    /// Writes `stored` as the file for `d` only if there is none yet (temp
    /// file, then a hard link, which fails rather than replace). Returns
    /// whether this call created it.
    ///
    /// # Errors
    /// [`Error::Io`] with the path; nothing is left in place.
    pub fn write_new(&self, d: &Digest, stored: &[u8]) -> Result<bool> {
        if self.exists(d) {
            return Ok(false);
        }
        self.place(d, stored, true)
    }

    /// Writes a temp file (exclusive, optional fsync) and moves it into
    /// place, by rename or (`link`) by a hard link; an `AlreadyExists` from
    /// the link means "someone else's file is there" (`Ok(false)`). The
    /// temp file never survives.
    fn place(&self, d: &Digest, stored: &[u8], link: bool) -> Result<bool> {
        let target = self.path(d);
        let hex = d.to_hex();
        let name = &hex[2..];
        let Some(shard) = self.shard(d, true)? else {
            let e = std::io::Error::from_raw_os_error(rustix::io::Errno::NOTDIR.raw_os_error());
            return Err(Error::io(target.parent().unwrap_or(&target), e));
        };
        let tmp_name = self.temp_name(&hex[..16]);
        let tmp_path = self.root.join(TMP_DIR).join(&tmp_name);
        let result = (|| {
            let mut f = self.create_in(&self.tmp, &tmp_name, &tmp_path)?;
            self.write_all(&mut f, stored)
                .map_err(|e| Error::io(&tmp_path, e))?;
            if self.fsync {
                self.call("fsync", || f.sync_all())
                    .map_err(|e| Error::io(&tmp_path, e))?;
            }
            let moved = if link {
                self.call("link", || {
                    rustix::fs::linkat(&self.tmp, &tmp_name, &shard, name, AtFlags::empty())
                        .map_err(Into::into)
                })
            } else {
                self.call("rename", || {
                    rustix::fs::renameat(&self.tmp, &tmp_name, &shard, name).map_err(Into::into)
                })
            };
            match moved {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(Error::io(&target, e)),
            }
            if self.fsync {
                self.call("fsync", || rustix::fs::fsync(&shard).map_err(Into::into))
                    .map_err(|e| Error::io(target.parent().unwrap_or(&target), e))?;
            }
            Ok(true)
        })();
        // After a rename the temp name is gone; after a link or a failure it is not.
        let _ = rustix::fs::unlinkat(&self.tmp, &tmp_name, AtFlags::empty());
        result
    }

    fn write_all(&self, f: &mut File, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match self.fault("write").and_then(|()| f.write(bytes)) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates `name` in `dir` exclusively (never through a symlink), 0600.
    fn create_in(&self, dir: &OwnedFd, name: &str, path: &Path) -> Result<File> {
        let flags = OFlags::WRONLY
            .union(OFlags::CREATE)
            .union(OFlags::EXCL)
            .union(OFlags::NOFOLLOW)
            .union(OFlags::CLOEXEC);
        self.call("create", || {
            rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map_err(Into::into)
        })
        .map(File::from)
        .map_err(|e| Error::io(path, e))
    }

    /// Opens a blob's file for reading, never following a symlink.
    ///
    /// # Errors
    /// [`Error::Io`] for failures other than not-found and not-a-file.
    pub fn open(&self, d: &Digest) -> Result<Opened> {
        let Some(shard) = self.shard(d, false)? else {
            // A shard that is a symlink: the blob cannot be reached safely.
            let there =
                rustix::fs::statat(&self.blobs, &d.to_hex()[..2], AtFlags::SYMLINK_NOFOLLOW);
            return Ok(if there.is_ok() {
                Opened::NotAFile
            } else {
                Opened::Missing
            });
        };
        let hex = d.to_hex();
        let flags = OFlags::RDONLY
            .union(OFlags::NOFOLLOW)
            .union(OFlags::CLOEXEC);
        let f = match self.call("open", || {
            rustix::fs::openat(&shard, &hex[2..], flags, Mode::empty()).map_err(Into::into)
        }) {
            Ok(fd) => File::from(fd),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::Missing),
            Err(e) if not_followed(&e) => return Ok(Opened::NotAFile),
            Err(e) => return Err(Error::io(self.path(d), e)),
        };
        let m = self
            .call("stat", || f.metadata())
            .map_err(|e| Error::io(self.path(d), e))?;
        if !m.is_file() {
            return Ok(Opened::NotAFile);
        }
        Ok(Opened::File(f, m.len()))
    }

    /// Reads a blob's stored bytes; `Ok(None)` if the file does not exist.
    /// A blob that is a symlink (or lies in a symlinked shard) reads as no
    /// bytes at all, which fails verification: it is corrupt, never followed.
    ///
    /// # Errors
    /// [`Error::Io`] for any other failure.
    pub fn read(&self, d: &Digest, expected_len: u64) -> Result<Option<Vec<u8>>> {
        let (f, actual) = match self.open(d)? {
            Opened::File(f, len) => (f, len),
            Opened::Missing => return Ok(None),
            Opened::NotAFile => return Ok(Some(Vec::new())),
        };
        // Read one byte past the expected length so a grown file is caught;
        // allocate by the file's real length, never by what a row claims.
        let cap = expected_len.min(actual).saturating_add(1);
        let mut buf = super::pool::take(usize::try_from(cap).unwrap_or(0));
        let limit = expected_len.saturating_add(1);
        // Read as the `File` itself, which fills the spare capacity without
        // zeroing it first (through a wrapping reader, a 1 MiB memset and
        // its page faults were ~15% of a 1 MiB read); the hook is consulted
        // once for the whole read.
        self.call("read", || (&f).take(limit).read_to_end(&mut buf))
            .map_err(|e| Error::io(self.path(d), e))?;
        Ok(Some(buf))
    }

    /// A reader over `f` that consults the hook on every read.
    pub fn reader(&self, f: File) -> impl Read + '_ {
        Hooked { files: self, f }
    }

    /// True when the blob's file exists (as a regular file, not a link).
    pub fn exists(&self, d: &Digest) -> bool {
        self.len_of(d).is_some()
    }

    /// The length of the blob's file, if it exists as a regular file.
    pub fn len_of(&self, d: &Digest) -> Option<u64> {
        let hex = d.to_hex();
        let Ok(Some(shard)) = self.shard(d, false) else {
            return None;
        };
        self.call("stat", || {
            rustix::fs::statat(&shard, &hex[2..], AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
        })
        .ok()
        .filter(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
        })
        .map(|st| st.st_size as u64)
    }

    /// Unlinks a blob's file (a symlink itself, never what it points at);
    /// a missing file is not an error.
    ///
    /// # Errors
    /// [`Error::Io`] for failures other than not-found.
    pub fn remove(&self, d: &Digest) -> Result<()> {
        let hex = d.to_hex();
        let Some(shard) = self.shard(d, false)? else {
            return Ok(());
        };
        match self.call("unlink", || {
            rustix::fs::unlinkat(&shard, &hex[2..], AtFlags::empty()).map_err(Into::into)
        }) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(self.path(d), e)),
            _ => Ok(()),
        }
    }

    /// Moves a bad blob's bytes out of the way, under `quarantine/` (a
    /// symlink is moved as the link). Returns where they went.
    ///
    /// # Errors
    /// [`Error::Io`] if the quarantine copy cannot be written.
    pub fn quarantine(&self, d: &Digest, inline: Option<&[u8]>, now_ms: i64) -> Result<PathBuf> {
        let name = format!("{}-{now_ms}", d.to_hex());
        let dest = self.root.join(QUARANTINE_DIR).join(&name);
        match inline {
            Some(bytes) => {
                let mut f = match self.create_in(&self.quarantine, &name, &dest) {
                    // Quarantined before at the same instant: keep the first copy.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        return Ok(dest)
                    }
                    other => other?,
                };
                self.write_all(&mut f, bytes)
                    .map_err(|e| Error::io(&dest, e))?;
            }
            None => {
                let hex = d.to_hex();
                let Some(shard) = self.shard(d, false)? else {
                    // A symlinked shard: move the link itself away.
                    let r = self.call("rename", || {
                        rustix::fs::renameat(&self.blobs, &hex[..2], &self.quarantine, &name)
                            .map_err(Into::into)
                    });
                    return match r {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            Err(Error::io(&dest, e))
                        }
                        _ => Ok(dest),
                    };
                };
                match self.call("rename", || {
                    rustix::fs::renameat(&shard, &hex[2..], &self.quarantine, &name)
                        .map_err(Into::into)
                }) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&dest, e))
                    }
                    _ => {}
                }
            }
        }
        Ok(dest)
    }

    fn temp_name(&self, tag: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{tag}.{}.{n}.tmp", std::process::id())
    }
}

struct Hooked<'a> {
    files: &'a BlobFiles,
    f: File,
}

impl Read for Hooked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.files.fault("read")?;
        self.f.read(buf)
    }
}

/// `ELOOP` (a symlink met with `O_NOFOLLOW`) or `ENOTDIR` (a file where a
/// directory should be).
fn not_followed(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == rustix::io::Errno::LOOP.raw_os_error()
        || c == rustix::io::Errno::NOTDIR.raw_os_error())
}

/// Creates a directory with mode 0700 (and its parents).
pub(crate) fn mkdir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(path, e))
}

/// Creates a new file, mode 0600, failing if anything (a symlink included) is there.
pub(crate) fn create_exclusive(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_file_is_never_replaced_before_the_write_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlobFiles::new(dir.path(), false).unwrap();
        let d = Digest::of(b"content");
        assert!(files.write_new(&d, b"encoding one").unwrap());
        assert!(
            !files.write_new(&d, b"encoding two").unwrap(),
            "another process's file stays"
        );
        assert_eq!(files.read(&d, 100).unwrap().unwrap(), b"encoding one");
    }
}
