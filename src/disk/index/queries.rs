//! The statements of the index: rows, counters, blobs, refcounts, the
//! change log, access records and the size accounting. Each takes a
//! connection (or transaction) the caller holds.

use super::*;

/// Looks up one key. `want_inline` decides, given the row, whether the
/// inline bytes are read at all (not when expired or already in L1).
pub fn lookup(
    c: &Connection,
    key: &str,
    want_inline: &dyn Fn(&Row) -> bool,
) -> rusqlite::Result<Option<Found>> {
    let mut st = c.prepare_cached(LOOKUP)?;
    lookup_with(&mut st, key, want_inline)
}

/// The point lookup's SQL (held prepared by every pooled reader).
pub(crate) const LOOKUP: &str = concat!(
    "SELECT ",
    row_columns!(),
    ", b.data FROM entries e JOIN blobs b ON b.id = e.blob_id WHERE e.key = ?1"
);

/// [`lookup`] on a statement prepared from [`LOOKUP`].
pub(crate) fn lookup_with(
    st: &mut rusqlite::Statement<'_>,
    key: &str,
    want_inline: &dyn Fn(&Row) -> bool,
) -> rusqlite::Result<Option<Found>> {
    st.query_row([key], |r| {
        let row = read_row(r)?;
        let inline = if want_inline(&row) {
            r.get::<_, Option<Vec<u8>>>(15)?
        } else {
            None
        };
        Ok(Found { row, inline })
    })
    .optional()
}

/// Rows with keys in `[lo, hi)` (unbounded above when `hi` is `None`), in key order.
pub fn range(c: &Connection, lo: &str, hi: Option<&str>) -> rusqlite::Result<Vec<Row>> {
    let base = format!("SELECT {ROW_COLUMNS} FROM entries e JOIN blobs b ON b.id = e.blob_id");
    match hi {
        Some(hi) => {
            let mut st = c.prepare_cached(&format!(
                "{base} WHERE e.key >= ?1 AND e.key < ?2 ORDER BY e.key"
            ))?;
            let rows = st.query_map(params![lo, hi], read_row)?;
            rows.collect()
        }
        None => {
            let mut st = c.prepare_cached(&format!("{base} WHERE e.key >= ?1 ORDER BY e.key"))?;
            let rows = st.query_map(params![lo], read_row)?;
            rows.collect()
        }
    }
}

/// A counter's value (0 when absent).
pub fn counter(c: &Connection, name: &str) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

/// Every counter whose name starts with `prefix`.
pub fn counters_with_prefix(c: &Connection, prefix: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    let hi = crate::base::key::prefix_upper_bound(prefix).unwrap_or_else(|| "\u{10FFFF}".into());
    let mut st = c.prepare_cached(
        "SELECT name, value FROM counters WHERE name >= ?1 AND name < ?2 ORDER BY name",
    )?;
    let rows = st.query_map(params![prefix, hi], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Adds `delta` to a counter.
pub fn bump(c: &Connection, name: &str, delta: i64) -> rusqlite::Result<()> {
    if delta != 0 {
        c.prepare_cached(
            "INSERT INTO counters(name, value) VALUES (?1, ?2) \
             ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        )?
        .execute(params![name, delta])?;
    }
    Ok(())
}

/// Adds several deltas in one statement (zero deltas skipped).
pub fn bump_many(c: &Connection, deltas: &[(&str, i64)]) -> rusqlite::Result<()> {
    const SQL: [&str; 5] = [
        "INSERT INTO counters(name, value) VALUES (?, ?) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        "INSERT INTO counters(name, value) VALUES (?, ?), (?, ?) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        "INSERT INTO counters(name, value) VALUES (?, ?), (?, ?), (?, ?) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        "INSERT INTO counters(name, value) VALUES (?, ?), (?, ?), (?, ?), (?, ?) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        "INSERT INTO counters(name, value) VALUES (?, ?), (?, ?), (?, ?), (?, ?), (?, ?) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    ];
    let nonzero: Vec<&(&str, i64)> = deltas.iter().filter(|(_, d)| *d != 0).collect();
    for chunk in nonzero.chunks(SQL.len()) {
        let mut st = c.prepare_cached(SQL[chunk.len() - 1])?;
        let params: Vec<&dyn rusqlite::ToSql> = chunk
            .iter()
            .flat_map(|(n, d)| [n as &dyn rusqlite::ToSql, d as &dyn rusqlite::ToSql])
            .collect();
        st.execute(params.as_slice())?;
    }
    Ok(())
}

/// Sets a counter.
pub fn set_counter(c: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO counters(name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

/// The blob row for `hash`, if any.
pub fn find_blob(c: &Connection, hash: &Digest) -> rusqlite::Result<Option<BlobRef>> {
    c.prepare_cached("SELECT id, stored_size, data IS NULL, codec FROM blobs WHERE hash = ?1")?
        .query_row([&hash.0[..]], |r| {
            Ok(BlobRef {
                id: r.get(0)?,
                stored_size: r.get::<_, i64>(1)? as u64,
                is_file: r.get(2)?,
                codec: r.get(3)?,
            })
        })
        .optional()
}

/// Records a file blob's encoding after its file was written again (the
/// file was gone; this writer's encoding may differ from the first one).
pub fn set_file_encoding(
    c: &Connection,
    blob_id: i64,
    codec: Codec,
    stored_size: u64,
) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE blobs SET codec = ?2, stored_size = ?3 WHERE id = ?1")?
        .execute(rusqlite::params![blob_id, codec as i64, stored_size as i64])?;
    Ok(())
}

/// Inserts a blob row with one reference. `inline` is `None` for a file blob.
pub fn insert_blob(
    c: &Connection,
    hash: &Digest,
    size: u64,
    codec: Codec,
    stored_size: u64,
    inline: Option<&[u8]>,
    now: Millis,
) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "INSERT INTO blobs(hash, size, stored_size, codec, refs, created_at, data) \
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
    )?
    .execute(params![
        &hash.0[..],
        size as i64,
        stored_size as i64,
        codec as i64,
        now,
        inline
    ])?;
    bump(c, totals::STORED_BYTES, stored_size as i64)?;
    if inline.is_none() {
        bump(c, totals::FILE_BYTES, stored_size as i64)?;
    }
    Ok(c.last_insert_rowid())
}

/// Adds one reference to a blob.
pub fn add_ref(c: &Connection, blob_id: i64) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE blobs SET refs = refs + 1 WHERE id = ?1")?
        .execute([blob_id])?;
    Ok(())
}

/// Drops one reference; deletes the row when none remain and says so. The
/// caller must subtract the freed bytes from the totals.
pub fn release(c: &Connection, blob_id: i64) -> rusqlite::Result<Option<Freed>> {
    let kept = c
        .prepare_cached("UPDATE blobs SET refs = refs - 1 WHERE id = ?1 AND refs > 1")?
        .execute([blob_id])?;
    if kept > 0 {
        return Ok(None);
    }
    // Read, then delete (not `DELETE … RETURNING`: see `take_entry`).
    let gone: Option<(Vec<u8>, i64, bool)> = c
        .prepare_cached("SELECT hash, stored_size, data IS NULL FROM blobs WHERE id = ?1")?
        .query_row([blob_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((hash, stored_size, is_file)) = gone else {
        return Ok(None);
    };
    delete_blob(c, blob_id)?;
    // The caller adjusts the totals (batched per transaction).
    Ok(Some(Freed {
        hash: Digest::from_slice(&hash).unwrap_or(Digest([0; 32])),
        stored_size: stored_size as u64,
        is_file,
    }))
}

/// The blob id and logical size of the entry for `key`, if any.
pub fn entry_blob(c: &Connection, key: &str) -> rusqlite::Result<Option<(i64, u64)>> {
    c.prepare_cached(
        "SELECT e.blob_id, b.size FROM entries e JOIN blobs b ON b.id = e.blob_id WHERE e.key = ?1",
    )?
    .query_row([key], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
    .optional()
}

/// Fields of a new or replaced entry.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub key: &'a str,
    pub blob_id: i64,
    pub class: &'a str,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub headers: Option<&'a str>,
}

/// Inserts or replaces an entry row (hits reset, last access = created).
pub fn upsert_entry(c: &Connection, e: &NewEntry<'_>) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO entries(key, blob_id, class, created_at, expires_at, etag, \
         last_modified, headers, hits, last_access) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?4)",
    )?
    .execute(params![
        e.key,
        e.blob_id,
        e.class,
        e.created_at,
        e.expires_at,
        e.etag,
        e.last_modified,
        e.headers
    ])?;
    Ok(())
}

/// Deletes an entry row, logging the change if `log` (the caller may log
/// one change for many keys instead); true if it existed.
pub fn delete_entry(c: &Connection, key: &str, log: bool) -> rusqlite::Result<bool> {
    let existed = c
        .prepare_cached("DELETE FROM entries WHERE key = ?1")?
        .execute([key])?
        > 0;
    if existed && log {
        log_change(c, key)?;
    }
    Ok(existed)
}

/// Deletes the entry for `key` (logging the change unless the caller has
/// logged [`CHANGED_ALL`]) and returns its blob id.
pub fn take_entry(c: &Connection, key: &str, log: bool) -> rusqlite::Result<Option<i64>> {
    // A point read, then the delete, inside the caller's transaction. Not
    // `DELETE … RETURNING`: SQLite runs RETURNING through an ephemeral
    // table, opening and clearing a temporary b-tree per statement — 30% of
    // an eviction's instructions (callgrind, 100k-entry root).
    let blob: Option<i64> = c
        .prepare_cached("SELECT blob_id FROM entries WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    if blob.is_some() {
        delete_entry(c, key, log)?;
    }
    Ok(blob)
}

/// A change-log entry that stands for every key (no key can be `*`): a
/// transaction removing many keys logs this once instead of each key, and
/// other processes' hot maps forget everything.
pub const CHANGED_ALL: &str = "*";

/// A blob after losing one reference.
#[derive(Debug, Clone, Copy)]
pub struct Unref {
    /// References left; at 0 the row is gone.
    pub refs: i64,
    pub hash: Digest,
    pub size: u64,
    pub stored_size: u64,
    pub is_file: bool,
}

/// Drops one reference and reports the blob's state; deletes the row with
/// its last reference (a point read, then one write: not `… RETURNING`,
/// see `take_entry`).
pub fn unref(c: &Connection, blob_id: i64) -> rusqlite::Result<Option<Unref>> {
    // Read first: the last reference (nearly always, eviction's case) then
    // deletes the row outright instead of rewriting it (an inline blob's
    // bytes with it) only to delete it.
    let found = c
        .prepare_cached(
            "SELECT refs, hash, size, stored_size, data IS NULL FROM blobs WHERE id = ?1",
        )?
        .query_row([blob_id], |r| {
            let h: Vec<u8> = r.get(1)?;
            Ok(Unref {
                refs: r.get::<_, i64>(0)? - 1,
                hash: Digest::from_slice(&h).unwrap_or(Digest([0; 32])),
                size: r.get::<_, i64>(2)? as u64,
                stored_size: r.get::<_, i64>(3)? as u64,
                is_file: r.get(4)?,
            })
        })
        .optional()?;
    match found {
        Some(u) if u.refs <= 0 => delete_blob(c, blob_id)?,
        Some(_) => {
            c.prepare_cached("UPDATE blobs SET refs = refs - 1 WHERE id = ?1")?
                .execute([blob_id])?;
        }
        None => {}
    }
    Ok(found)
}

/// Deletes a blob row (its last reference is gone).
pub fn delete_blob(c: &Connection, blob_id: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM blobs WHERE id = ?1")?
        .execute([blob_id])?;
    Ok(())
}

/// Records that `key`'s mapping changed, for other processes' hot maps.
pub fn log_change(c: &Connection, key: &str) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO changes(key) VALUES (?1)")?
        .execute([key])?;
    Ok(())
}

/// The newest change sequence number (0 when none).
pub fn last_change(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM changes")?
        .query_row([], |r| r.get(0))
}

/// Changes after `seq`: the keys, the newest seq, and whether the log still
/// reaches back to `seq` (false: trimmed meanwhile, the caller must forget
/// everything).
pub fn changes_since(c: &Connection, seq: i64) -> rusqlite::Result<(Vec<String>, i64, bool)> {
    // One snapshot for both statements: a trim between them would make a
    // truncated log look complete.
    c.prepare_cached("BEGIN DEFERRED")?.execute([])?;
    let out = changes_in_snapshot(c, seq);
    c.prepare_cached("COMMIT")?.execute([])?;
    out
}

fn changes_in_snapshot(c: &Connection, seq: i64) -> rusqlite::Result<(Vec<String>, i64, bool)> {
    let oldest: Option<i64> = c
        .prepare_cached("SELECT MIN(seq) FROM changes")?
        .query_row([], |r| r.get(0))?;
    let complete = oldest.is_none_or(|o| o <= seq + 1);
    let mut st = c.prepare_cached("SELECT seq, key FROM changes WHERE seq > ?1 ORDER BY seq")?;
    let mut newest = seq;
    let mut keys = Vec::new();
    let rows = st.query_map([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (s, k) = row?;
        newest = newest.max(s);
        keys.push(k);
    }
    Ok((keys, newest, complete))
}

/// Keeps the newest `keep` changes.
pub fn trim_changes(c: &Connection, keep: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?1")?
        .execute([keep])?;
    Ok(())
}

/// Records batched accesses: adds hits, moves last_access forward only.
pub fn record_access(c: &Connection, key: &str, hits: u64, last: Millis) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE entries SET hits = hits + ?2, last_access = max(last_access, ?3) WHERE key = ?1",
    )?
    .execute(params![key, hits as i64, last])?;
    Ok(())
}

/// Records batched hits without moving the (indexed) last access.
pub fn record_hits(c: &Connection, key: &str, hits: u64) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE entries SET hits = hits + ?2 WHERE key = ?1")?
        .execute(params![key, hits as i64])?;
    Ok(())
}

/// Updates expiry, validators and headers of an entry without touching its
/// blob; `created_at` moves to `now` (the content was confirmed current).
pub fn refresh_entry(c: &Connection, key: &str, r: &Refresh<'_>) -> rusqlite::Result<bool> {
    // With `expected`, only if the key still holds that content: a 304 for
    // what we asked about must not vouch for what another writer put since.
    let found =
        c.prepare_cached(
            "UPDATE entries SET created_at = ?2, expires_at = ?3, etag = ?4, last_modified = ?5, \
             headers = ?6 WHERE key = ?1 \
             AND (?7 IS NULL OR blob_id = (SELECT id FROM blobs WHERE hash = ?7))",
        )?
        .execute(params![
            key,
            r.now,
            r.expires_at,
            r.etag,
            r.last_modified,
            r.headers,
            r.expected.map(|d| &d.0[..])
        ])? > 0;
    if found {
        log_change(c, key)?;
    }
    Ok(found)
}

/// The new metadata of a refreshed (revalidated) entry.
#[derive(Debug, Clone, Copy)]
pub struct Refresh<'a> {
    pub now: Millis,
    pub expires_at: Millis,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub headers: Option<&'a str>,
    /// Refresh only if the key still holds this content.
    pub expected: Option<&'a Digest>,
}

/// Keys that reference a blob.
pub fn keys_of_blob(c: &Connection, blob_id: i64) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare_cached("SELECT key FROM entries WHERE blob_id = ?1")?;
    let rows = st.query_map([blob_id], |r| r.get(0))?;
    rows.collect()
}

/// Bytes of the index in use: pages minus free pages, times page size.
pub fn index_bytes(c: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// Index bytes an entry costs beyond its blob: the key is stored in the
/// table and in each of its three secondary indexes, plus row overhead.
pub fn entry_cost(key_len: usize) -> u64 {
    4 * key_len as u64 + ENTRY_OVERHEAD
}

/// Per-entry bytes of row and index-entry overhead (measured: ~100 bytes
/// per entry in a 1M-entry index beside 4 copies of the key).
pub const ENTRY_OVERHEAD: u64 = 100;

/// Bytes the cache is charged for against its cap: every encoded blob
/// (inline or file) plus each entry's index cost. Exact and maintained
/// transactionally, so eviction knows what each delete frees without
/// re-measuring the file (SQLite pages free only when empty).
pub fn disk_bytes(c: &Connection) -> rusqlite::Result<u64> {
    let stored = counter(c, totals::STORED_BYTES)?.max(0) as u64;
    let entries = counter(c, totals::ENTRIES)?.max(0) as u64;
    let keys = counter(c, totals::KEY_BYTES)?.max(0) as u64;
    Ok(stored + 4 * keys + ENTRY_OVERHEAD * entries)
}
