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
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod blob;
mod cache;
pub mod clock;
pub mod config;
pub mod daemon;
mod error;
pub mod evict;
pub mod fetch;
pub mod guard;
mod hot;
pub mod index;
mod key;
pub mod metrics;
pub mod policy;
pub mod redis;
pub mod stats;
pub mod store;
pub mod tier;

pub use blob::Digest;
pub use cache::{Cache, CacheBuilder, Entry, Meta, Put, Stored};
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use config::Config;
pub use error::{Error, Result};
pub use evict::{EvictionReport, GcReport, VerifyReport};
pub use fetch::{FetchOptions, FetchOutcome, Fetcher, FetcherBuilder, Outcome};
pub use guard::{FreshSet, Guard, Signal, StaleReason, StaleSignal};
pub use key::{Key, Pattern, MAX_KEY_BYTES};
pub use policy::Freshness;
pub use redis::{Admission, Lease, LeaseOutcome, RedisTier};
pub use stats::{RedisStats, Stats, Tier};
