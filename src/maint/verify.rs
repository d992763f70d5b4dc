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
    let idx = &store.index;
    let w = |e| idx.wrap(e);
    let mut report = VerifyReport {
        repaired: repair,
        ..Default::default()
    };

    // 1. Every blob hashes to its name.
    let blobs: Vec<(i64, Digest, u64, u64, i64, bool)> = idx.read(|c| {
        let mut st =
            c.prepare("SELECT id, hash, size, stored_size, codec, data IS NULL FROM blobs")?;
        let rows = st.query_map([], |r| {
            let h: Vec<u8> = r.get(1)?;
            Ok((
                r.get(0)?,
                Digest::from_slice(&h).unwrap_or(Digest([0; 32])),
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        rows.collect()
    })?;
    let total = blobs.len() as u64;
    let mut bad = Vec::new();
    for (i, (id, hash, size, stored_size, codec, is_file)) in blobs.into_iter().enumerate() {
        report.blobs_checked += 1;
        let stored = if is_file {
            store.files.read(&hash, stored_size)?
        } else {
            idx.read(|c| {
                c.query_row("SELECT data FROM blobs WHERE id = ?1", [id], |r| {
                    r.get::<_, Option<Vec<u8>>>(0)
                })
                .optional()
                .map(Option::flatten)
            })?
        };
        let ok = match (&stored, codec::Codec::from_i64(codec)) {
            (Some(b), Some(c)) => {
                b.len() as u64 == stored_size && codec::decode(c, b, size, &hash).is_some()
            }
            _ => false,
        };
        if !ok {
            report.problems.push(match stored {
                None => Problem::MissingBlob {
                    hash: hash.to_hex(),
                },
                Some(_) => Problem::CorruptBlob {
                    hash: hash.to_hex(),
                },
            });
            bad.push((id, hash, stored));
        }
        if let Some(p) = progress {
            p(i as u64 + 1, total);
        }
    }

    // 2. Refcounts, dangling entries, totals.
    let (refs, dangling, totals_now) = idx.read(|c| {
        let mut st = c.prepare(
            "SELECT b.hash, b.refs, (SELECT COUNT(*) FROM entries e WHERE e.blob_id = b.id) FROM blobs b",
        )?;
        let refs: Vec<(Vec<u8>, i64, i64)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
        let mut st = c.prepare(
            "SELECT e.key FROM entries e LEFT JOIN blobs b ON b.id = e.blob_id WHERE b.id IS NULL",
        )?;
        let dangling: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let totals_now = actual_totals(c)?;
        Ok((refs, dangling, totals_now))
    })?;
    report.entries_checked = totals_now[totals::ENTRIES] as u64;
    for (h, recorded, actual) in &refs {
        if recorded != actual {
            let hash = Digest::from_slice(h)
                .map(|d| d.to_hex())
                .unwrap_or_default();
            report.problems.push(Problem::WrongRefcount {
                hash,
                refs: *recorded,
                actual: *actual,
            });
        }
    }
    for key in &dangling {
        report
            .problems
            .push(Problem::DanglingEntry { key: key.clone() });
    }
    let recorded = idx.read(|c| {
        [
            totals::ENTRIES,
            totals::STORED_BYTES,
            totals::LOGICAL_BYTES,
            totals::FILE_BYTES,
            totals::KEY_BYTES,
        ]
        .into_iter()
        .map(|n| Ok((n, index::counter(c, n)?)))
        .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    for (name, value) in recorded {
        if totals_now[name] != value {
            report.problems.push(Problem::WrongTotal {
                name: name.into(),
                recorded: value,
                actual: totals_now[name],
            });
        }
    }

    if repair && !report.is_clean() {
        for (id, hash, _) in bad {
            // Re-checked inside the write lock: the scan ran outside any
            // transaction, so the blob may have been released, healed or
            // its id reused since.
            let keys = store.write(|tx| {
                let row: Option<BlobRow> = tx
                    .query_row(
                        "SELECT hash, size, stored_size, codec, data FROM blobs WHERE id = ?1",
                        [id],
                        |r| {
                            Ok((
                                r.get(0)?,
                                r.get::<_, i64>(1)? as u64,
                                r.get::<_, i64>(2)? as u64,
                                r.get(3)?,
                                r.get(4)?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(w)?;
                let Some((h, size, stored_size, codec, inline)) = row else {
                    return Ok(Vec::new());
                };
                if h != hash.0 {
                    return Ok(Vec::new());
                }
                let bytes = match inline {
                    Some(b) => Some(b),
                    None => store.files.read(&hash, stored_size)?,
                };
                let still_bad = match (&bytes, codec::Codec::from_i64(codec)) {
                    (Some(b), Some(c)) => {
                        b.len() as u64 != stored_size || codec::decode(c, b, size, &hash).is_none()
                    }
                    _ => true,
                };
                if !still_bad {
                    return Ok(Vec::new());
                }
                if let Some(b) = &bytes {
                    store.files.quarantine(&hash, Some(b), now)?;
                }
                let keys = index::keys_of_blob(tx, id).map_err(w)?;
                for k in &keys {
                    index::delete_entry(tx, k).map_err(w)?;
                }
                tx.execute("DELETE FROM blobs WHERE id = ?1", [id])
                    .map_err(w)?;
                store.defer_unlink(hash);
                index::bump(tx, names::CORRUPT_BLOBS, 1).map_err(w)?;
                Ok(keys)
            })?;
            report.keys_dropped.extend(keys);
        }
        store.write(|tx| {
            for key in &dangling {
                index::delete_entry(tx, key).map_err(w)?;
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
            Ok(())
        })?;
        report.keys_dropped.extend(dangling);
    }
    report.elapsed_ms = since(start);
    Ok(report)
}

/// hash, size, stored_size, codec, inline data.
type BlobRow = (Vec<u8>, u64, u64, i64, Option<Vec<u8>>);

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
