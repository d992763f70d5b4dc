//! The SQLite index: key → blob, blob → bytes or file, running totals.
//!
//! One writer connection (SQLite serialises writers anyway; across
//! processes `BEGIN IMMEDIATE` plus the busy timeout does) and a pool of
//! reader connections so gets on many threads never wait for each other.
//! Statements are prepared once per connection (`prepare_cached`).

mod queries;
pub mod schema;
mod shared;

pub use queries::*;
pub use shared::*;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use crate::base::clock::Millis;
use crate::base::error::{Error, Result};
use crate::disk::blob::codec::Codec;
use crate::disk::blob::Digest;

/// File name of the index inside the cache root.
pub const INDEX_FILE: &str = "index.sqlite";

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Counter names for the running totals.
pub mod totals {
    pub const STORED_BYTES: &str = "stored_bytes";
    pub const LOGICAL_BYTES: &str = "logical_bytes";
    pub const ENTRIES: &str = "entries";
    /// Encoded bytes of blobs stored as files (inline ones live in the index).
    pub const FILE_BYTES: &str = "file_bytes";
    /// UTF-8 bytes of all keys.
    pub const KEY_BYTES: &str = "key_bytes";
}

/// The index of one cache root.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    /// The writer connection, with the point lookup held like a reader's:
    /// [`Index::read_quick`] borrows it when it is free.
    writer: Mutex<Reader>,
    /// Writes waiting for `writer`: while any is, reads leave it alone (a
    /// reader retrying `try_lock` in a loop would otherwise starve them).
    writes_waiting: AtomicUsize,
    readers: Mutex<Vec<Reader>>,
    synchronous_full: bool,
    /// The cross-process change counter every write moves (see `seq`).
    seq: std::sync::OnceLock<crate::disk::seq::ChangeSeq>,
}

/// Statements a pooled reader keeps prepared.
#[derive(Debug)]
pub(crate) struct Held<'c> {
    lookup: rusqlite::Statement<'c>,
}

self_cell::self_cell!(
    /// A pooled reader connection with the point lookup prepared once.
    /// rusqlite's statement cache hashes and compares the 300-byte SQL text
    /// and relinks its LRU list on every use: 1.7k instructions, a sixth of
    /// a miss (callgrind, 2026-12-04).
    pub(crate) struct Reader {
        owner: Connection,
        #[covariant]
        dependent: Held,
    }
    impl {Debug}
);

// SAFETY: a `Reader` is the connection plus statements that borrow only
// that connection, and nothing outside the cell can hold a reference into it
// (self_cell lends them only for the length of a borrow of the `Reader`).
// Moving the cell to another thread moves the connection and all its
// statements together, which is exactly moving a `Connection` — `Send` in
// rusqlite; SQLite allows a connection (opened NO_MUTEX, multi-thread mode)
// on any thread as long as one thread uses it at a time, which `&mut Reader`
// guarantees. `Statement` alone is `!Send` only because it could be sent
// apart from its connection. `Reader` is not `Sync`.
#[allow(unsafe_code)]
unsafe impl Send for Reader {}

impl Reader {
    fn open(path: &Path, synchronous_full: bool) -> Result<Reader> {
        Reader::with(open_connection(path, synchronous_full)?, path)
    }

    fn with(conn: Connection, path: &Path) -> Result<Reader> {
        Reader::try_new(conn, |c| {
            Ok(Held {
                lookup: c.prepare(queries::LOOKUP)?,
            })
        })
        .map_err(|e| index_error(path, e))
    }

    /// The connection, for any other statement.
    pub(crate) fn conn(&self) -> &Connection {
        self.borrow_owner()
    }

    /// [`lookup`] through the held statement.
    pub(crate) fn lookup(
        &mut self,
        key: &str,
        want_inline: &dyn Fn(&Row) -> bool,
    ) -> rusqlite::Result<Option<Found>> {
        self.with_dependent_mut(|_, h| queries::lookup_with(&mut h.lookup, key, want_inline))
    }
}

/// An entry joined with its blob: everything but the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub blob_id: i64,
    pub hash: Digest,
    pub class: String,
    pub size: u64,
    pub stored_size: u64,
    pub codec: Codec,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub headers: Option<String>,
    pub hits: u64,
    pub last_access: Millis,
    /// The blob lives in a file, not inline.
    pub is_file: bool,
}

/// What a read of one key found: its row and, when asked for, the inline
/// bytes (`None` for a file blob).
#[derive(Debug)]
pub struct Found {
    pub row: Row,
    pub inline: Option<Vec<u8>>,
}

/// A blob row as the write path sees it.
#[derive(Debug, Clone, Copy)]
pub struct BlobRef {
    pub id: i64,
    pub stored_size: u64,
    pub is_file: bool,
    /// The index's integer for the blob's [`Codec`].
    pub codec: i64,
}

/// A blob whose last reference went: its row is deleted; a file blob's
/// file must be unlinked inside the same write transaction.
#[derive(Debug, Clone, Copy)]
pub struct Freed {
    pub hash: Digest,
    pub stored_size: u64,
    pub is_file: bool,
}

/// The columns [`read_row`] reads, as a literal so statements are built
/// at compile time (`concat!`), not formatted on every lookup.
macro_rules! row_columns {
    () => {
        "e.key, e.blob_id, b.hash, e.class, b.size, b.stored_size, b.codec, \
         e.created_at, e.expires_at, e.etag, e.last_modified, e.headers, e.hits, e.last_access, \
         b.data IS NULL"
    };
}
use row_columns;
const ROW_COLUMNS: &str = row_columns!();

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let hash: Vec<u8> = r.get(2)?;
    let codec: i64 = r.get(6)?;
    Ok(Row {
        key: r.get(0)?,
        blob_id: r.get(1)?,
        hash: Digest::from_slice(&hash).unwrap_or(Digest([0; 32])),
        class: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        stored_size: r.get::<_, i64>(5)? as u64,
        // An unknown codec decodes as nothing and is caught by verification.
        codec: Codec::from_i64(codec).unwrap_or(Codec::Raw),
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        etag: r.get(9)?,
        last_modified: r.get(10)?,
        headers: r.get(11)?,
        hits: r.get::<_, i64>(12)? as u64,
        last_access: r.get(13)?,
        is_file: r.get(14)?,
    })
}

impl Index {
    /// Opens (creating if needed, mode 0600) and migrates `<root>/index.sqlite`.
    ///
    /// # Errors
    /// [`Error::Index`] if the file is not a SQLite database or cannot be
    /// opened; [`Error::SchemaVersion`] if a newer freshcache wrote it.
    pub fn open(root: &Path, synchronous_full: bool) -> Result<Index> {
        let reserve = crate::disk::reserve::Reserve::new(root);
        loop {
            match Index::open_once(root, INDEX_FILE, synchronous_full, false) {
                // No room for SQLite's -shm/-wal files: use the reserve.
                Err(e) if crate::disk::reserve::is_full(&e) && reserve.release() => {}
                other => return other,
            }
        }
    }

    /// Creates and migrates a new index file `root/name` (recovery builds
    /// its new index there before moving it into place).
    ///
    /// # Errors
    /// As [`Index::open`].
    pub(crate) fn create_at(root: &Path, name: &str) -> Result<Index> {
        Index::open_once(root, name, false, true)
    }

    fn open_once(root: &Path, name: &str, synchronous_full: bool, fresh: bool) -> Result<Index> {
        let path = root.join(name);
        if !path.exists() {
            // Created before any connection exists, so we never touch a file
            // SQLite holds locks on with plain file APIs.
            match crate::disk::blob::files::create_exclusive(&path) {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                other => drop(other?),
            }
        }
        let writer = open_connection(&path, synchronous_full)?;
        let wrap = |e| index_error(&path, e);
        // The writer dirties many pages in eviction passes; a larger page
        // cache keeps them from spilling to the WAL mid-transaction.
        writer
            .execute_batch("PRAGMA cache_size = -65536")
            .map_err(wrap)?;
        // A root that has held data (its blob directory exists: it is made
        // only after the first migration committed) never has an empty index.
        let used = !fresh
            && std::fs::symlink_metadata(root.join(crate::disk::blob::files::BLOBS_DIR)).is_ok();
        // Two processes opening a new root at once: switching to WAL and the
        // first migration can answer SQLITE_BUSY without consulting the busy
        // handler, so the initialisation retries for up to the busy timeout.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        let tx_result = loop {
            match init(&writer, used) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => break other,
            }
        };
        match tx_result.map_err(wrap)? {
            Ok(_) => {}
            Err(Refusal::Newer(found)) => {
                return Err(Error::SchemaVersion {
                    path,
                    found,
                    supported: schema::SCHEMA_VERSION,
                })
            }
            Err(Refusal::EmptyButUsed) => {
                return Err(damaged(
                    &path,
                    "it is empty but the root holds blobs (truncated or replaced)",
                ))
            }
        }
        let writer = Reader::with(writer, &path)?;
        Ok(Index {
            path,
            writer: Mutex::new(writer),
            writes_waiting: AtomicUsize::new(0),
            readers: Mutex::new(Vec::new()),
            synchronous_full,
            seq: std::sync::OnceLock::new(),
        })
    }

    /// Hands WAL checkpoints to a background thread: this writer stops
    /// checkpointing at commit (the cost that made put p99 spike), and the
    /// returned connection runs passive checkpoints ([`checkpoint`]), which
    /// never block writers or readers. The last connection to close still
    /// checkpoints, as SQLite always does.
    pub(crate) fn checkpointer(&self) -> Result<Connection> {
        let conn = open_connection(&self.path, self.synchronous_full)?;
        self.lock_writer()
            .conn()
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .map_err(|e| self.wrap(e))?;
        Ok(conn)
    }

    /// Attaches the change counter: from now on every write transaction
    /// moves it (odd during the commit, even after).
    pub(crate) fn attach_seq(&self, seq: crate::disk::seq::ChangeSeq) {
        let _ = self.seq.set(seq);
    }

    /// The change counter, once attached.
    pub(crate) fn seq(&self) -> Option<&crate::disk::seq::ChangeSeq> {
        self.seq.get()
    }

    /// COMMIT bracketed by the change counter (see `seq`).
    fn commit(&self, tx: Transaction<'_>) -> rusqlite::Result<()> {
        let Some(seq) = self.seq.get() else {
            return tx.commit();
        };
        seq.begin();
        let r = tx.commit();
        seq.end();
        r
    }

    /// Path of the index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn wrap(&self, e: rusqlite::Error) -> Error {
        index_error(&self.path, e)
    }

    /// Runs `f` on a pooled reader connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.read_with(|r| f(r.conn()).map_err(|e| self.wrap(e)))
    }

    /// Runs `f` on a pooled reader (opened when the pool is empty) without
    /// a transaction (one statement is its own snapshot), then returns the
    /// reader to the pool.
    pub(crate) fn read_with<T>(&self, f: impl FnOnce(&mut Reader) -> Result<T>) -> Result<T> {
        let reader = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut reader = match reader {
            Some(r) => r,
            None => Reader::open(&self.path, self.synchronous_full)?,
        };
        let out = f(&mut reader);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reader);
        out
    }

    /// Like [`Index::read_with`] for one short read (a single-key get): on
    /// the writer connection when no write holds it, else a pooled reader.
    /// The writer's page cache stays warm across this process's commits,
    /// while a pooled reader's is dropped whenever anything is written
    /// (SQLite resets a WAL reader's cache when the WAL moved). Never waits:
    /// a busy writer sends the read to the pool; a write waits at most for
    /// the one read that holds the connection.
    pub(crate) fn read_quick<T>(&self, f: impl FnOnce(&mut Reader) -> Result<T>) -> Result<T> {
        if self.writes_waiting.load(Ordering::Relaxed) == 0 {
            if let Ok(mut w) = self.writer.try_lock() {
                return f(&mut w);
            }
        }
        self.read_with(f)
    }

    /// The writer connection, announced first so reads stop borrowing it.
    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Reader> {
        if let Ok(w) = self.writer.try_lock() {
            return w;
        }
        self.writes_waiting.fetch_add(1, Ordering::Relaxed);
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.writes_waiting.fetch_sub(1, Ordering::Relaxed);
        w
    }

    /// Runs `f` inside one read transaction (one consistent snapshot).
    pub(crate) fn read_snapshot<T>(&self, f: impl FnOnce(&mut Reader) -> Result<T>) -> Result<T> {
        self.read_with(|r| {
            let w = |e| self.wrap(e);
            r.conn()
                .prepare_cached("BEGIN DEFERRED")
                .and_then(|mut s| s.execute([]))
                .map_err(w)?;
            let out = f(r);
            let commit = r
                .conn()
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]));
            if let Err(e) = commit {
                // Never pool a reader that is still inside a transaction.
                let _ = r.conn().execute_batch("ROLLBACK");
                return Err(w(e));
            }
            out
        })
    }

    /// Runs `f` inside a `BEGIN IMMEDIATE` write transaction and commits
    /// if it returns `Ok`.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let writer = self.lock_writer();
        // The writer's held lookup is reset between uses, so the connection
        // has no statement running when a transaction begins.
        let tx = Transaction::new_unchecked(writer.conn(), TransactionBehavior::Immediate)
            .map_err(|e| self.wrap(e))?;
        let out = f(&tx)?;
        self.commit(tx).map_err(|e| self.wrap(e))?;
        Ok(out)
    }

    /// Like [`Index::write`], but gives up at once (`None`) if this
    /// process's writer or another process holds the write lock: used for
    /// opportunistic flushes on the read path, which must never wait.
    pub fn try_write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Option<Result<T>> {
        let writer = self.writer.try_lock().ok()?;
        let conn = writer.conn();
        let _ = conn.busy_timeout(Duration::ZERO);
        let out = match Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                None
            }
            Err(e) => Some(Err(self.wrap(e))),
            Ok(tx) => {
                Some(f(&tx).and_then(|out| self.commit(tx).map(|()| out).map_err(|e| self.wrap(e))))
            }
        };
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        out
    }
}

/// Why an index cannot be used as it is.
enum Refusal {
    /// Written by a newer freshcache (its version).
    Newer(i64),
    /// No schema, in a root that has held data.
    EmptyButUsed,
}

/// Sets up a new or existing index: incremental auto-vacuum (new files
/// only), WAL, and the schema migration in one immediate transaction. An
/// index at the current version is only read: opening writes nothing (a
/// full disk must not make a root unreadable).
fn init(writer: &Connection, used: bool) -> rusqlite::Result<Result<i64, Refusal>> {
    let mode: String = writer.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        writer.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Another connection kept the file from switching yet: retry.
            let busy = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
            return Err(rusqlite::Error::SqliteFailure(
                busy,
                Some(format!("journal mode is {mode}")),
            ));
        }
    }
    let found = schema::version(writer)?;
    if found > schema::SCHEMA_VERSION {
        return Ok(Err(Refusal::Newer(found)));
    }
    if found == schema::SCHEMA_VERSION {
        return Ok(Ok(found));
    }
    let tx = rusqlite::Transaction::new_unchecked(writer, TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated.
    if used && schema::version(&tx)? == 0 {
        return Ok(Err(Refusal::EmptyButUsed));
    }
    let v = schema::migrate(&tx)?;
    tx.commit()?;
    Ok(v.map_err(Refusal::Newer))
}

/// True for SQLite's "this file is damaged" answers.
pub(crate) fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

/// The index error for `e`; a damaged file gets a message naming the recovery.
pub(crate) fn index_error(path: &Path, e: rusqlite::Error) -> Error {
    if is_damage(&e) {
        return damaged(path, &e.to_string());
    }
    Error::Index {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Marker text of a damaged-index error (see [`is_damaged`]).
const DAMAGED: &str = "the index is damaged";

/// The error for a damaged index: `Error::Index` (exit 6) with SQLite's
/// corruption code and a message that names the recovery.
pub(crate) fn damaged(path: &Path, why: &str) -> Error {
    let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT);
    Error::Index {
        path: path.to_path_buf(),
        source: rusqlite::Error::SqliteFailure(
            code,
            Some(format!(
                "{DAMAGED} ({why}); nothing was changed. `freshcache verify` reports it, \
                 `freshcache recover` rebuilds the index from what can still be verified"
            )),
        ),
    }
}

/// True when `e` is the error of a damaged index.
pub fn is_damaged(e: &Error) -> bool {
    match e {
        Error::Index { source, .. } => is_damage(source),
        Error::Shared { source } => is_damaged(source),
        _ => false,
    }
}

/// One passive checkpoint on `conn`: copies committed WAL frames into the
/// database file as far as readers allow; returns the frames left.
pub(crate) fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(r.get::<_, i64>(1)? - r.get::<_, i64>(2)?)
    })
}

pub(crate) fn open_connection(path: &Path, synchronous_full: bool) -> Result<Connection> {
    let wrap = |e| index_error(path, e);
    // NOFOLLOW: an index.sqlite that is a link out of the root is refused.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags).map_err(wrap)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
    let sync = if synchronous_full { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;"
    ))
    .map_err(wrap)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_key_read_never_waits_for_a_write_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), false).unwrap();
        let (entered, wait_entered) = std::sync::mpsc::channel::<()>();
        let (read_done, wait_read) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let idx = &idx;
            let writer = s.spawn(move || {
                idx.write(|_| {
                    entered.send(()).unwrap();
                    // Holds the writer connection until the read below is
                    // done; a read that waited for it would never be.
                    Ok(wait_read.recv_timeout(Duration::from_secs(20)).is_ok())
                })
                .unwrap()
            });
            wait_entered.recv().unwrap();
            let n = idx
                .read_quick(|r| {
                    r.conn()
                        .query_row("SELECT count(*) FROM entries", [], |row| {
                            row.get::<_, i64>(0)
                        })
                        .map_err(|e| idx.wrap(e))
                })
                .unwrap();
            assert_eq!(n, 0);
            read_done.send(()).unwrap();
            assert!(writer.join().unwrap(), "the read waited for the write");
        });
        // And with the writer free, the read borrows it and gives it back.
        assert!(idx
            .read_quick(|_| Ok(idx.writer.try_lock().is_err()))
            .unwrap());
        assert!(idx.writer.try_lock().is_ok());
    }
}
