//! The values a cache hands out and takes: put options, what a put
//! stored, an entry's metadata, an entry with its bytes.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::base::clock::Millis;
use crate::base::policy::Freshness;
use crate::disk::blob::Digest;
use crate::disk::index::Row;

/// Options of a put. `Put::default()` picks the class by key prefix.
#[derive(Debug, Clone, Default)]
pub struct Put {
    /// Name a class instead of matching by prefix.
    pub class: Option<String>,
    /// Override the class TTL.
    pub ttl: Option<Duration>,
    /// HTTP validator stored with the entry.
    pub etag: Option<String>,
    /// HTTP validator stored with the entry (kept verbatim).
    pub last_modified: Option<String>,
    /// Response headers as a JSON object (the fetcher stores these).
    pub headers: Option<String>,
}

impl Put {
    /// Names the class.
    pub fn class(mut self, c: impl Into<String>) -> Self {
        self.class = Some(c.into());
        self
    }
    /// Sets the TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets the ETag.
    pub fn etag(mut self, e: impl Into<String>) -> Self {
        self.etag = Some(e.into());
        self
    }
    /// Sets Last-Modified.
    pub fn last_modified(mut self, lm: impl Into<String>) -> Self {
        self.last_modified = Some(lm.into());
        self
    }
}

/// What a put stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stored {
    /// blake3 of the value (the blob's name).
    pub hash: Digest,
    /// The TTL class.
    pub class: String,
    /// Bytes of the value.
    pub size: u64,
    /// Bytes of the encoded blob (compressed or raw).
    pub stored_size: u64,
    /// When it was stored (ms since the epoch, UTC).
    pub created_at: Millis,
    /// When it stops being fresh.
    pub expires_at: Millis,
    /// The content was already in the store.
    pub deduplicated: bool,
}

/// An entry's metadata and freshness (no bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Meta {
    /// The key.
    pub key: String,
    #[serde(serialize_with = "ser_hex")]
    /// blake3 of the value (the blob's name).
    pub hash: Digest,
    /// The TTL class.
    pub class: String,
    /// Bytes of the value.
    pub size: u64,
    /// Bytes of the encoded blob (compressed or raw).
    pub stored_size: u64,
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    /// When it was stored (ms since the epoch, UTC).
    pub created_at: Millis,
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    /// When it stops being fresh.
    pub expires_at: Millis,
    /// The upstream ETag.
    pub etag: Option<String>,
    /// The upstream Last-Modified, verbatim.
    pub last_modified: Option<String>,
    #[serde(skip)]
    /// Stored response headers (JSON object), for the fetcher.
    pub headers: Option<String>,
    /// Reads served (batched: exact up to one flush window).
    pub hits: u64,
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    /// Last read (the LRU order).
    pub last_access: Millis,
    /// Fresh or stale at the time of the read.
    pub freshness: Freshness,
    /// Milliseconds since created_at, at the time of the read.
    pub age_ms: i64,
}

fn ser_hex<S: serde::Serializer>(d: &Digest, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_hex())
}

impl Meta {
    pub(crate) fn from_row(row: Row, now: Millis) -> Meta {
        Meta {
            freshness: Freshness::at(row.expires_at, now),
            age_ms: now.saturating_sub(row.created_at),
            key: row.key,
            hash: row.hash,
            class: row.class,
            size: row.size,
            stored_size: row.stored_size,
            created_at: row.created_at,
            expires_at: row.expires_at,
            etag: row.etag,
            last_modified: row.last_modified,
            headers: row.headers,
            hits: row.hits,
            last_access: row.last_access,
        }
    }
}

/// An entry with its bytes, fresh or stale.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// Its metadata.
    pub meta: Meta,
    /// Its verified bytes.
    pub value: Bytes,
}
