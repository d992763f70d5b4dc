//! The figures `Stats` is made of: per class, the Redis tier, measured
//! TTLs, refresh-ahead and the quota.

use super::*;

/// Per-class figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct ClassStats {
    /// Hits by tier.
    pub hits: BTreeMap<String, u64>,
    pub misses: u64,
    pub hit_rate: f64,
    pub guard_checks: u64,
    pub ttl_violations: u64,
    /// ttl_violations / guard_checks (0 when no checks).
    pub ttl_violation_rate: f64,
}

/// The shared Redis tier's figures (all zero without one).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct RedisStats {
    /// A Redis tier is configured.
    pub configured: bool,
    /// Its circuit breaker is closed (live state of this process).
    pub up: bool,
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Entries copied from Redis into the local tiers.
    pub backfills: u64,
    /// Entries written through to Redis.
    pub writes: u64,
    /// Failed or timed-out Redis calls.
    pub errors: u64,
    /// Cross-instance fetch leases this root's processes won / waited on.
    pub leases_won: u64,
    /// Upstream calls that waited on another instance's lease.
    pub leases_waited: u64,
    /// Invalidations from other instances applied to the local tiers.
    pub invalidations_received: u64,
    /// Local entries are confirmed against the shared invalidation log
    /// (live state of this process).
    pub confirmed: bool,
    /// Reads that served (or guard checks that accepted) an unconfirmed
    /// local entry under `redis.consistency: available`.
    pub unconfirmed_reads: u64,
    /// Invalidations made while the tier was unreachable (queued).
    pub invalidations_not_shared: u64,
    /// Invalidations in this root's outbox, not yet shared (a gauge).
    pub pending_unshared: u64,
    /// Full reconciles with the shared tier (log trimmed, data set replaced,
    /// or a root never synced).
    pub reconciles: u64,
}

/// What revalidations of one class or feed found (measured TTLs).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TtlEvidence {
    /// Revalidations that compared stored and upstream content.
    pub revalidations: u64,
    /// ... that found it unchanged (304, or a 200 with the same hash).
    pub unchanged: u64,
    /// Revalidations that found new content.
    pub changed: u64,
    /// unchanged / revalidations (0 without revalidations).
    pub unchanged_ratio: f64,
    /// Observed intervals between two changes of one URL.
    pub intervals: u64,
    /// Their mean (ms); `None` before the second change of any URL.
    pub mean_change_interval_ms: Option<u64>,
    /// Half the mean change interval (the estimator in ARCHITECTURE.md),
    /// `None` without evidence.
    pub suggested_ttl_ms: Option<u64>,
    #[serde(skip)]
    pub(super) interval_sum_ms: u64,
}

/// Measured TTL evidence per class and per feed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct Measured {
    /// By class.
    pub classes: BTreeMap<String, TtlEvidence>,
    /// By feed.
    pub feeds: BTreeMap<String, TtlEvidence>,
}

/// What the daemon's refresh-ahead did (persisted counters `refresh_ahead|…`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshAheadStats {
    /// Hot entries revalidated before they expired.
    pub refreshed: u64,
    /// Refreshes ahead that failed (the entry expires as it would have).
    pub failed: u64,
    /// Refreshed entries read after their old expiry: each would have
    /// been a miss (and a synchronous upstream call) without the refresh.
    pub misses_avoided: u64,
}

/// The request quota of the current window (`fetch.quota`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaStats {
    /// Requests made in this window.
    pub used: u64,
    /// The quota.
    pub limit: u64,
    /// Requests left in this window.
    pub left: u64,
    /// `hour`, `day`, `month` (calendar periods) or a fixed period.
    pub period: String,
    /// Start of the current window (RFC 3339).
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    pub window_start: Millis,
    /// When the count resets (RFC 3339): the start of the next period.
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    pub resets_at: Millis,
}
