//! How entries look in Redis: key names (with cluster hash tags) and the
//! metadata record.
//!
//! Keys (`P` = `redis.key_prefix`):
//! - `P:e:{K}`   the entry record: metadata, plus the value when small
//! - `P:l:{K}`   the fetch lease of the same key (same slot as its entry)
//! - `P:b:{H}`   a shared blob (hex blake3), deduplicated across keys
//! - `P:{idx}:lex` / `P:{idx}:exp` the key index invalidation walks
//! - `P:{inv}:log` the invalidation log replayed after a disconnect
//! - `P:{limits}:…` global quota and rate counters (one slot, one script)
//!
//! `K` is the cache key with `%`, `{` and `}` percent-encoded, so the hash tag
//! is the whole key and never empty: an entry and its lease share a slot.
//!
//! The record is `FC1` + u32 header length (big endian) + a JSON header +
//! the inline value (if any). JSON keeps the record readable with
//! `redis-cli`; the value stays raw bytes.

use serde::{Deserialize, Serialize};

use crate::base::clock::Millis;
use crate::disk::blob::Digest;

const MAGIC: &[u8; 3] = b"FC1";

/// Redis key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }
    /// The prefix (also the scope of this tier's log in a root's index).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
    pub(crate) fn entry(&self, key: &str) -> String {
        format!("{}:e:{{{}}}", self.prefix, escape(key))
    }
    pub(crate) fn lease(&self, key: &str) -> String {
        format!("{}:l:{{{}}}", self.prefix, escape(key))
    }
    pub(crate) fn blob(&self, hash: &Digest) -> String {
        format!("{}:b:{{{}}}", self.prefix, hash.to_hex())
    }
    pub(crate) fn index_lex(&self) -> String {
        format!("{}:{{idx}}:lex", self.prefix)
    }
    pub(crate) fn index_exp(&self) -> String {
        format!("{}:{{idx}}:exp", self.prefix)
    }
    pub(crate) fn inv_log(&self) -> String {
        format!("{}:{{inv}}:log", self.prefix)
    }
    /// The random token naming the data set the log belongs to (same
    /// slot as the log): gone or different = the data set was replaced.
    pub(crate) fn inv_epoch(&self) -> String {
        format!("{}:{{inv}}:epoch", self.prefix)
    }
    pub(crate) fn inv_channel(&self) -> String {
        format!("{}:inv", self.prefix)
    }
    pub(crate) fn quota(&self, window: i64) -> String {
        format!("{}:{{limits}}:quota:{window}", self.prefix)
    }
    pub(crate) fn rate(&self, host: &str) -> String {
        format!("{}:{{limits}}:rate:{}", self.prefix, escape(host))
    }
}

/// Percent-encodes `%`, `{` and `}` (the hash-tag delimiters).
pub(crate) fn escape(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// Where an entry's value lives in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Body {
    /// After the header, in the record itself.
    Inline,
    /// In `P:b:{hash}`.
    Blob,
    /// Not shared (larger than `max_blob_size`): metadata only.
    None,
}

/// An entry's metadata as stored in Redis: the same fields as the index row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub class: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
    /// Hex blake3 of the uncompressed value.
    pub hash: String,
    pub size: u64,
    pub body: Body,
}

impl Record {
    pub(crate) fn digest(&self) -> Option<Digest> {
        Digest::from_hex(&self.hash)
    }
}

/// Encodes a record and, for [`Body::Inline`], its value.
pub(crate) fn encode(rec: &Record, inline: Option<&[u8]>) -> Vec<u8> {
    let header = serde_json::to_vec(rec).unwrap_or_default();
    let body = inline.unwrap_or_default();
    let mut out = Vec::with_capacity(7 + header.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

/// The last instant a record may name: `9999-12-31T23:59:59.999Z`.
const MAX_INSTANT_MS: Millis = 253_402_300_799_999;

/// Decodes a record; `None` for anything malformed (never a panic),
/// including instants outside `0..=9999-12-31`, an expiry before the
/// creation, or a size no blob may have: such a record is not this cache's
/// and is treated as absent rather than stored locally.
pub(crate) fn decode(bytes: &[u8]) -> Option<(Record, &[u8])> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let header = rest.get(4..4usize.checked_add(len)?)?;
    let body = rest.get(4 + len..)?;
    let rec: Record = serde_json::from_slice(header).ok()?;
    rec.digest()?;
    let instants = 0..=MAX_INSTANT_MS;
    if !(instants.contains(&rec.created_at)
        && instants.contains(&rec.expires_at)
        && rec.created_at <= rec.expires_at
        && rec.size <= crate::base::limits::MAX_BLOB_BYTES)
    {
        return None;
    }
    Some((rec, body))
}

/// Decodes only a record's header (the value may be cut off: a prefix of
/// the record is enough); `None` if malformed or incomplete.
pub(crate) fn decode_header(bytes: &[u8]) -> Option<Record> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let header = rest.get(4..4usize.checked_add(len)?)?;
    let rec: Record = serde_json::from_slice(header).ok()?;
    rec.digest()?;
    Some(rec)
}

/// A shared blob: one codec byte, then the encoded bytes.
pub(crate) fn encode_blob(value: &[u8], zstd_level: i32) -> Vec<u8> {
    let (codec, bytes) = crate::disk::blob::codec::encode(value, zstd_level);
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(codec as u8);
    out.extend_from_slice(&bytes);
    out
}

/// Decodes and verifies a shared blob; `None` if it is not `hash`'s content.
pub(crate) fn decode_blob(stored: &[u8], size: u64, hash: &Digest) -> Option<Vec<u8>> {
    let (codec, bytes) = stored.split_first()?;
    let codec = crate::disk::blob::codec::Codec::from_i64(i64::from(*codec))?;
    crate::disk::blob::codec::decode(codec, bytes, size, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(body: Body) -> Record {
        Record {
            class: "odds".into(),
            created_at: 1,
            expires_at: 2,
            etag: Some("\"v1\"".into()),
            last_modified: None,
            headers: None,
            hash: Digest::of(b"x").to_hex(),
            size: 1,
            body,
        }
    }

    #[test]
    fn record_round_trips_with_inline_value() {
        let r = rec(Body::Inline);
        let bytes = encode(&r, Some(b"x"));
        let (back, body) = decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(body, b"x");
    }

    #[test]
    fn malformed_records_decode_to_none() {
        let good = encode(&rec(Body::None), None);
        for bad in [
            &b""[..],
            b"FC1",
            b"FC1\0\0\0\x09{}",
            b"XX1\0\0\0\0",
            &good[..good.len() - 1],
        ] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn header_decodes_from_a_prefix_of_the_record() {
        let r = rec(Body::Inline);
        let bytes = encode(&r, Some(&[9u8; 5000]));
        assert_eq!(decode_header(&bytes[..200]).unwrap(), r);
        assert!(decode_header(&bytes[..20]).is_none());
        assert!(decode_header(b"FC1\0\0\0\x02{}").is_none());
    }

    #[test]
    fn out_of_range_instants_and_sizes_decode_to_none() {
        let mut ok = rec(Body::None);
        ok.expires_at = MAX_INSTANT_MS;
        assert!(decode(&encode(&ok, None)).is_some());
        for (created, expires, size) in [
            (1, i64::MAX, 1),
            (1, MAX_INSTANT_MS + 1, 1),
            (-1, 2, 1),
            (1, -5, 1),
            (i64::MIN, i64::MIN, 1),
            (10, 5, 1),
            (1, 2, u64::MAX),
        ] {
            let mut r = rec(Body::None);
            (r.created_at, r.expires_at, r.size) = (created, expires, size);
            assert!(decode(&encode(&r, None)).is_none(), "{r:?}");
        }
    }

    #[test]
    fn hash_tags_cover_the_whole_key() {
        let k = Keys::new("fc");
        assert_eq!(k.entry("a:}b{:%"), "fc:e:{a:%7Db%7B:%25}");
        assert_eq!(k.lease("odds:g1"), "fc:l:{odds:g1}");
    }

    #[test]
    fn blob_round_trips_and_verifies() {
        let v = vec![7u8; 10_000];
        let h = Digest::of(&v);
        let stored = encode_blob(&v, 3);
        assert_eq!(decode_blob(&stored, v.len() as u64, &h).unwrap(), v);
        assert!(decode_blob(&stored, v.len() as u64, &Digest::of(b"other")).is_none());
        assert!(decode_blob(&[], 0, &h).is_none());
    }
}
