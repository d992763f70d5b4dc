//! Verification: every blob against its name, every row's blob,
//! refcounts and running totals; with repair, quarantine and fix-up.

use std::collections::HashMap;
use std::time::Instant;

use rusqlite::OptionalExtension;

use super::{since, Problem, Progress, VerifyReport};
use crate::base::clock::Millis;
use crate::base::digest::Digest;
use crate::base::error::Result;
use crate::base::names;
use crate::disk::blob::codec;
use crate::disk::blob::files::Opened;
use crate::disk::index::{self, totals};
use crate::disk::store::Store;

/// Checks every blob against its name, every row's blob, refcounts and
/// running totals. With `repair`, quarantines bad blobs, drops rows that
/// point at nothing, fixes refcounts and totals. The caller flushes batched
/// access records first.
///
/// # Errors
/// A storage error (problems in the data are reported, not errors).
pub(crate) fn verify(
    store: &Store,
    repair: bool,
    now: Millis,
    progress: Option<Progress<'_>>,
) -> Result<VerifyReport> {
    let start = Instant::now();
    let mut report = VerifyReport {
        repaired: repair,
        ..Default::default()
    };
    match verify_in(store, repair, now, progress, &mut report) {
        Ok(()) => {}
        // A damaged index is what verify is for: a finding, not a failure.
        Err(e) if index::is_damaged(&e) => {
            report.problems.push(Problem::DamagedIndex {
                detail: format!("{e:#}"),
            });
            report.repaired = false;
        }
        Err(e) => return Err(e),
    }
    report.elapsed_ms = since(start);
    Ok(report)
}

/// What a blob's bytes are, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobState {
    Good,
    Missing,
    Corrupt,
}

/// One blob row as verification sees it.
#[derive(Debug, Clone, Copy)]
struct BlobInfo {
    id: i64,
    hash: Digest,
    size: u64,
    stored_size: u64,
    codec: i64,
    is_file: bool,
}

fn blob_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<BlobInfo> {
    let h: Vec<u8> = r.get(1)?;
    Ok(BlobInfo {
        id: r.get(0)?,
        hash: Digest::from_slice(&h).unwrap_or(Digest([0; 32])),
        size: r.get::<_, i64>(2)? as u64,
        stored_size: r.get::<_, i64>(3)? as u64,
        codec: r.get(4)?,
        is_file: r.get(5)?,
    })
}

const BLOB_INFO: &str = "SELECT id, hash, size, stored_size, codec, data IS NULL FROM blobs";

/// Checks one blob's bytes without holding them (streaming), on `c`
/// (inline bytes) and the file store.
fn check_blob(store: &Store, c: &rusqlite::Connection, b: &BlobInfo) -> Result<BlobState> {
    let Some(codec) = codec::Codec::from_i64(b.codec) else {
        return Ok(BlobState::Corrupt);
    };
    if b.is_file {
        let (f, len) = match store.files.open(&b.hash)? {
            Opened::File(f, len) => (f, len),
            Opened::Missing => return Ok(BlobState::Missing),
            Opened::NotAFile => return Ok(BlobState::Corrupt),
        };
        if len != b.stored_size {
            return Ok(BlobState::Corrupt);
        }
        let ok = codec::verify_stream(codec, store.files.reader(f), b.stored_size, b.size, &b.hash)
            .map_err(|e| crate::base::error::Error::Io {
                path: store.files.path(&b.hash),
                source: e,
            })?;
        return Ok(if ok {
            BlobState::Good
        } else {
            BlobState::Corrupt
        });
    }
    let data: Option<Vec<u8>> = c
        .query_row("SELECT data FROM blobs WHERE id = ?1", [b.id], |r| r.get(0))
        .optional()
        .map_err(|e| store.index.wrap(e))?
        .flatten();
    let Some(data) = data else {
        return Ok(BlobState::Missing);
    };
    let ok = data.len() as u64 == b.stored_size
        && codec::verify_stream(codec, &data[..], b.stored_size, b.size, &b.hash).unwrap_or(false);
    Ok(if ok {
        BlobState::Good
    } else {
        BlobState::Corrupt
    })
}

/// Structural findings of one snapshot: refcounts, dangling entries, totals.
fn structure(
    c: &rusqlite::Connection,
    report_entries: &mut u64,
) -> rusqlite::Result<(Vec<Problem>, Vec<String>)> {
    let mut problems = Vec::new();
    let mut st = c.prepare(
        "SELECT b.hash, b.refs, (SELECT COUNT(*) FROM entries e WHERE e.blob_id = b.id) FROM blobs b",
    )?;
    let refs: Vec<(Vec<u8>, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (h, recorded, actual) in refs {
        if recorded != actual {
            let hash = Digest::from_slice(&h)
                .map(|d| d.to_hex())
                .unwrap_or_default();
            problems.push(Problem::WrongRefcount {
                hash,
                refs: recorded,
                actual,
            });
        }
    }
    let mut st = c.prepare(
        "SELECT e.key FROM entries e LEFT JOIN blobs b ON b.id = e.blob_id WHERE b.id IS NULL",
    )?;
    let dangling: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for key in &dangling {
        problems.push(Problem::DanglingEntry { key: key.clone() });
    }
    let totals_now = actual_totals(c)?;
    *report_entries = totals_now[totals::ENTRIES] as u64;
    for name in [
        totals::ENTRIES,
        totals::STORED_BYTES,
        totals::LOGICAL_BYTES,
        totals::FILE_BYTES,
        totals::KEY_BYTES,
    ] {
        let value = index::counter(c, name)?;
        if totals_now[name] != value {
            problems.push(Problem::WrongTotal {
                name: name.into(),
                recorded: value,
                actual: totals_now[name],
            });
        }
    }
    Ok((problems, dangling))
}

fn verify_in(
    store: &Store,
    repair: bool,
    now: Millis,
    progress: Option<Progress<'_>>,
    report: &mut VerifyReport,
) -> Result<()> {
    let idx = &store.index;
    let w = |e| idx.wrap(e);

    // 0. The file itself (b-tree structure, page counts).
    let check: Vec<String> = idx.read(|c| {
        let mut st = c.prepare("PRAGMA quick_check(20)")?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect()
    })?;
    if check.first().map(String::as_str) != Some("ok") {
        report.problems.push(Problem::DamagedIndex {
            detail: check.join("; "),
        });
        report.repaired = false;
        return Ok(());
    }

    // 1. Every blob hashes to its name: rows listed and bytes read within
    //    one read snapshot; a blob that looks bad is checked again under the
    //    write lock (a writer may have released it meanwhile) before it is
    //    reported.
    let mut suspects = Vec::new();
    let mut entries = 0;
    let mut structural = idx.read_snapshot(|r| {
        let c = r.conn();
        let blobs: Vec<BlobInfo> = {
            let mut st = c.prepare(BLOB_INFO).map_err(w)?;
            let rows = st.query_map([], blob_info).map_err(w)?;
            rows.collect::<rusqlite::Result<_>>().map_err(w)?
        };
        let total = blobs.len() as u64;
        for (i, b) in blobs.iter().enumerate() {
            report.blobs_checked += 1;
            if check_blob(store, c, b)? != BlobState::Good {
                suspects.push(*b);
            }
            if let Some(p) = progress {
                p(i as u64 + 1, total);
            }
        }
        // 2. Refcounts, dangling entries, totals, in the same snapshot.
        structure(c, &mut entries).map_err(w)
    })?;
    report.entries_checked = entries;
    let mut bad = Vec::new();
    for b in suspects {
        let state = store.index.write(|tx| {
            let now_row: Option<BlobInfo> = tx
                .query_row(&format!("{BLOB_INFO} WHERE id = ?1"), [b.id], blob_info)
                .optional()
                .map_err(w)?;
            match now_row {
                Some(r) if r.hash == b.hash => check_blob(store, tx, &r),
                _ => Ok(BlobState::Good), // released or replaced meanwhile
            }
        })?;
        match state {
            BlobState::Good => {}
            BlobState::Missing => report.problems.push(Problem::MissingBlob {
                hash: b.hash.to_hex(),
            }),
            BlobState::Corrupt => report.problems.push(Problem::CorruptBlob {
                hash: b.hash.to_hex(),
            }),
        }
        if state != BlobState::Good {
            bad.push(b);
        }
    }
    if !structural.0.is_empty() {
        // Consistent in its snapshot; confirmed under the write lock.
        structural = store
            .index
            .write(|tx| structure(tx, &mut entries).map_err(w))?;
    }
    let (problems, dangling) = structural;
    report.problems.extend(problems);

    if repair && !report.is_clean() {
        for b in bad {
            // Re-checked inside the write lock once more: the blob may have
            // been released, healed or its id reused since.
            let keys = store.write(|tx| {
                let row: Option<BlobInfo> = tx
                    .query_row(&format!("{BLOB_INFO} WHERE id = ?1"), [b.id], blob_info)
                    .optional()
                    .map_err(w)?;
                let Some(r) = row else {
                    return Ok(Vec::new());
                };
                if r.hash != b.hash || check_blob(store, tx, &r)? == BlobState::Good {
                    return Ok(Vec::new());
                }
                if r.is_file {
                    // The file (or the link standing in for it) leaves the store.
                    store.files.quarantine(&r.hash, None, now)?;
                } else if let Some(d) = tx
                    .query_row("SELECT data FROM blobs WHERE id = ?1", [r.id], |x| {
                        x.get::<_, Option<Vec<u8>>>(0)
                    })
                    .map_err(w)?
                {
                    store.files.quarantine(&r.hash, Some(&d), now)?;
                }
                let keys = index::keys_of_blob(tx, r.id).map_err(w)?;
                for k in &keys {
                    index::delete_entry(tx, k, true).map_err(w)?;
                    index::log_change(tx, k).map_err(w)?;
                }
                tx.execute("DELETE FROM blobs WHERE id = ?1", [r.id])
                    .map_err(w)?;
                index::bump(tx, names::CORRUPT_BLOBS, 1).map_err(w)?;
                Ok(keys)
            })?;
            report.keys_dropped.extend(keys);
        }
        let dangling = store.write(|tx| {
            // Only an entry that still dangles: a writer may have put the key
            // again since it was found, and that value is acknowledged.
            let mut dropped = Vec::new();
            for key in dangling {
                let gone = tx
                    .prepare_cached(
                        "DELETE FROM entries WHERE key = ?1 AND NOT EXISTS \
                         (SELECT 1 FROM blobs b WHERE b.id = entries.blob_id)",
                    )
                    .and_then(|mut st| st.execute([&key]))
                    .map_err(w)?;
                if gone > 0 {
                    index::log_change(tx, &key).map_err(w)?;
                    dropped.push(key);
                }
            }
            tx.execute_batch(
                "UPDATE blobs SET refs = (SELECT COUNT(*) FROM entries e WHERE e.blob_id = blobs.id);",
            )
            .map_err(w)?;
            // Blobs nothing references any more.
            let unreferenced: Vec<(Vec<u8>, bool)> = {
                let mut st = tx.prepare("SELECT hash, data IS NULL FROM blobs WHERE refs = 0").map_err(w)?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(w)?;
                rows.collect::<rusqlite::Result<_>>().map_err(w)?
            };
            tx.execute("DELETE FROM blobs WHERE refs = 0", []).map_err(w)?;
            for (h, is_file) in unreferenced {
                if let (true, Some(d)) = (is_file, Digest::from_slice(&h)) {
                    store.defer_unlink(d);
                }
            }
            let t = actual_totals(tx).map_err(w)?;
            for (name, value) in t {
                index::set_counter(tx, name, value).map_err(w)?;
            }
            Ok(dropped)
        })?;
        report.keys_dropped.extend(dangling);
    }
    Ok(())
}

/// The true values of the running totals, computed by scanning.
fn actual_totals(c: &rusqlite::Connection) -> rusqlite::Result<HashMap<&'static str, i64>> {
    let (entries, logical): (i64, i64) = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(b.size), 0) FROM entries e JOIN blobs b ON b.id = e.blob_id",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (stored, files): (i64, i64) = c.query_row(
        "SELECT COALESCE(SUM(stored_size), 0), COALESCE(SUM(CASE WHEN data IS NULL THEN stored_size END), 0) FROM blobs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let keys: i64 = c.query_row(
        "SELECT COALESCE(SUM(length(CAST(key AS BLOB))), 0) FROM entries",
        [],
        |r| r.get(0),
    )?;
    Ok(HashMap::from([
        (totals::KEY_BYTES, keys),
        (totals::ENTRIES, entries),
        (totals::LOGICAL_BYTES, logical),
        (totals::STORED_BYTES, stored),
        (totals::FILE_BYTES, files),
    ]))
}
