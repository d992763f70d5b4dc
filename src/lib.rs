//! # freshcache
//!
//! A disk-backed, content-addressed object cache with a metadata index, for
//! pipelines that live on time-sensitive signals: LLM feature vectors, news
//! articles, sports odds. Payloads are blake3-named zstd blobs (small ones
//! inline in SQLite, large ones as files), keys are hierarchical
//! (`odds:<game>:<ts>`), every entry has a TTL class, and a staleness guard
//! refuses expired signals at inference time.
//!
//! ## Quick start
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use freshcache::{Cache, Put};
//!
//! let cache = Cache::open(dir.path())?;
//! cache.put("llm:features:c42:2026-11-21", &[0u8; 1536], Put::default())?;
//! cache.put_json("odds:g123:1700000000", &serde_json::json!({"home": -110}), Put::default())?;
//!
//! let odds: Option<serde_json::Value> = cache.get_json("odds:g123:1700000000")?;
//! assert_eq!(odds.unwrap()["home"], -110);
//!
//! // All-or-nothing: every signal fresh, or an error naming each stale one.
//! let set = cache.guard().require(&["llm:features:c42:2026-11-21", "odds:g123:*"])?;
//! assert_eq!(set.signals.len(), 2);
//! assert_eq!(cache.invalidate("odds:*")?, 1);
//! # Ok::<(), freshcache::Error>(())
//! ```
// `unsafe` is denied everywhere but src/disk/seq.rs (a shared-memory
// counter; see the SAFETY argument there).
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]
#![warn(missing_docs)]

mod base;
mod cache;
pub mod daemon;
mod disk;
pub mod fetch;
mod maint;
mod open;
pub mod redis;

pub use base::clock::{Clock, ManualClock, Millis, SystemClock};
pub use base::config::Config;
pub use base::error::{Error, Result};
pub use base::key::{Key, Pattern, MAX_KEY_BYTES};
pub use base::policy::Freshness;
pub use base::{clock, config};
pub use cache::guard::{summarize, FreshSet, Guard, Signal, StaleReason, StaleSignal};
pub use cache::metrics::Exposition;
pub use cache::plug::Admission;
pub use cache::{Cache, CacheBuilder, Entry, Meta, Put, Stored};
pub use disk::blob::Digest;
pub use disk::stats::{
    Measured, QuotaStats, RedisStats, RefreshAheadStats, Stats, Tier, TtlEvidence,
};
pub use fetch::{FetchOptions, FetchOutcome, Fetcher, FetcherBuilder, Outcome};
pub use maint::{EvictionReport, GcReport, Problem, Progress, RecoverReport, VerifyReport};
pub use redis::{Lease, LeaseOutcome, RedisTier};
