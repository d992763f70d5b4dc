//! A root's place in the shared invalidation log, persisted in its index.
//!
//! - **Publishing** (an outbox row): the matching Redis records are
//!   removed, then one script appends `{origin, pattern}` to the log
//!   `P:{inv}:log` (exact `MAXLEN redis.log_len`) and publishes
//!   `epoch\nid\norigin\npattern` on `P:inv`. XADD and PUBLISH in one script
//!   run atomically, so every subscriber hears the messages in log order.
//!   The script creates the data set's epoch (`P:{inv}:epoch`, a random
//!   token, same slot as the log) when it is missing.
//! - **Catching up** (at open, and after every subscriber (re)connect): one
//!   script returns the epoch, the log's newest and largest trimmed ids,
//!   and the entries after the root's persisted position — one round trip
//!   when nothing was missed. They are applied, and the position moved, in
//!   one index transaction.
//! - **Reconciling**, when the position cannot be caught up from — the log
//!   was trimmed past it, the epoch changed (Redis restarted empty, a
//!   FLUSHALL, another server), the log is behind the position (a replica
//!   promoted without the newest entries), or the root never synced: every
//!   local entry whose Redis record is not the same put (hash and
//!   `created_at`) is dropped, and the position is reset to the log's end.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::{RedisError, RedisResult};

use super::io::same_put;
use super::{Conn, Core, RedisTier};
use crate::base::key::Pattern;
use crate::cache::Cache;
use crate::disk::index::LogId;

/// Entries replayed per round trip after the first.
const REPLAY_BATCH: usize = 1000;
/// Local entries checked per pipelined batch during a reconcile.
const RECONCILE_BATCH: usize = 256;
/// Outbox rows read at a time.
const OUTBOX_BATCH: i64 = 64;

/// KEYS: log, epoch. ARGV: candidate epoch, position (`ms-seq`, or empty
/// for none), count. Returns {epoch, last-generated id, the oldest kept id
/// if anything was ever trimmed (else `0-0`), entries after the position}.
const CATCH_UP_SCRIPT: &str = r"
local e = redis.call('GET', KEYS[2])
if not e then redis.call('SET', KEYS[2], ARGV[1]); e = ARGV[1] end
if redis.call('EXISTS', KEYS[1]) == 0 then return {e, '0-0', '0-0', {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, first, oldest, added, len = '0-0', '0-0', '0-0', nil, 0
for i = 1, #info, 2 do
  local k, v = info[i], info[i + 1]
  if k == 'last-generated-id' then last = v end
  if k == 'recorded-first-entry-id' then first = v end
  if k == 'first-entry' and type(v) == 'table' then oldest = v[1] end
  if k == 'entries-added' then added = v end
  if k == 'length' then len = v end
end
-- Trimming leaves max-deleted-entry-id alone; entries-added > length says
-- some were trimmed, and the oldest kept one bounds what is gone. Before
-- Redis 7 there is no entries-added: any entry older than the oldest kept
-- one may have been trimmed.
local trimmed = '0-0'
if added == nil then trimmed = oldest
elseif added > len then trimmed = first end
local entries = {}
if ARGV[2] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[3])
end
return {e, last, trimmed, entries}";

/// KEYS: log, epoch. ARGV: candidate epoch, log length, origin, pattern,
/// channel. Returns {epoch, previous last id, new id}.
const PUBLISH_SCRIPT: &str = r"
local e = redis.call('GET', KEYS[2])
if not e then redis.call('SET', KEYS[2], ARGV[1]); e = ARGV[1] end
local prev = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then prev = info[i + 1] end
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'o', ARGV[3], 'p', ARGV[4])
redis.call('PUBLISH', ARGV[5], e .. '\n' .. id .. '\n' .. ARGV[3] .. '\n' .. ARGV[4])
return {e, prev, id}";

pub(crate) fn parse_id(s: &str) -> Option<LogId> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn fmt_id(id: LogId) -> String {
    format!("{}-{}", id.0, id.1)
}

fn storage(e: crate::base::error::Error) -> RedisError {
    std::io::Error::other(format!("local index: {e}")).into()
}

/// Runs a blocking operation on the owning cache off the runtime's
/// workers. `None` once the cache is gone. The cache is held only for the
/// operation, never across a Redis call, so a process that ends (a CLI
/// call) drops it — and flushes its counters — whatever is in flight here.
async fn with_cache<T: Send + 'static>(
    core: &Arc<Core>,
    f: impl FnOnce(&Cache) -> crate::base::error::Result<T> + Send + 'static,
) -> RedisResult<Option<T>> {
    let Some(cache) = core.cache() else {
        return Ok(None);
    };
    match tokio::task::spawn_blocking(move || f(&cache)).await {
        Ok(r) => r.map(Some).map_err(storage),
        Err(e) => Err(std::io::Error::other(e.to_string()).into()),
    }
}

/// Log entries as XRANGE returns them.
type RawEntries = Vec<(String, Vec<Vec<u8>>)>;

/// One log entry: id, origin, pattern.
type LogEntry = (LogId, String, String);

fn parse_entries(raw: RawEntries) -> Vec<LogEntry> {
    raw.into_iter()
        .filter_map(|(id, fields)| {
            let get = |name: &[u8]| {
                fields
                    .chunks(2)
                    .find(|kv| kv.first().is_some_and(|k| k == name))
                    .and_then(|kv| kv.get(1))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            Some((parse_id(&id)?, get(b"o")?, get(b"p")?))
        })
        .collect()
}

/// A fresh random epoch token (used only if the data set has none).
fn candidate_epoch() -> String {
    super::instance_id()
}

/// Catches this root up with the log: publishes its outbox, then replays
/// what it missed or reconciles. Marks the process confirmed on success.
pub(crate) async fn catch_up(core: &Arc<Core>, c: &mut Conn) -> RedisResult<()> {
    let _one = core.sync_lock.lock().await;
    let scope = core.keys.prefix().to_owned();
    // One local read: the position, and whether the outbox needs a flush.
    let read = {
        let scope = scope.clone();
        with_cache(core, move |cache| {
            let pending = !cache.outbox_peek(&scope, 1)?.is_empty();
            Ok((cache.shared_position(&scope)?, pending))
        })
        .await?
    };
    let Some((stored, pending)) = read else {
        return Ok(());
    };
    if pending {
        flush_outbox(core, c).await?;
    }
    let since = stored.as_ref().map_or(String::new(), |(_, p)| fmt_id(*p));
    let (epoch, last, trimmed, raw): (String, String, String, RawEntries) =
        redis::Script::new(CATCH_UP_SCRIPT)
            .key(core.keys.inv_log())
            .key(core.keys.inv_epoch())
            .arg(candidate_epoch())
            .arg(&since)
            .arg(REPLAY_BATCH)
            .invoke_async(c)
            .await?;
    let last = parse_id(&last).unwrap_or((0, 0));
    let trimmed = parse_id(&trimmed).unwrap_or((0, 0));
    let replayable = match &stored {
        // Entries older than the oldest kept one are gone; the entry right
        // after the position may be among them unless it is that one (a
        // reconcile at exactly that boundary is merely unnecessary).
        Some((e, pos)) => *e == epoch && *pos <= last && trimmed <= *pos,
        None => false,
    };
    if !replayable {
        let why = match &stored {
            None => "this root never synced with the log",
            Some((e, _)) if *e != epoch => "the redis data set was replaced (new epoch)",
            Some((_, pos)) if *pos > last => "the log is behind this root's position",
            Some(_) => "the log was trimmed past this root's position",
        };
        reconcile(core, c, &epoch, last, why).await?;
    } else {
        let mut entries = parse_entries(raw);
        let mut pos = stored.map_or((0, 0), |(_, p)| p);
        loop {
            let full = entries.len() >= REPLAY_BATCH;
            if let Some((id, _, _)) = entries.last() {
                pos = *id;
                apply(core, &epoch, pos, &entries).await?;
            }
            if !full {
                break;
            }
            let raw: RawEntries = redis::cmd("XRANGE")
                .arg(core.keys.inv_log())
                .arg(format!("({}", fmt_id(pos)))
                .arg("+")
                .arg("COUNT")
                .arg(REPLAY_BATCH)
                .query_async(c)
                .await?;
            entries = parse_entries(raw);
        }
    }
    core.sub.confirm(epoch);
    Ok(())
}

/// Applies log entries (other origins' patterns) and moves the position
/// to `upto`, in one local transaction.
pub(crate) async fn apply(
    core: &Arc<Core>,
    epoch: &str,
    upto: LogId,
    entries: &[LogEntry],
) -> RedisResult<()> {
    let patterns: Vec<String> = entries
        .iter()
        .filter(|(_, origin, _)| *origin != core.instance)
        .map(|(_, _, p)| p.clone())
        .collect();
    let n = patterns.len() as i64;
    let (scope, epoch) = (core.keys.prefix().to_owned(), epoch.to_owned());
    with_cache(core, move |cache| {
        cache.apply_shared(&scope, &epoch, upto, &patterns, false)
    })
    .await?;
    if n > 0 {
        core.count("invalidations_received", n);
    }
    Ok(())
}

/// Drops every local entry whose Redis record is not the same put, then
/// resets the position to `newest` of `epoch` (in the same transaction).
async fn reconcile(
    core: &Arc<Core>,
    c: &mut Conn,
    epoch: &str,
    newest: LogId,
    why: &str,
) -> RedisResult<()> {
    let Some(metas) = with_cache(core, |cache| cache.list(None)).await? else {
        return Ok(());
    };
    if !metas.is_empty() {
        tracing::warn!(local = metas.len(), "reconciling with redis: {why}");
    }
    let mut gone = Vec::new();
    for chunk in metas.chunks(RECONCILE_BATCH) {
        let checks = chunk.iter().map(|m| {
            let mut c = c.clone();
            let key = core.keys.entry(&m.key);
            async move { same_put(&mut c, &key, &m.hash.to_hex(), m.created_at).await }
        });
        let same = try_join_all(checks).await?;
        gone.extend(
            chunk
                .iter()
                .zip(same)
                .filter(|(_, same)| !same)
                .map(|(m, _)| m.key.clone()),
        );
    }
    let dropped = gone.len();
    let (scope, epoch) = (core.keys.prefix().to_owned(), epoch.to_owned());
    // Keys are valid patterns matching only themselves.
    let gone: Vec<String> = gone
        .into_iter()
        .filter(|k| Pattern::new(k).is_ok())
        .collect();
    with_cache(core, move |cache| {
        cache.apply_shared(&scope, &epoch, newest, &gone, true)
    })
    .await?;
    core.count("reconciles", 1);
    if dropped > 0 || !metas.is_empty() {
        tracing::info!(
            dropped,
            kept = metas.len() - dropped,
            "reconciled local tiers with redis"
        );
    }
    Ok(())
}

/// Publishes this root's outbox in order (removing the matching Redis
/// records first). Returns when it is empty; an error leaves the rest
/// queued.
pub(crate) async fn flush_outbox(core: &Arc<Core>, c: &mut Conn) -> RedisResult<()> {
    let _one = core.flush_lock.lock().await;
    let scope = core.keys.prefix().to_owned();
    loop {
        let rows = {
            let scope = scope.clone();
            with_cache(core, move |cache| cache.outbox_peek(&scope, OUTBOX_BATCH)).await?
        };
        let Some(rows) = rows.filter(|r| !r.is_empty()) else {
            return Ok(());
        };
        for (seq, pattern) in rows {
            if let Ok(p) = Pattern::new(&pattern) {
                super::io::remove_matching(core, c, &p).await?;
            }
            let (epoch, prev, id): (String, String, String) = redis::Script::new(PUBLISH_SCRIPT)
                .key(core.keys.inv_log())
                .key(core.keys.inv_epoch())
                .arg(candidate_epoch())
                .arg(core.settings.log_len)
                .arg(&core.instance)
                .arg(&pattern)
                .arg(core.keys.inv_channel())
                .invoke_async(c)
                .await?;
            let prev = parse_id(&prev).unwrap_or((0, 0));
            let id = parse_id(&id).unwrap_or((0, 0));
            let scope = scope.clone();
            with_cache(core, move |cache| {
                cache.outbox_published(&scope, seq, &epoch, prev, id)
            })
            .await?;
            core.count("invalidations_shared", 1);
        }
    }
}

impl RedisTier {
    /// Whether this root has invalidations waiting to be shared.
    pub(crate) fn outbox_pending(&self) -> bool {
        let Some(cache) = self.core.cache() else {
            return false;
        };
        cache
            .outbox_peek(self.core.keys.prefix(), 1)
            .map_or(true, |rows| !rows.is_empty())
    }

    /// Publishes this root's outbox; true when nothing is left pending.
    pub(crate) fn share_pending(&self) -> bool {
        if !self.outbox_pending() {
            return true;
        }
        let deadline = self.core.settings.timeout * 8;
        let flushed = self.block("invalidate", deadline, |core| async move {
            let mut c = core.conn().await?;
            flush_outbox(&core, &mut c).await
        });
        flushed.is_some() && !self.outbox_pending()
    }

    /// Whether local entries are confirmed against the invalidation log.
    pub fn is_confirmed(&self) -> bool {
        self.core.sub.is_caught_up() && self.core.breaker.is_up()
    }

    /// Catches this root up with the invalidation log now (publishing its
    /// outbox first), waiting at most `deadline`; true when it completed.
    /// Done at open; exposed for measurement and tests.
    pub fn catch_up(&self, deadline: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let core = self.core.clone();
        // Not cut off at the deadline: a reconcile goes on in the background
        // (each Redis call has its own deadline) while the caller proceeds
        // with its entries unconfirmed.
        self.handle.spawn(async move {
            let r = async {
                let mut c = core.conn().await?;
                catch_up(&core, &mut c).await
            }
            .await;
            let _ = tx.send(core.settle("catch_up", r).is_some());
        });
        rx.recv_timeout(deadline).unwrap_or(false)
    }
}
