//! Invalidation across instances: pub/sub for speed, the log (see
//! [`super::sync`]) for catch-up.
//!
//! Each instance's subscriber subscribes first, then catches up from its
//! root's persisted position, then applies every live message from other
//! origins and records its id as applied (messages arrive in log order:
//! XADD and PUBLISH run in one script). A message from another epoch means
//! the data set was replaced: the session ends and the next one reconciles.
//! While no session is live (or the breaker is open), the process's local
//! entries are unconfirmed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::RedisResult;

use super::sync::{self, parse_id};
use super::{lock, Core};

/// How often the subscriber pings its connection.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The subscriber's state.
#[derive(Debug, Default)]
pub(crate) struct State {
    connected: AtomicBool,
    /// A catch-up completed and no loss of contact was seen since.
    caught_up: AtomicBool,
    /// The epoch of the data set the last catch-up saw.
    epoch: Mutex<Option<String>>,
}

impl State {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub(crate) fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }
    /// A catch-up against `epoch` completed.
    pub(crate) fn confirm(&self, epoch: String) {
        *lock(&self.epoch) = Some(epoch);
        self.caught_up.store(true, Ordering::Relaxed);
    }
    fn lost(&self) {
        self.connected.store(false, Ordering::Relaxed);
        self.caught_up.store(false, Ordering::Relaxed);
    }
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
        core.sub.lost();
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
    // No overall deadline: a reconcile of a large root takes as long as it
    // takes (each call has its own); the process stays unconfirmed meanwhile.
    sync::catch_up(core, &mut c).await?;
    core.sub.connected.store(true, Ordering::Relaxed);
    core.breaker.success();
    *backoff = Duration::from_millis(50);
    // A heartbeat on the subscription's own connection: a silent partition
    // (no reset ever arrives) ends the session, and with it the confirmed
    // state, within HEARTBEAT + the ping's deadline.
    let (mut sink, mut messages) = ps.split();
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    loop {
        let msg = tokio::select! {
            m = messages.next() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
            _ = beat.tick() => {
                tokio::time::timeout(timeout, sink.ping::<redis::Value>())
                    .await
                    .map_err(|_| super::timed_out())??;
                continue;
            }
        };
        let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
        let mut parts = payload.splitn(4, '\n');
        let (Some(epoch), Some(id), Some(origin), Some(pattern)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(id) = parse_id(id) else { continue };
        if lock(&core.sub.epoch).as_deref() != Some(epoch) {
            tracing::warn!("redis invalidation log has a new epoch; reconciling");
            return Ok(());
        }
        let entry = (id, origin.to_owned(), pattern.to_owned());
        if let Err(e) = sync::apply(core, epoch, id, std::slice::from_ref(&entry)).await {
            // Not applied: do not go on as if it were (the next session
            // replays it from the persisted position).
            tracing::warn!(error = %e, "could not apply a remote invalidation");
            return Err(e);
        }
    }
}
