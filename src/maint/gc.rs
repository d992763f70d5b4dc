//! Orphan collection: blob files no row names, and abandoned temp files.
//!
//! An orphan is unlinked only inside a write transaction that sees no row
//! for it, so a concurrent writer that re-uses the blob either commits
//! first (and the file stays) or finds the file gone inside its own
//! transaction and rewrites it.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

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
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let old = |m: &std::fs::Metadata| m.modified().is_ok_and(|t| t <= cutoff);
    let temp_cutoff = SystemTime::now()
        .checked_sub(grace.max(TEMP_MIN_AGE))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();

    for e in read_dir(&root.join(TMP_DIR))? {
        let m = e.1;
        let old_temp = m.modified().is_ok_and(|t| t <= temp_cutoff);
        if m.is_file() && old_temp && std::fs::remove_file(&e.0).is_ok() {
            report.temp_files_removed += 1;
        }
    }
    let mut candidates: Vec<(Digest, u64)> = Vec::new();
    let shards = read_dir(&root.join(BLOBS_DIR))?;
    let total = shards.len() as u64;
    for (i, (shard, m)) in shards.into_iter().enumerate() {
        if !m.is_dir() {
            report.foreign_files += 1;
            continue;
        }
        let prefix = shard
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        for (file, fm) in read_dir(&shard)? {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            match Digest::from_hex(&format!("{prefix}{name}")) {
                Some(d) if fm.is_file() => {
                    if old(&fm) {
                        candidates.push((d, fm.len()));
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

fn read_dir(dir: &std::path::Path) -> Result<Vec<(std::path::PathBuf, std::fs::Metadata)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|err| Error::io(dir, err))?;
        // symlink_metadata: never follow links out of the root.
        if let Ok(m) = std::fs::symlink_metadata(e.path()) {
            out.push((e.path(), m));
        }
    }
    Ok(out)
}
