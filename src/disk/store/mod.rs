//! The disk tier: index rows plus blob bytes, and the protocol that keeps
//! them consistent across threads and processes.
//!
//! Write protocol (see ARCHITECTURE.md):
//! 1. A large blob's file is written first (temp + rename), outside any
//!    transaction.
//! 2. One `BEGIN IMMEDIATE` transaction then inserts or references the blob
//!    row, checks that a file blob's file still exists (rewriting it if a
//!    collector removed it meanwhile), writes the entry row, releases the
//!    blob the key pointed at before, and updates the running totals.
//! 3. A blob whose last reference goes has its row deleted and its file
//!    unlinked inside that same write transaction, so no writer can see the
//!    row gone and the file present, or the reverse, at a commit point.

use rusqlite::Connection;

use crate::base::clock::Millis;
use crate::base::error::Result;
use crate::base::names;
use crate::disk::blob::codec::{self, Codec, Outlook};
use crate::disk::blob::files::BlobFiles;
use crate::disk::blob::Digest;
use crate::disk::index::{self, totals, Found, Index, NewEntry, Row};
use crate::disk::reserve::{self, Reserve};

/// Index plus blob files for one root.
#[derive(Debug)]
pub struct Store {
    pub index: Index,
    pub files: BlobFiles,
    pub inline_max: u64,
    pub zstd_level: i32,
    /// Inline blobs as LZ4 blocks (`cache.inline_codec: lz4`).
    pub inline_lz4: bool,
    /// Files as LZ4 blocks up to 16 MiB (`cache.file_codec: lz4`).
    pub file_lz4: bool,
    /// Rows claiming more bytes than this are treated as corrupt before
    /// anything is allocated (a damaged size field must not balloon memory).
    pub max_blob: u64,
    /// Files of blobs whose last row went in the running write transaction;
    /// unlinked only after it commits (see [`Store::write`]).
    pub unlinks: std::sync::Mutex<Vec<Digest>>,
    /// Room kept for operations that free space on a full disk.
    pub reserve: Reserve,
}

/// Metadata of a put, besides the key and bytes.
#[derive(Debug, Clone, Default)]
pub struct EntryFields<'a> {
    pub class: &'a str,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub headers: Option<&'a str>,
}

/// Deletes of at least this many keys log one "everything changed" entry.
const LOG_EACH_MAX: usize = 256;

/// Changes to the running totals, applied once per operation.
#[derive(Debug, Default)]
struct Deltas {
    entries: i64,
    logical: i64,
    key_bytes: i64,
    stored: i64,
    files: i64,
}

impl Deltas {
    /// All non-zero deltas in one statement (a put used to run five).
    fn apply(&self, tx: &Connection) -> rusqlite::Result<()> {
        let all = [
            (totals::ENTRIES, self.entries),
            (totals::LOGICAL_BYTES, self.logical),
            (totals::KEY_BYTES, self.key_bytes),
            (totals::STORED_BYTES, self.stored),
            (totals::FILE_BYTES, self.files),
        ];
        index::bump_many(tx, &all)
    }

    fn add(&mut self, o: &Deltas) {
        self.entries += o.entries;
        self.logical += o.logical;
        self.key_bytes += o.key_bytes;
        self.stored += o.stored;
        self.files += o.files;
    }
}

/// One value of a [`Store::put_many`].
#[derive(Debug, Clone)]
pub struct PutItem<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    /// blake3 of `value`.
    pub hash: Digest,
    pub fields: EntryFields<'a>,
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// The content was already stored (under this or another key).
    pub deduplicated: bool,
    /// Encoded bytes of the blob.
    pub stored_size: u64,
    /// Blobs released by the key's previous value (their keys are gone).
    pub freed_bytes: u64,
}

struct Encoded {
    codec: Codec,
    bytes: Vec<u8>,
    /// This call created the blob's file (it was not there before).
    file_is_ours: bool,
}

mod read;

pub(crate) use read::Outcome;
pub use read::Read;

impl Store {
    /// Stores `value` (whose blake3 is `hash`) under `key`.
    ///
    /// # Errors
    /// [`Error::Io`] (e.g. a full disk) or [`Error::Index`]; on error the
    /// previous value of `key` is untouched.
    pub fn put(
        &self,
        key: &str,
        value: &[u8],
        hash: &Digest,
        f: &EntryFields<'_>,
    ) -> Result<PutOutcome> {
        let item = PutItem {
            key,
            value,
            hash: *hash,
            fields: f.clone(),
        };
        let mut out = self.put_many(std::slice::from_ref(&item))?;
        Ok(out.pop().unwrap_or(PutOutcome {
            deduplicated: false,
            stored_size: 0,
            freed_bytes: 0,
        }))
    }

    /// Stores several values in one write transaction (group commit): all
    /// or none become visible.
    ///
    /// # Errors
    /// As [`Store::put`]; on error no key changes.
    pub fn put_many(&self, items: &[PutItem<'_>]) -> Result<Vec<PutOutcome>> {
        // Outside the transaction: encode and write large blobs' files,
        // unless the content is already stored (dedup costs one lookup).
        // On the writer connection when it is free: its page cache is warm
        // from this process's last commit, a pooled reader's is not.
        let known: Vec<bool> = self.index.read_quick(|r| {
            items
                .iter()
                .map(|it| Ok(index::find_blob(r.conn(), &it.hash)?.is_some()))
                .collect::<rusqlite::Result<_>>()
                .map_err(|e| self.index.wrap(e))
        })?;
        let mut encoded: Vec<Option<Encoded>> = Vec::with_capacity(items.len());
        for (it, known) in items.iter().zip(known) {
            if known {
                encoded.push(None);
                continue;
            }
            let mut e = self.encode(it.value);
            if self.is_file(&e) {
                // Never replaces a file: it may be another process's
                // encoding of the same content, named by a committed row.
                e.file_is_ours = self.files.write_new(&it.hash, &e.bytes)?;
            }
            encoded.push(Some(e));
        }
        self.write(|tx| {
            let mut total = Deltas::default();
            let out = items
                .iter()
                .zip(encoded.iter_mut())
                .map(|(it, e)| self.put_in(tx, it, e, &mut total))
                .collect::<Result<Vec<_>>>()?;
            total.apply(tx).map_err(|e| self.index.wrap(e))?;
            Ok(out)
        })
    }

    fn put_in(
        &self,
        tx: &Connection,
        it: &PutItem<'_>,
        encoded: &mut Option<Encoded>,
        total: &mut Deltas,
    ) -> Result<PutOutcome> {
        let w = |e| self.index.wrap(e);
        let (key, value, hash, f) = (it.key, it.value, &it.hash, &it.fields);
        let mut out = PutOutcome {
            deduplicated: false,
            stored_size: 0,
            freed_bytes: 0,
        };
        let blob_id = match index::find_blob(tx, hash).map_err(w)? {
            Some(b) => {
                out.stored_size = b.stored_size;
                // A collector may have unlinked the file after our check;
                // inside the write lock, make sure it is there with the
                // row's length (a put back whose transaction then failed
                // leaves a file of another length), and that the row
                // describes the file this writer puts back (its zstd level
                // may differ from the first writer's).
                if b.is_file && self.files.len_of(hash) != Some(b.stored_size) {
                    let (codec, bytes) = codec::encode(value, self.zstd_level);
                    self.files.write(hash, &bytes)?;
                    index::set_file_encoding(tx, b.id, codec, bytes.len() as u64).map_err(w)?;
                    out.stored_size = bytes.len() as u64;
                    let grew = out.stored_size as i64 - b.stored_size as i64;
                    total.stored += grew;
                    total.files += grew;
                }
                index::add_ref(tx, b.id).map_err(w)?;
                out.deduplicated = true;
                b.id
            }
            None => {
                let e = encoded.get_or_insert_with(|| self.encode(value));
                let is_file = e.bytes.len() as u64 > self.inline_max;
                // No row names this hash and we hold the write lock: unless
                // the file is the one we just created, (re)write our own
                // encoding, so the row we insert describes the file exactly.
                if is_file && !(e.file_is_ours && self.files.exists(hash)) {
                    self.files.write(hash, &e.bytes)?;
                }
                out.stored_size = e.bytes.len() as u64;
                let inline = (!is_file).then_some(&e.bytes[..]);
                index::insert_blob(
                    tx,
                    hash,
                    value.len() as u64,
                    e.codec,
                    out.stored_size,
                    inline,
                    f.created_at,
                )
                .map_err(w)?
            }
        };
        let previous = index::entry_blob(tx, key).map_err(w)?;
        index::upsert_entry(
            tx,
            &NewEntry {
                key,
                blob_id,
                class: f.class,
                created_at: f.created_at,
                expires_at: f.expires_at,
                etag: f.etag,
                last_modified: f.last_modified,
                headers: f.headers,
            },
        )
        .map_err(w)?;
        let mut d = Deltas {
            logical: value.len() as i64,
            ..Deltas::default()
        };
        match previous {
            Some((old_blob, old_size)) => {
                d.logical -= old_size as i64;
                out.freed_bytes = self.release(tx, old_blob, &mut d)?;
                index::log_change(tx, key).map_err(w)?;
            }
            None => {
                d.entries = 1;
                d.key_bytes = key.len() as i64;
            }
        }
        total.add(&d);
        Ok(out)
    }

    /// Removes the entries for `keys` in one transaction; returns how many existed.
    ///
    /// # Errors
    /// [`Error::Index`] or [`Error::Io`]; nothing is removed then.
    pub fn delete(&self, keys: &[String]) -> Result<usize> {
        self.write_freeing(|tx| self.delete_in(tx, keys))
    }

    /// A write transaction that frees space (delete, invalidate, evict):
    /// when it fails because the disk is full, a chunk of the reserve is
    /// released and the transaction retried (chunk after chunk); the
    /// reserve is recreated, best effort, after it succeeded.
    pub(crate) fn write_freeing<T>(
        &self,
        f: impl Fn(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut released = false;
        loop {
            match self.write(&f) {
                Err(e) if reserve::is_full(&e) && self.reserve.release() => released = true,
                other => {
                    if released && other.is_ok() {
                        self.reserve.ensure();
                    }
                    return other;
                }
            }
        }
    }

    /// Deletes entries inside an open write transaction; returns how many existed.
    pub(crate) fn delete_in(&self, tx: &Connection, keys: &[String]) -> Result<usize> {
        let keys = keys.iter().map(|k| (k.as_str(), None));
        Ok(self.delete_until(tx, keys, u64::MAX)?.0)
    }

    /// Deletes `keys` in order until at least `budget` accounted bytes (see
    /// [`index::disk_bytes`]) are freed; returns (entries deleted, bytes freed).
    pub(crate) fn delete_until<'a>(
        &self,
        tx: &Connection,
        victims: impl ExactSizeIterator<Item = (&'a str, Option<i64>)>,
        budget: u64,
    ) -> Result<(usize, u64)> {
        let w = |e| self.index.wrap(e);
        let mut d = Deltas::default();
        let (mut n, mut freed) = (0, 0u64);
        // Many keys (an eviction chunk, a wide invalidation): one log entry
        // that makes other hot maps forget everything, not one per key.
        let log_each = victims.len() < LOG_EACH_MAX;
        if !log_each {
            index::log_change(tx, index::CHANGED_ALL).map_err(w)?;
        }
        for (key, blob_id) in victims {
            if freed >= budget {
                break;
            }
            // Per key: the entry deleted (read first unless its blob id came
            // with it, read in this transaction), its blob unreferenced.
            let blob_id = match blob_id {
                Some(b) => index::delete_entry(tx, key, log_each)
                    .map_err(w)?
                    .then_some(b),
                None => index::take_entry(tx, key, log_each).map_err(w)?,
            };
            let Some(blob_id) = blob_id else {
                continue;
            };
            if let Some(u) = index::unref(tx, blob_id).map_err(w)? {
                if u.refs <= 0 {
                    if u.is_file {
                        self.defer_unlink(u.hash);
                        d.files -= u.stored_size as i64;
                    }
                    d.stored -= u.stored_size as i64;
                    freed += u.stored_size;
                }
                d.logical -= u.size as i64;
            }
            freed += index::entry_cost(key.len());
            d.entries -= 1;
            d.key_bytes -= key.len() as i64;
            n += 1;
        }
        d.apply(tx).map_err(w)?;
        Ok((n, freed))
    }

    /// Releases one reference; unlinks a freed file inside the transaction.
    /// Returns the encoded bytes freed.
    fn release(&self, tx: &Connection, blob_id: i64, d: &mut Deltas) -> Result<u64> {
        match index::release(tx, blob_id).map_err(|e| self.index.wrap(e))? {
            Some(freed) => {
                if freed.is_file {
                    self.defer_unlink(freed.hash);
                    d.files -= freed.stored_size as i64;
                }
                d.stored -= freed.stored_size as i64;
                Ok(freed.stored_size)
            }
            None => Ok(0),
        }
    }

    /// A write transaction of the disk tier. Blob files freed inside it are
    /// unlinked only after it commits, each inside a second write
    /// transaction that sees no row for it (the GC rule): a transaction that
    /// rolls back — a full disk at COMMIT, a later failing item, a killed
    /// process — never leaves rows pointing at unlinked files.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let out = self.index.write(f);
        let freed = std::mem::take(&mut *self.unlinks.lock().unwrap_or_else(|p| p.into_inner()));
        if out.is_ok() && !freed.is_empty() {
            // The operation committed: a file that cannot be unlinked now
            // is an orphan for gc, not a failure of the operation.
            if let Err(e) = self.unlink_unreferenced(&freed) {
                tracing::warn!(error = %e, "freed blob files left for gc");
            }
        }
        out
    }

    /// Unlinks the files of `hashes` that no row names (inside a write
    /// transaction, so no writer can re-reference one meanwhile).
    pub(crate) fn unlink_unreferenced(&self, hashes: &[Digest]) -> Result<u64> {
        self.index.write(|tx| {
            let mut n = 0;
            for h in hashes {
                if index::find_blob(tx, h)
                    .map_err(|e| self.index.wrap(e))?
                    .is_none()
                {
                    self.files.remove(h)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    pub(crate) fn defer_unlink(&self, hash: Digest) {
        self.unlinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hash);
    }

    /// Inline blobs as LZ4 blocks (unless `inline_codec: zstd`), files as
    /// headed LZ4 blocks up to 16 MiB (unless `file_codec: zstd`); the rest,
    /// and whatever LZ4 cannot shrink by 1/8 (hex, base64: zstd's entropy
    /// coding may still), zstd or raw. A value whose LZ4 block does not fit
    /// inline becomes a file from the same block, without compressing again.
    /// A value of 128 KiB or more is first judged on a 16 KiB sample
    /// ([`codec::outlook`]), so incompressible data is stored raw without
    /// two whole-value attempts.
    fn encode(&self, value: &[u8]) -> Encoded {
        let done = |codec, bytes| Encoded {
            codec,
            bytes,
            file_is_ours: false,
        };
        let lz4 = self.inline_lz4 || self.file_lz4;
        let mut skip_lz4 = match codec::outlook(value, lz4, self.zstd_level) {
            Some(Outlook::Raw) => return done(Codec::Raw, value.to_vec()),
            Some(Outlook::Zstd) => true,
            Some(Outlook::Lz4) | None => false,
        };
        let small = self.inline_max.saturating_mul(8).min(codec::LZ4_MAX);
        if self.inline_lz4 && !skip_lz4 && value.len() as u64 <= small {
            let (c, block) = codec::encode_lz4(value);
            if block.len() as u64 <= self.inline_max {
                return done(c, block);
            }
            skip_lz4 = true;
            if c == Codec::Lz4 && self.file_lz4 {
                if let Some(f) = codec::lz4_file_from_block(&block, value.len()) {
                    return done(Codec::Lz4File, f);
                }
            }
        }
        if self.file_lz4 && !skip_lz4 {
            if let Some(f) = codec::encode_lz4_file(value) {
                if f.len() as u64 > self.inline_max {
                    return done(Codec::Lz4File, f);
                }
                if self.inline_lz4 {
                    return done(Codec::Lz4, f[codec::LZ4_FILE_HEADER..].to_vec());
                }
            }
        }
        let (c, bytes) = codec::encode(value, self.zstd_level);
        done(c, bytes)
    }

    fn is_file(&self, e: &Encoded) -> bool {
        e.bytes.len() as u64 > self.inline_max
    }
}
