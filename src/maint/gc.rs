//! Orphan collection: blob files no row names, and abandoned temp files.
//!
//! An orphan is unlinked only inside a write transaction that sees no row
//! for it, so a concurrent writer that re-uses the blob either commits
//! first (and the file stays) or finds the file gone inside its own
//! transaction and rewrites it.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{since, GcReport, Progress};
use crate::base::digest::Digest;
use crate::base::error::{Error, Result};
use crate::disk::blob::files::{BLOBS_DIR, TMP_DIR};
use crate::disk::index;
use crate::disk::store::Store;

/// Temp files younger than this are in-flight writes of some process and
/// are never collected, whatever grace period a caller asks for.
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(15 * 60);

/// Removes orphan blob files older than `grace` and temp files older than
/// that and at least [`TEMP_MIN_AGE`].
///
/// # Errors
/// A storage error.
pub(crate) fn collect(
    store: &Store,
    root: &Path,
    grace: Duration,
    progress: Option<Progress<'_>>,
) -> Result<GcReport> {
    let start = Instant::now();
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    };
    let cutoff = secs(
        SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    let temp_cutoff = secs(
        SystemTime::now()
            .checked_sub(grace.max(TEMP_MIN_AGE))
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    let mut report = GcReport::default();

    // Directories are opened with O_NOFOLLOW and entries handled by name
    // through them (`*at` calls): a `tmp`, `blobs-v1` or shard that is a
    // link never leads gc out of the root.
    let tmp = root.join(TMP_DIR);
    if let Some(dir) = open_dir(None, &tmp)? {
        for (name, st) in list(&dir, &tmp)? {
            if st.kind == Kind::File
                && st.mtime <= temp_cutoff
                && rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()).is_ok()
            {
                report.temp_files_removed += 1;
            }
        }
    }
    let mut candidates: Vec<(Digest, u64)> = Vec::new();
    let blobs = root.join(BLOBS_DIR);
    let blobs_dir = open_dir(None, &blobs)?;
    let shards = match &blobs_dir {
        Some(dir) => list(dir, &blobs)?,
        None => Vec::new(),
    };
    let total = shards.len() as u64;
    for (i, (prefix, st)) in shards.into_iter().enumerate() {
        let shard_dir = match (st.kind, &blobs_dir) {
            (Kind::Dir, Some(p)) => open_dir(Some(p), Path::new(&prefix))?,
            _ => None,
        };
        let Some(shard_dir) = shard_dir else {
            report.foreign_files += 1;
            continue;
        };
        for (name, fm) in list(&shard_dir, &blobs.join(&prefix))? {
            match Digest::from_hex(&format!("{prefix}{name}")) {
                Some(d) if fm.kind == Kind::File => {
                    if fm.mtime <= cutoff {
                        candidates.push((d, fm.size));
                    }
                }
                _ => report.foreign_files += 1,
            }
        }
        if let Some(p) = progress {
            p(i as u64 + 1, total);
        }
    }
    for chunk in candidates.chunks(256) {
        let (n, bytes) = store.index.write(|tx| {
            let (mut n, mut bytes) = (0u64, 0u64);
            for (d, len) in chunk {
                if index::find_blob(tx, d)
                    .map_err(|e| store.index.wrap(e))?
                    .is_none()
                {
                    store.files.remove(d)?;
                    n += 1;
                    bytes += len;
                }
            }
            Ok((n, bytes))
        })?;
        report.orphan_files_removed += n;
        report.orphan_bytes_removed += bytes;
    }
    report.elapsed_ms = since(start);
    tracing::info!(
        orphans = report.orphan_files_removed,
        bytes = report.orphan_bytes_removed,
        temp = report.temp_files_removed,
        "gc pass"
    );
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Other,
}

/// What gc needs of an entry, read without following a link.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    /// Modification time, nanoseconds since the epoch.
    mtime: i128,
    size: u64,
}

/// Opens a directory (relative to `parent` when given) without following
/// a link; `None` when it is missing, or is a link or not a directory.
fn open_dir(parent: Option<&OwnedFd>, path: &Path) -> Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let r = match parent {
        Some(p) => rustix::fs::openat(p, path, flags, Mode::empty()),
        None => rustix::fs::open(path, flags, Mode::empty()),
    };
    match r {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

/// The entries of an open directory (`path` only names it in errors).
fn list(dir: &OwnedFd, path: &Path) -> Result<Vec<(String, Entry)>> {
    let mut out = Vec::new();
    let io = |e: Errno| Error::io(path, e.into());
    let mut d = rustix::fs::Dir::read_from(dir).map_err(io)?;
    while let Some(e) = d.read() {
        let e = e.map_err(io)?;
        let Ok(name) = e.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Dir,
                _ => Kind::Other,
            };
            out.push((
                name.to_owned(),
                Entry {
                    kind,
                    #[allow(clippy::useless_conversion)] // i32 on 32-bit targets
                    mtime: i128::from(i64::from(st.st_mtime)) * 1_000_000_000
                        + i128::from(st.st_mtime_nsec),
                    size: st.st_size as u64,
                },
            ));
        }
    }
    Ok(out)
}
