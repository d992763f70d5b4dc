//! Names of the persisted counters (`|`-separated labels) and the tiers a
//! hit can come from. Every layer counts through these, so a counter is
//! spelled in one place.

use serde::Serialize;

/// Where a hit was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Tier {
    /// L1, in this process's memory.
    Memory,
    /// The sled hot tier.
    Hot,
    /// The index and blob files.
    Disk,
    /// The shared Redis tier.
    Redis,
}

impl Tier {
    /// Lowercase name, as used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Hot => "hot",
            Tier::Disk => "disk",
            Tier::Redis => "redis",
        }
    }
}

pub fn hit(tier: Tier, class: &str) -> String {
    format!("hits|{}|{class}", tier.as_str())
}
// Misses are `misses|<class>`, built without allocating by
// `disk::stats::Recorder::miss`.
pub fn guard_check(class: &str) -> String {
    format!("guard_checks|{class}")
}
pub fn ttl_violation(class: &str) -> String {
    format!("ttl_violations|{class}")
}
pub fn upstream(outcome: &str) -> String {
    format!("upstream|{outcome}")
}
pub fn avoided(how: &str) -> String {
    format!("avoided|{how}")
}
/// Redis tier counters: misses, backfills, writes, errors, leases_won,
/// leases_waited, invalidations_received.
pub fn redis(what: &str) -> String {
    format!("redis|{what}")
}
pub const EVICTED_BYTES: &str = "evicted_bytes";
pub const EVICTED_ENTRIES: &str = "evicted_entries";
pub const BYTES_SAVED_304: &str = "bytes_saved_304";
/// Blobs that failed verification (quarantined).
pub const CORRUPT_BLOBS: &str = "corrupt_blobs";
/// Refused staleness-guard calls.
pub const GUARD_REFUSALS: &str = "guard_refusals";
