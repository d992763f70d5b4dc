//! Rebuilding a damaged index from what can still be read and verified.
//!
//! The damaged file (and its WAL) is copied into `tmp/` and read there with
//! `writable_schema` (so a truncated file is read up to where it ends,
//! instead of refused whole). Rows are salvaged table by table: a full scan
//! until the first error, then every key or id the secondary indexes still
//! list, looked up one by one (errors skipped). Every salvaged blob is
//! re-hashed (inline bytes, or its file); a blob row that was lost but whose
//! id → hash the hash index still knows is rebuilt from its file when the
//! file verifies. Entries whose blob is not proven are dropped. The new
//! index is built in `tmp/`, then swapped in; the damaged file is kept in
//! `quarantine/`. Nothing unverified is ever written to the new index.
//! It runs with no other process on the root: it takes the exclusive lock
//! on `index.seq` that every open cache holds shared, and refuses to start
//! (exit 6) while any process has the root open.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::since;
use crate::base::clock::Millis;
use crate::base::digest::Digest;
use crate::base::error::{Error, Result};
use crate::disk::blob::codec::{self, Codec};
use crate::disk::blob::files::{BlobFiles, Opened, QUARANTINE_DIR, TMP_DIR};
use crate::disk::index::{self, totals, Index, INDEX_FILE};

/// What `recover` salvaged and dropped.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoverReport {
    /// Entry rows read from the damaged index.
    pub entries_found: u64,
    /// Entries in the new index (their blob verified).
    pub entries_kept: u64,
    /// Entries dropped: their blob was lost or failed verification.
    pub entries_dropped: u64,
    /// Blobs in the new index, all verified.
    pub blobs_kept: u64,
    /// Of those, rebuilt from their file (the blob row itself was lost).
    pub blobs_rebuilt_from_files: u64,
    /// Blob rows dropped (bytes missing or failing verification).
    pub blobs_dropped: u64,
    /// Where the damaged index was kept.
    pub damaged_index_kept_at: String,
    /// Wall time of the recovery.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone)]
struct BlobRow {
    hash: Digest,
    size: u64,
    stored_size: u64,
    codec: i64,
    created_at: Millis,
    data: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct EntryRow {
    key: String,
    blob_id: i64,
    class: String,
    created_at: Millis,
    expires_at: Millis,
    etag: Option<String>,
    last_modified: Option<String>,
    headers: Option<String>,
    hits: i64,
    last_access: Millis,
}

const BLOB_COLS: &str = "id, hash, size, stored_size, codec, created_at, data";
const ENTRY_COLS: &str =
    "key, blob_id, class, created_at, expires_at, etag, last_modified, headers, hits, last_access";

fn blob_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, BlobRow)> {
    let h: Vec<u8> = r.get(1)?;
    Ok((
        r.get(0)?,
        BlobRow {
            hash: Digest::from_slice(&h).unwrap_or(Digest([0; 32])),
            size: r.get::<_, i64>(2)? as u64,
            stored_size: r.get::<_, i64>(3)? as u64,
            codec: r.get(4)?,
            created_at: r.get(5)?,
            data: r.get(6)?,
        },
    ))
}

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        key: r.get(0)?,
        blob_id: r.get(1)?,
        class: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        etag: r.get(5)?,
        last_modified: r.get(6)?,
        headers: r.get(7)?,
        hits: r.get(8)?,
        last_access: r.get(9)?,
    })
}

/// Rows of `sql` until the first error (what a damaged page allows).
fn scan<T>(c: &Connection, sql: &str, f: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> Vec<T> {
    let mut out = Vec::new();
    let Ok(mut st) = c.prepare(sql) else {
        return out;
    };
    let Ok(mut rows) = st.query([]) else {
        return out;
    };
    while let Ok(Some(r)) = rows.next() {
        match f(r) {
            Ok(v) => out.push(v),
            Err(_) => break,
        }
    }
    out
}

/// Rebuilds `<root>/index.sqlite` from what can be verified.
///
/// # Errors
/// A storage error while copying, building or swapping files (the root is
/// left as it was: the new index only replaces the old one at the end).
pub(crate) fn recover(root: &Path, now: Millis) -> Result<RecoverReport> {
    let start = Instant::now();
    // Never under a running process: every open cache holds a shared lock.
    let _alone = crate::disk::seq::lock_exclusive(root)
        .map_err(|e| Error::io(root.join(crate::disk::seq::SEQ_FILE), e))?;
    let mut report = RecoverReport::default();
    let files = BlobFiles::new(root, false)?;
    let index_path = root.join(INDEX_FILE);
    let wal = |p: &Path| PathBuf::from(format!("{}-wal", p.display()));
    let shm = |p: &Path| PathBuf::from(format!("{}-shm", p.display()));
    let copy = root
        .join(TMP_DIR)
        .join(format!("recover-{}.damaged", std::process::id()));
    for p in [&copy, &wal(&copy), &shm(&copy)] {
        let _ = std::fs::remove_file(p);
    }
    if index_path.exists() {
        std::fs::copy(&index_path, &copy).map_err(|e| Error::io(&copy, e))?;
        if wal(&index_path).exists() {
            std::fs::copy(wal(&index_path), wal(&copy)).map_err(|e| Error::io(&copy, e))?;
        }
    }

    // 1. Salvage rows from the copy.
    let (mut blobs, hash_of, entries, counters) = match Connection::open_with_flags(
        &copy,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    ) {
        Ok(c) => {
            // Written by a newer freshcache: its rows may use encodings this
            // build cannot read, and salvaging would drop them as damage.
            if let Ok(found) = crate::disk::index::schema::version(&c) {
                if found > crate::disk::index::schema::SCHEMA_VERSION {
                    drop(c);
                    for p in [&copy, &wal(&copy), &shm(&copy)] {
                        let _ = std::fs::remove_file(p);
                    }
                    return Err(Error::SchemaVersion {
                        path: index_path,
                        found,
                        supported: crate::disk::index::schema::SCHEMA_VERSION,
                    });
                }
            }
            salvage(&c)
        }
        Err(_) => Default::default(),
    };
    report.entries_found = entries.len() as u64;

    // 2. Re-hash: keep only blobs whose bytes verify; rebuild lost rows
    //    from their files where the hash index still names them.
    let mut kept: BTreeMap<i64, BlobRow> = BTreeMap::new();
    for (id, hash) in &hash_of {
        if !blobs.contains_key(id) {
            if let Some(b) = rebuild_from_file(&files, hash)? {
                blobs.insert(*id, b);
                report.blobs_rebuilt_from_files += 1;
            }
        }
    }
    for (id, b) in blobs {
        if verified(&files, &b)? {
            kept.insert(id, b);
        } else {
            report.blobs_dropped += 1;
        }
    }

    // 3. Build the new index in tmp/, then swap it in.
    let new_name = format!("{TMP_DIR}/recover-{}.sqlite", std::process::id());
    let new_path = root.join(&new_name);
    for p in [&new_path, &wal(&new_path), &shm(&new_path)] {
        let _ = std::fs::remove_file(p);
    }
    {
        let idx = Index::create_at(root, &new_name)?;
        let (entries_kept, blobs_kept) = idx.write(|tx| {
            let w = |e| idx.wrap(e);
            let mut refs: HashMap<i64, i64> = HashMap::new();
            let mut n = 0u64;
            for e in &entries {
                if !kept.contains_key(&e.blob_id) {
                    continue;
                }
                tx.execute(
                    &format!("INSERT OR REPLACE INTO entries({ENTRY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                    params![e.key, e.blob_id, e.class, e.created_at, e.expires_at, e.etag, e.last_modified, e.headers, e.hits, e.last_access],
                )
                .map_err(w)?;
                *refs.entry(e.blob_id).or_default() += 1;
                n += 1;
            }
            let mut b_n = 0u64;
            for (id, b) in &kept {
                let Some(r) = refs.get(id) else { continue };
                tx.execute(
                    "INSERT INTO blobs(id, hash, size, stored_size, codec, refs, created_at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![id, &b.hash.0[..], b.size as i64, b.stored_size as i64, b.codec, r, b.created_at, b.data],
                )
                .map_err(w)?;
                b_n += 1;
            }
            // Persisted statistics survive; running totals are recomputed.
            for (name, v) in &counters {
                index::set_counter(tx, name, *v).map_err(w)?;
            }
            let (entries_n, logical, keys): (i64, i64, i64) = tx
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(b.size), 0), COALESCE(SUM(length(CAST(e.key AS BLOB))), 0) \
                     FROM entries e JOIN blobs b ON b.id = e.blob_id",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(w)?;
            let (stored, file): (i64, i64) = tx
                .query_row(
                    "SELECT COALESCE(SUM(stored_size), 0), COALESCE(SUM(CASE WHEN data IS NULL THEN stored_size END), 0) FROM blobs",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(w)?;
            for (name, v) in [
                (totals::ENTRIES, entries_n),
                (totals::LOGICAL_BYTES, logical),
                (totals::KEY_BYTES, keys),
                (totals::STORED_BYTES, stored),
                (totals::FILE_BYTES, file),
            ] {
                index::set_counter(tx, name, v).map_err(w)?;
            }
            Ok((n, b_n))
        })?;
        report.entries_kept = entries_kept;
        report.blobs_kept = blobs_kept;
        report.blobs_dropped += kept.len() as u64 - blobs_kept;
    } // closed: its WAL is checkpointed into the file and removed
    report.entries_dropped = report.entries_found - report.entries_kept;

    let kept_at = root
        .join(QUARANTINE_DIR)
        .join(format!("index-{now}.sqlite"));
    if index_path.exists() {
        std::fs::rename(&index_path, &kept_at).map_err(|e| Error::io(&kept_at, e))?;
        if wal(&index_path).exists() {
            std::fs::rename(wal(&index_path), wal(&kept_at)).map_err(|e| Error::io(&kept_at, e))?;
        }
    }
    // A stale -shm or -wal must never be applied to the new file.
    let _ = std::fs::remove_file(shm(&index_path));
    let _ = std::fs::remove_file(wal(&index_path));
    std::fs::rename(&new_path, &index_path).map_err(|e| Error::io(&index_path, e))?;
    for p in [
        &copy,
        &wal(&copy),
        &shm(&copy),
        &wal(&new_path),
        &shm(&new_path),
    ] {
        let _ = std::fs::remove_file(p);
    }
    report.damaged_index_kept_at = kept_at.display().to_string();
    report.elapsed_ms = since(start);
    tracing::warn!(
        kept = report.entries_kept,
        dropped = report.entries_dropped,
        "index recovered"
    );
    Ok(report)
}

type Salvage = (
    BTreeMap<i64, BlobRow>,
    BTreeMap<i64, Digest>,
    Vec<EntryRow>,
    Vec<(String, i64)>,
);

/// Everything still readable: blob rows, id → hash from the hash index,
/// entry rows, persisted counters (not the running totals).
fn salvage(c: &Connection) -> Salvage {
    // Read a truncated file up to where it ends instead of refusing it.
    let _ = c.execute_batch("PRAGMA writable_schema = ON; PRAGMA cell_size_check = ON;");
    let mut blobs: BTreeMap<i64, BlobRow> = scan(
        c,
        &format!("SELECT {BLOB_COLS} FROM blobs ORDER BY id"),
        blob_row,
    )
    .into_iter()
    .collect();
    let hash_of: BTreeMap<i64, Digest> = scan(
        c,
        "SELECT id, hash FROM blobs INDEXED BY sqlite_autoindex_blobs_1 ORDER BY hash",
        |r| {
            let h: Vec<u8> = r.get(1)?;
            Ok((r.get(0)?, Digest::from_slice(&h).unwrap_or(Digest([0; 32]))))
        },
    )
    .into_iter()
    .collect();
    let mut entries: BTreeMap<String, EntryRow> = scan(
        c,
        &format!("SELECT {ENTRY_COLS} FROM entries ORDER BY key"),
        entry_row,
    )
    .into_iter()
    .map(|e| (e.key.clone(), e))
    .collect();
    // Keys the secondary indexes still list, looked up one by one.
    for ix in ["entries_by_access", "entries_by_expiry", "entries_by_blob"] {
        let keys = scan(
            c,
            &format!("SELECT key FROM entries INDEXED BY {ix}"),
            |r| r.get::<_, String>(0),
        );
        for k in keys {
            if entries.contains_key(&k) {
                continue;
            }
            let row = c
                .query_row(
                    &format!("SELECT {ENTRY_COLS} FROM entries WHERE key = ?1"),
                    [&k],
                    entry_row,
                )
                .optional();
            if let Ok(Some(e)) = row {
                entries.insert(k, e);
            }
        }
    }
    let ids: Vec<i64> = hash_of
        .keys()
        .copied()
        .chain(entries.values().map(|e| e.blob_id))
        .collect();
    for id in ids {
        if blobs.contains_key(&id) {
            continue;
        }
        let row = c
            .query_row(
                &format!("SELECT {BLOB_COLS} FROM blobs WHERE id = ?1"),
                [id],
                blob_row,
            )
            .optional();
        if let Ok(Some((id, b))) = row {
            blobs.insert(id, b);
        }
    }
    let total_names = [
        totals::ENTRIES,
        totals::STORED_BYTES,
        totals::LOGICAL_BYTES,
        totals::FILE_BYTES,
        totals::KEY_BYTES,
    ];
    let counters = scan(c, "SELECT name, value FROM counters", |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })
    .into_iter()
    .filter(|(n, _)| !total_names.contains(&n.as_str()))
    .collect();
    (blobs, hash_of, entries.into_values().collect(), counters)
}

/// True when a salvaged blob's bytes (inline, or its file) verify.
fn verified(files: &BlobFiles, b: &BlobRow) -> Result<bool> {
    let Some(codec) = Codec::from_i64(b.codec) else {
        return Ok(false);
    };
    match &b.data {
        Some(d) => Ok(d.len() as u64 == b.stored_size
            && codec::verify_stream(codec, &d[..], b.stored_size, b.size, &b.hash)
                .unwrap_or(false)),
        None => match files.open(&b.hash)? {
            Opened::File(f, len) if len == b.stored_size => {
                Ok(
                    codec::verify_stream(codec, files.reader(f), b.stored_size, b.size, &b.hash)
                        .unwrap_or(false),
                )
            }
            _ => Ok(false),
        },
    }
}

/// A blob row rebuilt from its file, if the file decodes (headed LZ4 block,
/// zstd frame, or raw) to bytes that hash to its name.
fn rebuild_from_file(files: &BlobFiles, hash: &Digest) -> Result<Option<BlobRow>> {
    let Opened::File(f, len) = files.open(hash)? else {
        return Ok(None);
    };
    let mut head = [0u8; 18];
    let n = {
        use std::io::Read;
        let mut r = files.reader(f);
        let mut n = 0;
        while n < head.len() {
            match r.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    };
    let mut candidates = vec![(Codec::Raw, len)];
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&head[..n]) {
        candidates.insert(0, (Codec::Zstd, size));
    }
    if let Some(size) = codec::lz4_file_size(&head[..n]) {
        candidates.insert(0, (Codec::Lz4File, size));
    }
    for (codec, size) in candidates {
        let Opened::File(f, _) = files.open(hash)? else {
            return Ok(None);
        };
        if codec::verify_stream(codec, files.reader(f), len, size, hash).unwrap_or(false) {
            return Ok(Some(BlobRow {
                hash: *hash,
                size,
                stored_size: len,
                codec: codec as i64,
                created_at: 0,
                data: None,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_rebuilt_from_a_file_of_each_encoding_and_never_from_a_lie() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlobFiles::new(dir.path(), false).unwrap();
        let json = br#"{"odds":[1.5,2.25],"book":"b7","t":47.5}"#.repeat(2000);
        let lz4 = codec::encode_lz4_file(&json).unwrap();
        let (zc, zstd) = codec::encode(&json, 3);
        assert_eq!(zc, Codec::Zstd);
        let raw: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for (codec, value, stored) in [
            (Codec::Lz4File, &json[..], &lz4[..]),
            (Codec::Zstd, &json[..], &zstd[..]),
            (Codec::Raw, &raw[..], &raw[..]),
        ] {
            let d = Digest::of(value);
            files.write(&d, stored).unwrap();
            let row = rebuild_from_file(&files, &d).unwrap().expect("rebuilt");
            assert_eq!(row.codec, codec as i64, "{codec:?}");
            assert_eq!(
                (row.size, row.stored_size),
                (value.len() as u64, stored.len() as u64)
            );
            assert!(verified(&files, &row).unwrap());
        }
        // An LZ4 file whose header names another size, or under another
        // content's name, is not rebuilt.
        let mut lying = lz4.clone();
        lying[4] ^= 1;
        let d = Digest::of(&json[..json.len() - 1]);
        files.write(&d, &lz4).unwrap();
        assert!(rebuild_from_file(&files, &d).unwrap().is_none());
        let d2 = Digest::of(b"another");
        files.write(&d2, &lying).unwrap();
        assert!(rebuild_from_file(&files, &d2).unwrap().is_none());
    }
}
