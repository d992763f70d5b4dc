//! The shared Redis tier: L1 → local disk → **Redis** → upstream.
//!
//! The cache core is synchronous; the `redis` client is async. The tier owns
//! a small tokio runtime (two worker threads) and bridges to it: a call is
//! spawned on that runtime and the caller waits on a std channel with a
//! deadline. Nothing ever calls `block_on`, so callers may themselves run
//! inside a tokio runtime (the fetcher does); async callers await a oneshot
//! instead of blocking.
//!
//! Failure model: every call has a deadline (`redis.timeout`); failures feed
//! a circuit breaker (`breaker`) that, once open, makes the tier a no-op
//! (an atomic load per call) until a backoff passes and one probe succeeds.
//! The pub/sub subscriber closes the breaker as soon as it reconnects, so the
//! tier comes back by itself. A Redis error is never an error to the caller:
//! reads fall back to a miss, writes stay local.

mod breaker;
pub(crate) mod codec;
mod io;
mod lease;
mod limit;
mod sub;
mod sync;

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};

use crate::base::clock::Millis;
use crate::base::config::{Config, Rate};
use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::names;
use crate::cache::plug::{Admission, BoxFuture, Claim, Coordinator, Remote, SharedTier};
use crate::cache::{Cache, WeakCache};
use crate::disk::store::PutItem;
use breaker::Breaker;
use codec::Keys;

pub use lease::{Lease, LeaseOutcome};

/// Extra wait on the std channel beyond the call's own deadline.
const SLACK: Duration = Duration::from_millis(50);

/// Settings copied from the config at open.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub inline_max: u64,
    pub max_blob_size: u64,
    pub timeout: Duration,
    pub grace_ms: i64,
    pub lease_ttl: Duration,
    pub zstd_level: i32,
    pub quota: Rate,
    pub rate_limit: Rate,
    pub log_len: u64,
}

/// How the tier reaches Redis.
enum Source {
    /// One server; the manager reconnects by itself.
    Single(ConnectionManager),
    /// A cluster; connected lazily, reconnected on demand.
    Cluster(Box<(ClusterClient, tokio::sync::Mutex<Option<ClusterConnection>>)>),
}

/// A cheap clone of a connection, usable with `query_async`.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// State shared by the facade and the tier's background tasks. It holds no
/// runtime, so tasks holding it never keep the runtime alive.
pub(crate) struct Core {
    pub(crate) keys: Keys,
    pub(crate) settings: Settings,
    source: Source,
    /// A plain client to the first seed node, for pub/sub (cluster pub/sub
    /// is broadcast, so one node hears every message).
    pub(crate) pubsub_client: Client,
    pub(crate) breaker: Breaker,
    /// Tags this process's invalidations so it skips its own messages.
    pub(crate) instance: String,
    /// The cache this tier belongs to (weak: the cache owns the tier).
    cache: OnceLock<WeakCache>,
    pub(crate) sub: sub::State,
    /// One catch-up at a time in this process (open and subscriber).
    sync_lock: tokio::sync::Mutex<()>,
    /// One outbox flush at a time in this process.
    flush_lock: tokio::sync::Mutex<()>,
}

impl Core {
    /// A connection (connecting a cluster on first use).
    pub(crate) async fn conn(&self) -> RedisResult<Conn> {
        match &self.source {
            Source::Single(m) => Ok(Conn::Single(m.clone())),
            Source::Cluster(cluster) => {
                let (client, slot) = &**cluster;
                let mut guard = slot.lock().await;
                if let Some(c) = guard.as_ref() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let c = client.get_async_connection().await?;
                *guard = Some(c.clone());
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// The owning cache, while it is alive.
    pub(crate) fn cache(&self) -> Option<Cache> {
        self.cache.get()?.upgrade()
    }

    /// Bumps a persisted `redis|<what>` counter of the owning cache.
    pub(crate) fn count(&self, what: &str, delta: i64) {
        if let Some(c) = self.cache() {
            c.count(names::redis(what), delta);
        }
    }

    /// Turns a call's result into an option, feeding the breaker.
    pub(crate) fn settle<T>(&self, what: &'static str, r: RedisResult<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.breaker.success();
                Some(v)
            }
            Err(e) => {
                tracing::debug!(op = what, error = %e, "redis call failed");
                self.breaker.failure(what, &e.to_string());
                self.count("errors", 1);
                None
            }
        }
    }
}

pub(crate) fn timed_out() -> RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "redis call timed out").into()
}

/// The shared Redis tier of a [`Cache`] (see the module docs). Obtained with
/// [`Cache::redis`]; all methods degrade to "unavailable" rather than fail
/// when Redis is down.
pub struct RedisTier {
    /// Taken on drop and shut down in the background (never blocking, so a
    /// cache may be dropped inside an async context).
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.core.keys)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn config_error(field: &str, reason: String) -> Error {
    Error::Config {
        source_name: "redis".into(),
        field: format!("redis.{field}"),
        reason,
    }
}

impl RedisTier {
    /// Builds the tier a config describes (`None` without `redis.url`).
    /// Never connects here: an unreachable Redis only means a degraded tier.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL the client cannot parse, [`Error::Io`] if
    /// the runtime cannot start.
    pub(crate) fn from_config(config: &Config) -> Result<Option<RedisTier>> {
        let r = &config.redis;
        let Some(url) = r.url.as_deref() else {
            return Ok(None);
        };
        let mut infos = Vec::new();
        for u in url.split(',').map(str::trim) {
            let info = u.into_connection_info().map_err(|e| {
                config_error(
                    "url",
                    format!("`{}`: {e}", crate::base::config::redact_url(u)),
                )
            })?;
            let info = match &r.password {
                Some(p) => {
                    let settings = info.redis_settings().clone().set_password(p);
                    info.set_redis_settings(settings)
                }
                None => info,
            };
            infos.push(info);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("freshcache-redis")
            .enable_all()
            .build()
            .map_err(|e| Error::io("<redis runtime>", e))?;
        let handle = rt.handle().clone();
        let timeout = r.timeout.0;
        let tls = match &r.tls_ca_file {
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    config_error("tls_ca_file", format!("{}: {e}", path.display()))
                })?),
            }),
            None => None,
        };
        let pubsub_client = match &tls {
            Some(certs) => Client::build_with_tls(infos[0].clone(), certs.clone()),
            None => Client::open(infos[0].clone()),
        }
        .map_err(|e| config_error("url", e.to_string()))?;
        let source = if r.cluster {
            let mut builder = ClusterClient::builder(infos);
            if let Some(certs) = tls {
                builder = builder.certs(certs);
            }
            let client = builder
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()
                .map_err(|e| config_error("url", e.to_string()))?;
            Source::Cluster(Box::new((client, tokio::sync::Mutex::new(None))))
        } else {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(r.max_backoff.0);
            // The manager locates its runtime from the current context.
            let _enter = handle.enter();
            let m = ConnectionManager::new_lazy_with_config(pubsub_client.clone(), cfg)
                .map_err(|e| config_error("url", e.to_string()))?;
            Source::Single(m)
        };
        let c = &config.cache;
        let settings = Settings {
            inline_max: r.inline_max.0,
            max_blob_size: r.max_blob_size.0,
            timeout,
            grace_ms: r.grace.0.as_millis() as i64,
            lease_ttl: r.lease_ttl.0,
            zstd_level: c.zstd_level,
            quota: config.fetch.quota,
            rate_limit: config.fetch.rate_limit,
            log_len: r.log_len,
        };
        let core = Core {
            keys: Keys::new(&r.key_prefix),
            settings,
            source,
            pubsub_client,
            breaker: Breaker::new(r.max_backoff.0),
            instance: instance_id(),
            cache: OnceLock::new(),
            sub: sub::State::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            flush_lock: tokio::sync::Mutex::new(()),
        };
        Ok(Some(RedisTier {
            rt: Some(rt),
            handle,
            core: Arc::new(core),
        }))
    }

    /// Whether Redis is reachable (the circuit breaker is closed).
    pub fn is_up(&self) -> bool {
        self.core.breaker.is_up()
    }

    /// Whether this process's invalidation subscriber is connected.
    pub fn is_subscribed(&self) -> bool {
        self.core.sub.is_connected()
    }

    /// Runs `f` on the tier's runtime and blocks this thread until it
    /// finishes or `deadline` passes. `None` when the breaker is open, on
    /// error, or on timeout (the last two feed the breaker).
    pub(crate) fn block<T, F, Fut>(&self, what: &'static str, deadline: Duration, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Core>) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn_settled(what, deadline, f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv_timeout(deadline + SLACK).ok().flatten()
    }

    /// Like [`RedisTier::block`] for async callers: awaits a oneshot, so it
    /// works from any runtime without blocking its threads.
    pub(crate) async fn wait<T, F, Fut>(
        &self,
        what: &'static str,
        deadline: Duration,
        f: F,
    ) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Core>) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn_settled(what, deadline, f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.ok().flatten()
    }

    /// Spawns `f` with a deadline on the tier's runtime and settles the
    /// breaker inside the task, so a caller that gives up or is cancelled
    /// never leaves a half-open probe held. `None` if the breaker is open.
    fn spawn_settled<T, F, Fut>(
        &self,
        what: &'static str,
        deadline: Duration,
        f: F,
        deliver: impl FnOnce(Option<T>) + Send + 'static,
    ) -> Option<()>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Core>) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        if !self.core.breaker.allow() {
            return None;
        }
        let core = self.core.clone();
        let fut = f(self.core.clone());
        self.handle.spawn(async move {
            let r = tokio::time::timeout(deadline, fut)
                .await
                .unwrap_or_else(|_| Err(timed_out()));
            deliver(core.settle(what, r));
        });
        Some(())
    }
}

/// A process-unique tag: blake3 of pid, time and an address.
pub(crate) fn instance_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = format!("{}:{nanos}:{n}:{:p}", std::process::id(), &N);
    crate::disk::blob::Digest::of(seed.as_bytes()).to_hex()[..16].to_string()
}

/// Keeps `Mutex` poisoning from ever panicking a caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedTier for RedisTier {
    fn attach(&self, cache: WeakCache) {
        let _ = self.core.cache.set(cache);
        // Before any local entry is served: one round trip when nothing
        // was missed. Unreachable → unconfirmed until the subscriber
        // catches up.
        if !self.catch_up(self.core.settings.timeout * 4) {
            tracing::warn!("could not catch up with the redis invalidation log at open; local entries unconfirmed until it can");
        }
        self.handle.spawn(sub::run(self.core.clone()));
    }
    fn read(&self, key: &Key, now: Millis, allow_stale: bool) -> Option<Remote> {
        self.read_through(key, now, allow_stale)
    }
    fn still_valid(&self, key: &Key, remote: &Remote) -> bool {
        RedisTier::still_valid(self, key, remote)
    }
    fn write_through(&self, now: Millis, items: &[PutItem<'_>]) {
        RedisTier::write_through(self, now, items);
    }
    fn scope(&self) -> &str {
        self.core.keys.prefix()
    }
    fn share_pending(&self) -> bool {
        RedisTier::share_pending(self)
    }
    fn is_up(&self) -> bool {
        RedisTier::is_up(self)
    }
    fn confirmed(&self) -> bool {
        self.is_confirmed()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Coordinator for RedisTier {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Claim> {
        Box::pin(async move {
            match self.lease_async(key).await {
                LeaseOutcome::Won(l) => Claim::Won(Box::new(l)),
                LeaseOutcome::Filled => Claim::Filled,
                LeaseOutcome::Unavailable | LeaseOutcome::TimedOut => Claim::Alone,
            }
        })
    }
    fn admit<'a>(
        &'a self,
        host: &'a str,
        quota: Rate,
        rate: Rate,
    ) -> BoxFuture<'a, Result<Admission>> {
        Box::pin(self.admit_with(host, quota, rate.interval()))
    }
    fn quota_used(&self, quota: Rate, now: Millis) -> Option<u64> {
        self.global_quota_used(quota, now)
    }
}

impl Cache {
    /// The shared Redis tier, if one is configured.
    pub fn redis(&self) -> Option<&RedisTier> {
        self.shared_tier()?.as_any().downcast_ref()
    }
}

#[cfg(test)]
mod tests;
