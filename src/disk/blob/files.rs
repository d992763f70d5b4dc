//! Large blobs as files: `blobs-v1/<2 hex>/<62 hex>`, one encoded frame
//! each, written to `tmp/` (created exclusively, never through a symlink)
//! and renamed into place. File names come only from digests.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::base::error::{Error, Result};
use crate::disk::blob::Digest;

/// Directory name of the versioned blob layout.
pub const BLOBS_DIR: &str = "blobs-v1";
/// Directory for temp files; anything in it is garbage after a crash.
pub const TMP_DIR: &str = "tmp";
/// Where blobs that failed verification are moved.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The file half of the blob store.
#[derive(Debug)]
pub struct BlobFiles {
    root: PathBuf,
    fsync: bool,
    seq: AtomicU64,
}

impl BlobFiles {
    /// Uses `<root>/blobs-v1`, `<root>/tmp`, `<root>/quarantine`, creating them 0700.
    ///
    /// # Errors
    /// [`Error::Io`] if the directories cannot be created.
    pub fn new(root: &Path, fsync: bool) -> Result<BlobFiles> {
        for d in [BLOBS_DIR, TMP_DIR, QUARANTINE_DIR] {
            mkdir(&root.join(d))?;
        }
        Ok(BlobFiles {
            root: root.to_path_buf(),
            fsync,
            seq: AtomicU64::new(0),
        })
    }

    /// The path of a blob's file.
    pub fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.root.join(BLOBS_DIR).join(&hex[..2]).join(&hex[2..])
    }

    /// Writes `stored` as the file for `d`: temp file, optional fsync, rename.
    ///
    /// # Errors
    /// [`Error::Io`] with the path (e.g. a full disk); nothing is left in place.
    pub fn write(&self, d: &Digest, stored: &[u8]) -> Result<()> {
        self.place(d, stored, |tmp, target| fs::rename(tmp, target))
            .map(|_| ())
    }

    /// Writes `stored` as the file for `d` only if there is none yet (temp
    /// file, then a hard link, which fails rather than replace). Returns
    /// whether this call created it.
    ///
    /// # Errors
    /// [`Error::Io`] with the path; nothing is left in place.
    pub fn write_new(&self, d: &Digest, stored: &[u8]) -> Result<bool> {
        if self.path(d).exists() {
            return Ok(false);
        }
        self.place(d, stored, |tmp, target| fs::hard_link(tmp, target))
    }

    /// Writes a temp file (exclusive, optional fsync) and moves it into place
    /// with `link`; an `AlreadyExists` from `link` means "someone else's file
    /// is there" (`Ok(false)`). The temp file never survives.
    fn place(
        &self,
        d: &Digest,
        stored: &[u8],
        link: impl FnOnce(&Path, &Path) -> std::io::Result<()>,
    ) -> Result<bool> {
        let target = self.path(d);
        let shard = target.parent().expect("blob path has a shard dir");
        if !shard.is_dir() {
            mkdir(shard)?;
        }
        let tmp = self.temp_path(&d.to_hex()[..16]);
        let result = (|| {
            let mut f = create_exclusive(&tmp)?;
            f.write_all(stored).map_err(|e| Error::io(&tmp, e))?;
            if self.fsync {
                f.sync_all().map_err(|e| Error::io(&tmp, e))?;
            }
            match link(&tmp, &target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(Error::io(&target, e)),
            }
            if self.fsync {
                File::open(shard)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::io(shard, e))?;
            }
            Ok(true)
        })();
        // After a rename the temp path is gone; after a link or a failure it is not.
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Reads a blob's stored bytes; `Ok(None)` if the file does not exist.
    ///
    /// # Errors
    /// [`Error::Io`] for any other failure.
    pub fn read(&self, d: &Digest, expected_len: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path(d);
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        // Read one byte past the expected length so a grown file is caught;
        // allocate by the file's real length, never by what a row claims.
        let actual = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        let cap = expected_len.min(actual).saturating_add(1);
        let mut buf = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
        Read::by_ref(&mut f)
            .take(expected_len.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Some(buf))
    }

    /// True when the blob's file exists.
    pub fn exists(&self, d: &Digest) -> bool {
        fs::symlink_metadata(self.path(d)).is_ok_and(|m| m.is_file())
    }

    /// Unlinks a blob's file; a missing file is not an error.
    ///
    /// # Errors
    /// [`Error::Io`] for failures other than not-found.
    pub fn remove(&self, d: &Digest) -> Result<()> {
        let path = self.path(d);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Moves a bad blob's bytes out of the way, under `quarantine/`.
    /// Returns where they went.
    ///
    /// # Errors
    /// [`Error::Io`] if the quarantine copy cannot be written.
    pub fn quarantine(&self, d: &Digest, inline: Option<&[u8]>, now_ms: i64) -> Result<PathBuf> {
        let dest = self
            .root
            .join(QUARANTINE_DIR)
            .join(format!("{}-{now_ms}", d.to_hex()));
        match inline {
            Some(bytes) => {
                let mut f = create_exclusive(&dest)?;
                f.write_all(bytes).map_err(|e| Error::io(&dest, e))?;
            }
            None => match fs::rename(self.path(d), &dest) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&dest, e))
                }
                _ => {}
            },
        }
        Ok(dest)
    }

    /// A fresh, unused temp path inside `<root>/tmp`.
    pub fn temp_path(&self, tag: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(TMP_DIR)
            .join(format!("{tag}.{}.{n}.tmp", std::process::id()))
    }
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
