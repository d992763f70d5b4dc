//! What a cache consults beyond its own root, given at build time: a
//! [`SharedTier`] (read-through, write-through and invalidation across
//! instances) and a [`Coordinator`] (a cross-instance lease before an
//! upstream call, a global quota and rate slot). The cache and the fetcher
//! name only these traits; `crate::redis` implements both, and
//! `crate::open` wires them from the config.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::base::clock::Millis;
use crate::base::config::Rate;
use crate::base::digest::Digest;
use crate::base::error::Result;
use crate::base::key::Key;
use crate::disk::store::PutItem;

/// A boxed future, for the async methods of the plug traits.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An entry read from the shared tier: verified against `hash`, with the
/// metadata the instance that stored it gave it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub hash: Digest,
    pub value: Vec<u8>,
    pub class: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub headers: Option<String>,
    /// The root's position in the shared invalidation log when the read
    /// began (see [`SharedTier::still_valid`]).
    pub seen: Option<(String, crate::disk::index::LogId)>,
}

/// A tier several instances share, consulted after the local disk.
///
/// Failure model: no method returns an error. An unreachable tier reads as
/// "nothing usable", writes stay local, and [`SharedTier::invalidate`]
/// reports that it could not share.
pub(crate) trait SharedTier: Send + Sync + fmt::Debug {
    /// Called once, when the cache is built: keep the (weak) handle and
    /// start background work (the invalidation subscriber).
    fn attach(&self, cache: super::WeakCache);
    /// A fresh entry for `key` (or, with `allow_stale`, a stale one) after
    /// a local miss. `None`: nothing usable, or the tier is unavailable.
    fn read(&self, key: &Key, now: Millis, allow_stale: bool) -> Option<Remote>;
    /// Called after `remote` was backfilled locally: false when any process
    /// on this root applied an invalidation since the read began and the
    /// tier no longer holds that same put (the backfill raced with it; the
    /// caller drops it again and misses).
    fn still_valid(&self, key: &Key, remote: &Remote) -> bool;
    /// Entries just committed locally, to write through.
    fn write_through(&self, now: Millis, items: &[PutItem<'_>]);
    /// The log this root's sync position and outbox rows belong to.
    fn scope(&self) -> &str;
    /// Publishes this root's outbox (invalidations already applied locally,
    /// queued in the same transaction), in order: removes the matches from
    /// the tier and tells the other instances. False when some are still
    /// pending (the tier is unreachable).
    fn share_pending(&self) -> bool;
    /// Whether the tier is reachable now.
    fn is_up(&self) -> bool;
    /// Whether this process's local entries are confirmed against the
    /// shared invalidation log (caught up and still listening). While not,
    /// `redis.consistency` decides whether they are served.
    fn confirmed(&self) -> bool;
    /// The implementation, for its own extra API (`Cache::redis`).
    fn as_any(&self) -> &dyn Any;
}

/// How a caller about to go upstream for a key should proceed.
pub(crate) enum Claim {
    /// Go upstream holding this guard (drop it after storing the result).
    Won(Box<dyn Send + Sync>),
    /// Another instance just filled the entry: read it, no upstream call.
    Filled,
    /// No coordination possible (unavailable, or the wait timed out): go alone.
    Alone,
}

/// How an upstream request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Counted by the shared backend: `used` requests in this quota window
    /// so far; the caller has already waited `waited` for its rate slot.
    Global {
        /// Requests counted in this window, this one included.
        used: u64,
        /// Time spent waiting for the rate slot.
        waited: Duration,
    },
    /// The shared backend is unavailable: the caller applies its local limits.
    Local,
    /// Admitted by the local backend (this process's rate limit, the
    /// root's quota): `used` requests in this root's window so far.
    Counted {
        /// Requests counted in this window, this one included.
        used: u64,
        /// Time spent waiting for the rate slot.
        waited: Duration,
    },
}

/// Coordination of upstream calls across instances.
pub(crate) trait Coordinator: Send + Sync + fmt::Debug {
    /// Takes `key`'s cross-instance lease, or waits for whoever holds it.
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Claim>;
    /// Admits one request to `host` against the quota and waits for its
    /// rate slot (`rate` per host). A shared backend that cannot be reached
    /// answers [`Admission::Local`]: the caller then asks the local one.
    ///
    /// # Errors
    /// [`crate::Error::QuotaExceeded`] when the window's quota is used up.
    fn admit<'a>(
        &'a self,
        host: &'a str,
        quota: Rate,
        rate: Rate,
    ) -> BoxFuture<'a, Result<Admission>>;
    /// Requests the instances together made in `quota`'s window that holds
    /// `now`, as the shared backend counts them; `None` when it cannot be
    /// asked (the caller then shows its local count only).
    fn quota_used(&self, quota: Rate, now: Millis) -> Option<u64>;
}
