//! Cross-instance single-flight: before a miss goes upstream, an instance
//! takes the key's lease (`SET P:l:{K} token NX PX lease_ttl`). The winner
//! fetches, writes through and releases; the others poll until the entry is
//! fresh in Redis (then read it through) or the lease is gone, in which case
//! they try to take it. A holder that dies stops renewing, its lease expires
//! after `lease_ttl`, and a waiter takes over.
//!
//! Polling (10 ms doubling to 100 ms) rather than a per-key subscription:
//! waits are rare, short and bounded, and polling needs no extra connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{RedisResult, Script};

use super::{codec, Conn, Core, RedisTier};

/// Deletes the lease only if it still holds our token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Extends the lease only if it still holds our token.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

/// What [`RedisTier::lease`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum LeaseOutcome {
    /// This caller holds the lease: fetch, store (written through), then
    /// drop the guard.
    Won(Lease),
    /// Another instance filled the entry while this one waited: read it.
    Filled,
    /// Redis is unavailable: go ahead without cross-instance coordination.
    Unavailable,
    /// Waited `2 × lease_ttl` without progress: go ahead.
    TimedOut,
}

/// A held lease. Renewed in the background every `lease_ttl / 3`; released
/// when dropped.
#[derive(Debug)]
pub struct Lease {
    key: String,
    token: String,
    core: Arc<Core>,
    handle: tokio::runtime::Handle,
    renew: tokio::task::AbortHandle,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
        let (key, token, core) = (self.key.clone(), self.token.clone(), self.core.clone());
        self.handle.spawn(async move {
            let release = async {
                let mut c = core.conn().await?;
                Script::new(RELEASE)
                    .key(&key)
                    .arg(&token)
                    .invoke_async::<i64>(&mut c)
                    .await
            };
            // Not released: it expires after lease_ttl and a waiter takes over.
            let _ = tokio::time::timeout(core.settings.timeout * 2, release).await;
        });
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// Takes the cross-instance lease of `key`, or waits for whoever holds
    /// it. Blocks the calling thread at most `2 × lease_ttl`.
    pub fn lease(&self, key: &str) -> LeaseOutcome {
        let deadline = self.core.settings.lease_ttl * 2 + self.core.settings.timeout;
        let key = key.to_owned();
        let handle = self.handle.clone();
        self.block("lease", deadline, move |core| acquire(core, handle, key))
            .unwrap_or(LeaseOutcome::Unavailable)
    }

    /// [`RedisTier::lease`] for async callers (never blocks their runtime).
    pub async fn lease_async(&self, key: &str) -> LeaseOutcome {
        let deadline = self.core.settings.lease_ttl * 2 + self.core.settings.timeout;
        let key = key.to_owned();
        let handle = self.handle.clone();
        self.wait("lease", deadline, move |core| acquire(core, handle, key))
            .await
            .unwrap_or(LeaseOutcome::Unavailable)
    }
}

/// Whether Redis holds a fresh entry for `key` (by the cache's clock).
async fn filled(core: &Core, c: &mut Conn, key: &str) -> RedisResult<bool> {
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(core.keys.entry(key))
        .query_async(c)
        .await?;
    let Some(now) = core.cache().map(|c| c.now()) else {
        return Ok(false);
    };
    Ok(raw
        .as_deref()
        .and_then(codec::decode)
        .is_some_and(|(rec, _)| rec.expires_at > now))
}

async fn acquire(
    core: Arc<Core>,
    handle: tokio::runtime::Handle,
    key: String,
) -> RedisResult<LeaseOutcome> {
    let ttl = core.settings.lease_ttl;
    let ttl_ms = ttl.as_millis().max(1) as u64;
    let deadline = Instant::now() + ttl * 2;
    let lease_key = core.keys.lease(&key);
    let token = super::instance_id();
    let mut c = core.conn().await?;
    let mut waited = false;
    loop {
        let won: Option<String> = redis::cmd("SET")
            .arg(&lease_key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut c)
            .await?;
        if won.is_some() {
            // The previous holder may have filled the entry just before
            // releasing; then there is nothing to fetch.
            if filled(&core, &mut c, &key).await? {
                Script::new(RELEASE)
                    .key(&lease_key)
                    .arg(&token)
                    .invoke_async::<i64>(&mut c)
                    .await?;
                return Ok(LeaseOutcome::Filled);
            }
            core.count("leases_won", 1);
            let renew = handle.spawn(renew(core.clone(), lease_key.clone(), token.clone()));
            return Ok(LeaseOutcome::Won(Lease {
                key: lease_key,
                token,
                core,
                handle,
                renew: renew.abort_handle(),
            }));
        }
        if !waited {
            waited = true;
            core.count("leases_waited", 1);
        }
        let mut pause = Duration::from_millis(10);
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if filled(&core, &mut c, &key).await? {
                return Ok(LeaseOutcome::Filled);
            }
            if Instant::now() >= deadline {
                return Ok(LeaseOutcome::TimedOut);
            }
            let pttl: i64 = redis::cmd("PTTL")
                .arg(&lease_key)
                .query_async(&mut c)
                .await?;
            if pttl == -2 {
                break; // released or expired: try to take it
            }
        }
    }
}

/// Keeps a held lease alive until aborted or lost.
async fn renew(core: Arc<Core>, key: String, token: String) {
    let ttl = core.settings.lease_ttl;
    let ttl_ms = ttl.as_millis().max(1) as u64;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let step = async {
            let mut c = core.conn().await?;
            Script::new(RENEW)
                .key(&key)
                .arg(&token)
                .arg(ttl_ms)
                .invoke_async::<i64>(&mut c)
                .await
        };
        match tokio::time::timeout(core.settings.timeout * 2, step).await {
            Ok(Ok(1)) => {}
            Ok(Ok(_)) => return, // lost (expired and taken over)
            _ => {}              // transient: try again next period
        }
    }
}
