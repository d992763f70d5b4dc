//! The store's read protocol: one statement joins entry and blob row,
//! bytes read only when wanted, verified against their hash; a blob that
//! fails is quarantined and the read is a miss.

use super::*;
use crate::disk::blob::files::Opened;
use crate::disk::index::Reader;

/// A verified read: the row and the decoded bytes.
#[derive(Debug)]
pub struct Read {
    pub row: Row,
    /// `None` when the caller already had the bytes (L1). A raw blob
    /// file's bytes are its read buffer, which goes back to the read pool
    /// when the last clone drops (`disk/blob/pool.rs`).
    pub bytes: Option<bytes::Bytes>,
}

/// The result of reading one key inside a snapshot.
#[derive(Debug)]
pub(crate) enum Outcome {
    Miss,
    Hit(Read),
    /// The row names a file that is not there (deleted meanwhile, or lost).
    FileGone(Row),
    /// The stored bytes failed verification.
    Corrupt(Row, Vec<u8>),
}

impl Store {
    /// Reads and verifies `key`. `want_bytes(row)` says whether the bytes are
    /// needed at all (not when expired, not when L1 holds them). A blob that
    /// fails verification is quarantined and the read is a miss.
    ///
    /// # Errors
    /// [`Error::Index`] or [`Error::Io`] for failures other than corruption.
    pub fn read(
        &self,
        key: &str,
        now: Millis,
        want_bytes: impl Fn(&Row) -> bool,
    ) -> Result<Option<Read>> {
        // Two tries, as in `read_many`; no vectors for the common single key.
        for attempt in 0..2 {
            // Only the lookup runs on the borrowed connection: a file read,
            // decoding and verifying happen after it is handed back.
            let found = self
                .index
                .read_quick(|r| r.lookup(key, &want_bytes).map_err(|e| self.index.wrap(e)))?;
            let outcome = self.fetch(found, &want_bytes)?;
            if attempt == 0 && matches!(outcome, Outcome::FileGone(_)) {
                continue;
            }
            return self.settle(outcome, now);
        }
        unreachable!("the second attempt always returns")
    }

    /// The caller's answer for one outcome: a blob that is gone or failed
    /// verification is quarantined and reads as a miss.
    fn settle(&self, outcome: Outcome, now: Millis) -> Result<Option<Read>> {
        match outcome {
            Outcome::Miss => Ok(None),
            Outcome::Hit(read) => Ok(Some(read)),
            Outcome::FileGone(row) => self.quarantine(&row, None, now).map(|_| None),
            Outcome::Corrupt(row, stored) => {
                self.quarantine(&row, Some(&stored), now).map(|_| None)
            }
        }
    }

    /// Reads several keys as of one snapshot of the index (file blobs are
    /// immutable, so their bytes belong to the same instant).
    ///
    /// # Errors
    /// As [`Store::read`].
    pub fn read_many(
        &self,
        keys: &[&str],
        now: Millis,
        want_bytes: impl Fn(&Row) -> bool,
    ) -> Result<Vec<Option<Read>>> {
        // Two tries: a file can vanish between the row read and the file
        // read when another process deletes or replaces the key.
        for attempt in 0..2 {
            let read_all = |r: &mut Reader| {
                keys.iter()
                    .map(|k| self.read_in(r, k, &want_bytes))
                    .collect::<Result<Vec<_>>>()
            };
            // One key needs no explicit transaction: one statement is a snapshot.
            let results = if keys.len() == 1 {
                self.index.read_with(read_all)?
            } else {
                self.index.read_snapshot(read_all)?
            };
            let retry = attempt == 0 && results.iter().any(|r| matches!(r, Outcome::FileGone(_)));
            if retry {
                continue;
            }
            return results.into_iter().map(|r| self.settle(r, now)).collect();
        }
        unreachable!("the second attempt always returns")
    }

    /// Reads one key on an open (snapshot) connection; no side effects.
    pub(crate) fn read_in(
        &self,
        r: &mut Reader,
        key: &str,
        want_bytes: &dyn Fn(&Row) -> bool,
    ) -> Result<Outcome> {
        let found = r.lookup(key, want_bytes).map_err(|e| self.index.wrap(e))?;
        self.fetch(found, want_bytes)
    }

    /// The bytes of a looked-up row, read and verified (no side effects).
    fn fetch(&self, found: Option<Found>, want_bytes: &dyn Fn(&Row) -> bool) -> Result<Outcome> {
        let Some(Found { row, inline }) = found else {
            return Ok(Outcome::Miss);
        };
        if !want_bytes(&row) {
            return Ok(Outcome::Hit(Read { row, bytes: None }));
        }
        // A row claiming more than a put may store (a damaged row, or one
        // stored under a larger max_value_size): verified by streaming, in
        // bounded memory, before anything of its claimed size is allocated.
        if (row.size > self.max_blob || row.stored_size > self.max_blob)
            && !self.verify_streaming(&row, inline.as_deref())?
        {
            return Ok(Outcome::Corrupt(row, inline.unwrap_or_default()));
        }
        let stored = match inline {
            Some(b) => b,
            None => match self.files.read(&row.hash, row.stored_size)? {
                Some(b) => b,
                None => return Ok(Outcome::FileGone(row)),
            },
        };
        if stored.len() as u64 != row.stored_size {
            return Ok(Outcome::Corrupt(row, stored));
        }
        let raw = row.codec == Codec::Raw;
        match codec::decode_owned(row.codec, stored, row.size, &row.hash) {
            Ok(bytes) => Ok(Outcome::Hit(Read {
                row,
                bytes: Some(if raw {
                    crate::disk::blob::pool::into_bytes(bytes)
                } else {
                    bytes::Bytes::from(bytes)
                }),
            })),
            Err(stored) => Ok(Outcome::Corrupt(row, stored)),
        }
    }

    /// Verifies a blob without holding it (see [`codec::verify_stream`]);
    /// a missing file counts as good here (the caller reads it next and
    /// finds it gone).
    fn verify_streaming(&self, row: &Row, inline: Option<&[u8]>) -> Result<bool> {
        let ok = match inline {
            Some(b) => codec::verify_stream(row.codec, b, row.stored_size, row.size, &row.hash),
            None => match self.files.open(&row.hash)? {
                Opened::File(f, _) => codec::verify_stream(
                    row.codec,
                    self.files.reader(f),
                    row.stored_size,
                    row.size,
                    &row.hash,
                ),
                Opened::Missing => Ok(true),
                Opened::NotAFile => Ok(false),
            },
        };
        ok.map_err(|e| crate::base::error::Error::Io {
            path: self.files.path(&row.hash),
            source: e,
        })
    }

    /// Quarantines a blob that failed verification: its bytes go to
    /// `quarantine/`, its row and every entry that pointed at it are deleted,
    /// the corrupt counter goes up. Returns the keys that lost their value.
    ///
    /// # Errors
    /// [`Error::Index`] or [`Error::Io`].
    pub fn quarantine(&self, row: &Row, stored: Option<&[u8]>, now: Millis) -> Result<Vec<String>> {
        let keys = self.write(|tx| {
            let w = |e| self.index.wrap(e);
            // Only if the blob is still the one we read: not replaced, and
            // not re-encoded by a writer that put its lost file back.
            match index::find_blob(tx, &row.hash).map_err(w)? {
                Some(b)
                    if b.id == row.blob_id
                        && b.stored_size == row.stored_size
                        && b.codec == row.codec as i64 => {}
                _ => return Ok(Vec::new()),
            }
            // A file that was missing and is back, whole, was put back by a
            // writer: not damage.
            if row.is_file
                && stored.is_none()
                && self.files.len_of(&row.hash) == Some(row.stored_size)
            {
                return Ok(Vec::new());
            }
            let keys = index::keys_of_blob(tx, row.blob_id).map_err(w)?;
            if row.is_file {
                self.files.quarantine(&row.hash, None, now)?;
            } else if let Some(bytes) = stored {
                self.files.quarantine(&row.hash, Some(bytes), now)?;
            }
            self.delete_in(tx, &keys)?;
            index::bump(tx, names::CORRUPT_BLOBS, 1).map_err(w)?;
            Ok(keys)
        })?;
        if !keys.is_empty() {
            tracing::warn!(hash = %row.hash, keys = keys.len(), "blob failed verification; quarantined");
        }
        Ok(keys)
    }
}
