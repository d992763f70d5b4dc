//! Index schema, versioned by `PRAGMA user_version`. Each migration moves
//! the schema up one version inside the caller's write transaction.

use rusqlite::Connection;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;

const V1: &str = r#"
-- One row per distinct content. Small blobs keep their encoded bytes in
-- `data`; large ones have data NULL and live in blobs-v1/. `refs` counts the
-- entries that point here; a blob row exists only while refs > 0.
CREATE TABLE blobs (
    id          INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL UNIQUE,       -- blake3 of the uncompressed bytes
    size        INTEGER NOT NULL,           -- uncompressed bytes
    stored_size INTEGER NOT NULL,           -- encoded bytes on disk
    codec       INTEGER NOT NULL,           -- 0 raw, 1 zstd
    refs        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,           -- ms since epoch
    data        BLOB                        -- inline bytes, or NULL for a file
);

CREATE TABLE entries (
    key           TEXT PRIMARY KEY NOT NULL,
    blob_id       INTEGER NOT NULL,         -- blobs.id
    class         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,         -- ms since epoch
    expires_at    INTEGER NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    headers       TEXT,                     -- JSON object of stored response headers
    hits          INTEGER NOT NULL DEFAULT 0,
    last_access   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX entries_by_access ON entries(last_access);
CREATE INDEX entries_by_expiry ON entries(expires_at);
CREATE INDEX entries_by_blob ON entries(blob_id);

-- Running totals kept in the same transactions as the rows they sum
-- (stored_bytes, logical_bytes, entries) and persisted statistics
-- (hits, misses, corrupt blobs, quotas) shared by every process on the root.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"#;

const V2: &str = r#"
-- Keys whose mapping changed or went (overwrite, delete, refresh), in commit
-- order. Each process's hot map reads what it has not seen yet whenever
-- PRAGMA data_version says another connection wrote; trimmed to a window.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL
);
"#;

// ---- v3: shared-tier sync (issue 14) ---------------------------------------
const V3: &str = r#"
-- The position in the shared tier's invalidation log this root has applied,
-- per log (`scope` = redis.key_prefix), and the epoch of the Redis data set
-- that position belongs to. Written in the same transaction as the local
-- deletes it caused; shared by every process on the root.
CREATE TABLE IF NOT EXISTS redis_sync (
    scope   TEXT PRIMARY KEY NOT NULL,
    epoch   TEXT NOT NULL,
    pos_ms  INTEGER NOT NULL,
    pos_seq INTEGER NOT NULL
) WITHOUT ROWID;
-- Invalidations made here that the shared tier has not yet received, in
-- the order they were made (published in `seq` order, then deleted).
CREATE TABLE IF NOT EXISTS redis_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    scope      TEXT NOT NULL,
    pattern    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"#;
// ---- end v3 -------------------------------------------------------------------
// ---- v4: TTL windows (issue 17) -------------------------------------------
const V4: &str = r#"
-- Eviction finds the entries an open TTL window has expired (created_at
-- older than now - window ttl, per class) without scanning the table.
CREATE INDEX IF NOT EXISTS entries_by_class_created ON entries(class, created_at);
"#;
// ---- end v4 -------------------------------------------------------------------
// ---- v5: LZ4 inline blobs -------------------------------------------------------
// No table changes: `blobs.codec` may now be 2 (one LZ4 block). The version
// moves so that a freshcache that knows only 0 and 1 refuses the root
// instead of reading such a blob as raw bytes and quarantining it.
// ---- end v5 -------------------------------------------------------------------
// ---- v6: LZ4 files --------------------------------------------------------------
// No table changes: `blobs.codec` may now be 3 (a file holding an LZ4 block
// behind a header naming its size). Moves for the same reason as v5.
// ---- end v6 -------------------------------------------------------------------

/// The schema version recorded in the file (0 for a new, empty file).
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema to [`SCHEMA_VERSION`]. Returns the version found, or
/// `Err(found)` when the file was written by a newer freshcache. Writes
/// nothing when no migration is due (a full disk must not stop an open).
pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<Result<i64, i64>> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Ok(Err(found));
    }
    if found == SCHEMA_VERSION {
        return Ok(Ok(found));
    }
    if found < 1 {
        conn.execute_batch(V1)?;
    }
    if found < 2 {
        conn.execute_batch(V2)?;
    }
    if found < 3 {
        conn.execute_batch(V3)?;
    }
    if found < 4 {
        conn.execute_batch(V4)?;
    }
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    Ok(Ok(found))
}
