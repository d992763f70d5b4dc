//! Invalidation across instances: pub/sub for speed, a log for catch-up.
//!
//! `invalidate(pattern)` appends `{origin, pattern}` to the stream
//! `P:{inv}:log` (capped) and publishes `id\norigin\npattern` on `P:inv`.
//! Each instance's subscriber applies messages from other origins to its
//! local tiers and remembers the last log id it applied. After every
//! (re)connect it first subscribes, then replays the log after that id, so
//! nothing published while it was away is missed. If the log was trimmed
//! past that id, it falls back to a full reconcile: local entries whose key
//! Redis no longer holds are dropped. If the log is gone altogether (Redis
//! restarted empty), there is nothing to replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::{RedisResult, Value};

use super::{lock, Conn, Core};

/// Invalidations kept in the log for instances that reconnect.
const LOG_LEN: usize = 10_000;

/// The subscriber's state.
#[derive(Debug, Default)]
pub(crate) struct State {
    connected: AtomicBool,
    /// Last log id applied (or seen at first connect), as (ms, seq).
    last: Mutex<Option<(u64, u64)>>,
}

impl State {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

fn parse_id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Logs and publishes one invalidation.
pub(crate) async fn publish(core: &Core, c: &mut Conn, pattern: &str) -> RedisResult<()> {
    let id: String = redis::cmd("XADD")
        .arg(core.keys.inv_log())
        .arg("MAXLEN")
        .arg("~")
        .arg(LOG_LEN)
        .arg("*")
        .arg("o")
        .arg(&core.instance)
        .arg("p")
        .arg(pattern)
        .query_async(c)
        .await?;
    let msg = format!("{id}\n{}\n{pattern}", core.instance);
    redis::cmd("PUBLISH")
        .arg(core.keys.inv_channel())
        .arg(msg)
        .query_async::<()>(c)
        .await
}

/// The subscriber task: reconnects with backoff until the cache is dropped.
pub(crate) async fn run(core: Arc<Core>) {
    let mut backoff = Duration::from_millis(50);
    let max = Duration::from_secs(2);
    loop {
        if core.cache().is_none() {
            return;
        }
        match session(&core, &mut backoff).await {
            Ok(()) => tracing::info!("redis invalidation subscription closed; reconnecting"),
            Err(e) => tracing::debug!(error = %e, "redis invalidation subscriber not connected"),
        }
        core.sub.connected.store(false, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

async fn session(core: &Arc<Core>, backoff: &mut Duration) -> RedisResult<()> {
    let timeout = core.settings.timeout * 4;
    let mut ps = tokio::time::timeout(timeout, core.pubsub_client.get_async_pubsub())
        .await
        .map_err(|_| super::timed_out())??;
    tokio::time::timeout(timeout, ps.subscribe(core.keys.inv_channel()))
        .await
        .map_err(|_| super::timed_out())??;
    let mut c = tokio::time::timeout(timeout, core.conn())
        .await
        .map_err(|_| super::timed_out())??;
    tokio::time::timeout(timeout * 4, catch_up(core, &mut c))
        .await
        .map_err(|_| super::timed_out())??;
    core.sub.connected.store(true, Ordering::Relaxed);
    core.breaker.success();
    *backoff = Duration::from_millis(50);
    let mut messages = ps.on_message();
    while let Some(msg) = messages.next().await {
        let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
        let mut parts = payload.splitn(3, '\n');
        let (Some(id), Some(origin), Some(pattern)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(id) = parse_id(id) else { continue };
        // Every live message is applied, even one with a lower id than the
        // last seen: XADD and PUBLISH are separate commands, so two
        // publishers' messages can arrive out of id order, and dropping one
        // would keep its keys alive here. Applying twice is harmless; the
        // id only advances the replay point.
        {
            let mut last = lock(&core.sub.last);
            *last = Some(last.map_or(id, |l| l.max(id)));
        }
        apply(core, origin, pattern).await;
    }
    Ok(())
}

/// Applies one invalidation from another instance to the local tiers.
async fn apply(core: &Arc<Core>, origin: &str, pattern: &str) {
    if origin == core.instance {
        return;
    }
    let Some(cache) = core.cache() else { return };
    let pattern = pattern.to_owned();
    let done = tokio::task::spawn_blocking(move || cache.invalidate_local(&pattern)).await;
    match done {
        Ok(Ok(_)) => core.count("invalidations_received", 1),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not apply a remote invalidation"),
        Err(e) => tracing::warn!(error = %e, "remote invalidation task failed"),
    }
}

/// Replays the log after the last applied id, or reconciles fully when
/// the log no longer reaches back that far.
async fn catch_up(core: &Arc<Core>, c: &mut Conn) -> RedisResult<()> {
    let log = core.keys.inv_log();
    let exists: i64 = redis::cmd("EXISTS").arg(&log).query_async(c).await?;
    let last = *lock(&core.sub.last);
    if exists == 0 {
        // No log: nothing was ever invalidated, or Redis restarted without
        // its data. Either way there is nothing to replay; anything logged
        // from now on is new to this instance.
        if last.is_some_and(|l| l > (0, 0)) {
            tracing::info!("redis invalidation log is gone (restart?); nothing to replay");
        }
        *lock(&core.sub.last) = Some((0, 0));
        return Ok(());
    }
    let info: Vec<Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&log)
        .query_async(c)
        .await?;
    let field = |name: &str| -> Option<&Value> {
        info.chunks(2).find_map(|kv| match kv {
            [Value::BulkString(k), v] if k == name.as_bytes() => Some(v),
            [Value::SimpleString(k), v] if k == name => Some(v),
            _ => None,
        })
    };
    let as_id = |v: Option<&Value>| -> Option<(u64, u64)> {
        match v? {
            Value::BulkString(b) => parse_id(std::str::from_utf8(b).ok()?),
            Value::SimpleString(s) => parse_id(s),
            _ => None,
        }
    };
    let newest = as_id(field("last-generated-id"));
    let Some(since) = last else {
        // First connection of this process: start from the log's end.
        *lock(&core.sub.last) = Some(newest.unwrap_or((0, 0)));
        return Ok(());
    };
    let trimmed = as_id(field("max-deleted-entry-id")).unwrap_or((0, 0));
    if trimmed > since {
        tracing::warn!("redis invalidation log was trimmed while disconnected; reconciling");
        reconcile(core, c).await?;
        *lock(&core.sub.last) = newest;
        return Ok(());
    }
    let start = format!("({}-{}", since.0, since.1);
    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(&log)
        .arg(start)
        .arg("+")
        .query_async(c)
        .await?;
    for (id, fields) in entries {
        let get = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| kv.first().is_some_and(|k| k == name))
                .and_then(|kv| kv.get(1))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let (Some(origin), Some(pattern)) = (get(b"o"), get(b"p")) {
            apply(core, &origin, &pattern).await;
        }
        if let Some(id) = parse_id(&id) {
            let mut l = lock(&core.sub.last);
            *l = Some(l.map_or(id, |x| x.max(id)));
        }
    }
    Ok(())
}

/// Drops local entries Redis no longer holds (they may have been
/// invalidated by an instance whose message this one missed).
async fn reconcile(core: &Arc<Core>, c: &mut Conn) -> RedisResult<()> {
    let Some(cache) = core.cache() else {
        return Ok(());
    };
    let listed = {
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || cache.list(None)).await
    };
    let Ok(Ok(metas)) = listed else { return Ok(()) };
    let mut gone = Vec::new();
    for m in metas {
        let n: i64 = redis::cmd("EXISTS")
            .arg(core.keys.entry(&m.key))
            .query_async(c)
            .await?;
        if n == 0 {
            gone.push(m.key);
        }
    }
    let dropped = gone.len();
    let _ = tokio::task::spawn_blocking(move || {
        for k in gone {
            let _ = cache.invalidate_local(&k);
        }
    })
    .await;
    tracing::info!(dropped, "reconciled local tiers with redis");
    Ok(())
}
