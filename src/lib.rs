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
//!
//! ## Features
//! `default = ["cli", "daemon", "fetch", "redis", "sled"]`. The core cache
//! needs none of them: `cli` is the binary's (clap, indicatif, anyhow,
//! tracing-subscriber), `daemon` the scheduler and endpoints (axum, notify,
//! croner; implies `fetch`), `fetch` the HTTP fetcher and feeds (reqwest,
//! feed-rs), `redis` the shared tier, `sled` the persistent hot tier.
// `unsafe` is denied everywhere but src/disk/seq.rs (a shared-memory
// counter) and one `unsafe impl Send` for the pooled reader in
// src/disk/index/mod.rs (a connection moved with its own statements); see
// the SAFETY arguments there.
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]
#![warn(missing_docs)]
// Items of the core only the optional layers call are dead without them.
#![cfg_attr(
    not(all(feature = "fetch", feature = "redis", feature = "daemon")),
    allow(dead_code, unused_imports)
)]

mod base;
mod cache;
#[cfg(feature = "daemon")]
pub mod daemon;
mod disk;
#[cfg(feature = "fetch")]
pub mod fetch;
mod maint;
mod open;
#[cfg(feature = "redis")]
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
#[cfg(feature = "fetch")]
pub use fetch::{FetchOptions, FetchOutcome, Fetcher, FetcherBuilder, Outcome};
pub use maint::{EvictionReport, GcReport, Problem, Progress, RecoverReport, VerifyReport};
#[cfg(feature = "redis")]
pub use redis::{Lease, LeaseOutcome, RedisTier};
