//! Reads through, writes through and invalidates across instances.
//!
//! Invariants:
//! - A Redis entry carries the index row's metadata; its Redis TTL is the
//!   remaining freshness plus `redis.grace`, so "fresh" means the same on
//!   every instance, and a stale Redis entry is never returned as fresh.
//! - Values are verified against their blake3 hash before they are served
//!   or backfilled; a value that fails is a miss.
//! - The cache backfills what it reads here into its local store directly
//!   (same created_at, expires_at and validators), never back through.

use futures_util::future::{try_join, try_join_all};
use redis::Script;

use redis::RedisResult;

use super::codec::{self, Body, Record};
use super::{Conn, Core, RedisTier};
use crate::base::clock::Millis;
use crate::base::key::{Key, Pattern};
use crate::base::policy::Freshness;
use crate::cache::plug::Remote;
use crate::disk::store::PutItem;

/// Adds a key to the lexicographic index and its expiry to the expiry
/// index, then drops a few index members whose entries have expired.
const INDEX_SCRIPT: &str = r"
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, 16)
for _, k in ipairs(old) do
  redis.call('ZREM', KEYS[1], k)
  redis.call('ZREM', KEYS[2], k)
end
return #old";

/// Extends a shared blob's TTL if it exists (1) or says it is missing (0).
const BLOB_TOUCH_SCRIPT: &str = r"
local t = redis.call('PTTL', KEYS[1])
if t == -2 then return 0 end
if t >= 0 and t < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1";

/// One entry on its way to Redis.
struct Outgoing {
    key: String,
    entry_key: String,
    record: Vec<u8>,
    blob: Option<(String, Vec<u8>)>,
    ttl_ms: i64,
    index_until: i64,
}

impl RedisTier {
    /// Looks `key` up in Redis after a local miss (or a stale local copy):
    /// a fresh entry — or, with `allow_stale`, a stale one — verified
    /// against its hash. The cache backfills it.
    pub(crate) fn read_through(&self, key: &Key, now: Millis, allow_stale: bool) -> Option<Remote> {
        // Our own invalidations not yet shared: Redis may still hold what
        // they removed here, so nothing is read through until they are.
        if self.core.breaker.may_try() && self.outbox_pending() && !self.share_pending() {
            return None;
        }
        let seen = self.position();
        let entry_key = self.core.keys.entry(key.as_str());
        let keys = self.core.keys.clone();
        let timeout = self.core.settings.timeout;
        let got = self.block("get", timeout * 2, move |core| async move {
            let mut c = core.conn().await?;
            let raw: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&entry_key)
                .query_async(&mut c)
                .await?;
            let Some(raw) = raw else { return Ok(None) };
            let Some((rec, inline)) = codec::decode(&raw) else {
                return Ok(None);
            };
            let inline = inline.to_vec();
            let blob: Option<Vec<u8>> = match (rec.body, rec.digest()) {
                (Body::Blob, Some(d)) if allow_stale || rec.expires_at > now => {
                    redis::cmd("GET")
                        .arg(keys.blob(&d))
                        .query_async(&mut c)
                        .await?
                }
                _ => None,
            };
            Ok(Some((rec, inline, blob)))
        });
        // Unavailable (breaker open, error, timeout): not a Redis miss.
        let got = got?;
        let found = got.and_then(|(rec, inline, blob)| {
            let fresh = Freshness::at(rec.expires_at, now).is_fresh();
            if !fresh && !allow_stale {
                return None;
            }
            let hash = rec.digest()?;
            // A damaged or hostile record must not make us allocate what it claims.
            if rec.size > crate::base::limits::MAX_BLOB_BYTES {
                return None;
            }
            let value = match rec.body {
                Body::Inline => {
                    crate::disk::blob::codec::verify(&inline, &hash).then_some(inline)?
                }
                Body::Blob => codec::decode_blob(&blob?, rec.size, &hash)?,
                Body::None => return None,
            };
            Some((rec, hash, value, fresh))
        });
        let Some((rec, hash, value, _fresh)) = found else {
            self.core.count("misses", 1);
            return None;
        };
        Some(Remote {
            hash,
            value,
            class: rec.class,
            created_at: rec.created_at,
            expires_at: rec.expires_at,
            etag: rec.etag,
            last_modified: rec.last_modified,
            headers: rec.headers,
            seen,
        })
    }

    /// The root's persisted log position (`None` if unknown).
    fn position(&self) -> Option<(String, crate::disk::index::LogId)> {
        let cache = self.core.cache()?;
        cache
            .shared_position(self.core.keys.prefix())
            .ok()
            .flatten()
    }

    /// See [`crate::cache::plug::SharedTier::still_valid`]: one index read
    /// unless an invalidation was applied meanwhile; then one round trip
    /// compares Redis's record with the put that was read.
    pub(crate) fn still_valid(&self, key: &Key, remote: &Remote) -> bool {
        // The position moves in the transaction of every apply's deletes:
        // unchanged means none committed between the read and now (one
        // that commits later deletes the backfilled copy itself).
        if self.position() == remote.seen {
            return true;
        }
        let entry_key = self.core.keys.entry(key.as_str());
        let (hash, created_at) = (remote.hash.to_hex(), remote.created_at);
        let deadline = self.core.settings.timeout * 2;
        let same = self.block("get", deadline, move |core| async move {
            let mut c = core.conn().await?;
            same_put(&mut c, &entry_key, &hash, created_at).await
        });
        // Unknown (unreachable) counts as invalid: the safe answer.
        same.unwrap_or(false)
    }

    /// Writes freshly stored entries through to Redis (waits for the
    /// acknowledgement, bounded by the timeout; a failure only opens the
    /// breaker).
    pub(crate) fn write_through(&self, now: Millis, items: &[PutItem<'_>]) {
        if !self.core.breaker.may_try() {
            return;
        }
        let s = &self.core.settings;
        let out: Vec<Outgoing> = items
            .iter()
            .filter_map(|it| {
                let f = &it.fields;
                let ttl_ms = f.expires_at - now + s.grace_ms;
                if ttl_ms <= 0 {
                    return None;
                }
                let size = it.value.len() as u64;
                let body = if size <= s.inline_max {
                    Body::Inline
                } else if size <= s.max_blob_size {
                    Body::Blob
                } else {
                    Body::None
                };
                let rec = Record {
                    class: f.class.to_owned(),
                    created_at: f.created_at,
                    expires_at: f.expires_at,
                    etag: f.etag.map(str::to_owned),
                    last_modified: f.last_modified.map(str::to_owned),
                    headers: f.headers.map(str::to_owned),
                    hash: it.hash.to_hex(),
                    size,
                    body,
                };
                let inline = (body == Body::Inline).then_some(it.value);
                let blob = (body == Body::Blob).then(|| {
                    let b = codec::encode_blob(it.value, s.zstd_level);
                    (self.core.keys.blob(&it.hash), b)
                });
                Some(Outgoing {
                    key: it.key.to_owned(),
                    entry_key: self.core.keys.entry(it.key),
                    record: codec::encode(&rec, inline),
                    blob,
                    ttl_ms,
                    index_until: now + ttl_ms,
                })
            })
            .collect();
        if out.is_empty() {
            return;
        }
        let n = out.len() as i64;
        let deadline = s.timeout * (1 + out.len().min(8) as u32);
        let done = self.block("put", deadline, move |core| async move {
            let c = core.conn().await?;
            // Items in parallel on the multiplexed connection; per item the
            // blob first (a record must not name a blob not yet there), then
            // the record and its index entry together.
            let writes = out.into_iter().map(|o| {
                let (mut c1, mut c2, core) = (c.clone(), c.clone(), core.clone());
                async move {
                    if let Some((bk, bytes)) = &o.blob {
                        let touch = Script::new(BLOB_TOUCH_SCRIPT);
                        let present: i64 =
                            touch.key(bk).arg(o.ttl_ms).invoke_async(&mut c1).await?;
                        if present == 0 {
                            redis::cmd("SET")
                                .arg(bk)
                                .arg(bytes)
                                .arg("PX")
                                .arg(o.ttl_ms)
                                .query_async::<()>(&mut c1)
                                .await?;
                        }
                    }
                    let mut set = redis::cmd("SET");
                    set.arg(&o.entry_key).arg(&o.record).arg("PX").arg(o.ttl_ms);
                    let record = set.query_async::<()>(&mut c1);
                    let index = Script::new(INDEX_SCRIPT);
                    let mut index = index.prepare_invoke();
                    index
                        .key(core.keys.index_lex())
                        .key(core.keys.index_exp())
                        .arg(&o.key)
                        .arg(o.index_until)
                        .arg(now);
                    let indexed = index.invoke_async::<i64>(&mut c2);
                    try_join(record, indexed).await.map(|_| ())
                }
            });
            try_join_all(writes).await.map(|_| ())
        });
        if done.is_some() {
            self.core.count("writes", n);
        }
    }
}

/// Removes every Redis record matching `pattern` (a lex range of the key
/// index, then the exact matcher); returns how many.
pub(crate) async fn remove_matching(
    core: &Core,
    c: &mut Conn,
    pattern: &Pattern,
) -> RedisResult<usize> {
    let prefix = pattern.literal_prefix().as_bytes().to_vec();
    let (lo, hi) = if prefix.is_empty() {
        (b"-".to_vec(), b"+".to_vec())
    } else {
        let mut lo = b"[".to_vec();
        lo.extend_from_slice(&prefix);
        let mut hi = b"(".to_vec();
        hi.extend_from_slice(&prefix);
        hi.push(0xff);
        (lo, hi)
    };
    let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
        .arg(core.keys.index_lex())
        .arg(lo)
        .arg(hi)
        .query_async(c)
        .await?;
    let doomed: Vec<String> = members.into_iter().filter(|k| pattern.matches(k)).collect();
    let mut removed = 0usize;
    for chunk in doomed.chunks(256) {
        let dels = chunk.iter().map(|k| {
            let mut c = c.clone();
            let key = core.keys.entry(k);
            async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut c).await }
        });
        removed += try_join_all(dels).await?.into_iter().sum::<i64>() as usize;
        for z in [core.keys.index_lex(), core.keys.index_exp()] {
            redis::cmd("ZREM")
                .arg(z)
                .arg(chunk)
                .query_async::<()>(c)
                .await?;
        }
    }
    Ok(removed)
}

/// Bytes of a record read to compare its header (the whole record when
/// the header is longer).
const HEADER_PEEK: usize = 1024;

/// Whether Redis's record for `entry_key` is the put a local entry holds.
pub(crate) async fn same_put(
    c: &mut Conn,
    entry_key: &str,
    hash: &str,
    created_at: i64,
) -> RedisResult<bool> {
    let head: Vec<u8> = redis::cmd("GETRANGE")
        .arg(entry_key)
        .arg(0)
        .arg(HEADER_PEEK - 1)
        .query_async(c)
        .await?;
    if head.is_empty() {
        return Ok(false);
    }
    let rec = match codec::decode_header(&head) {
        Some(r) => Some(r),
        None if head.len() >= HEADER_PEEK => {
            let full: Option<Vec<u8>> = redis::cmd("GET").arg(entry_key).query_async(c).await?;
            full.as_deref().and_then(codec::decode_header)
        }
        None => None,
    };
    Ok(rec.is_some_and(|r| r.hash == hash && r.created_at == created_at))
}
