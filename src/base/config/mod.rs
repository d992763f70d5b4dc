//! `config/runtime.yml`: the seeds' shape plus feeds. Loading is layered:
//! the embedded default, then the file, then `FRESHCACHE_*` environment
//! variables, then validation. Every error names the field and the source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod calendar;
mod class_ttl;
mod sections;
mod units;
mod validate;

pub use calendar::{period_bounds, Instant, Period, TzOffset};
pub(crate) use sections::redact_url;
use sections::secret_field;
pub use sections::{Consistency, DaemonConfig, RedisConfig, RefreshAheadConfig, WarmItem};
pub use units::{Dur, Rate, Size};

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use crate::base::error::{Error, Result};

/// The configuration compiled into the binary (`config/runtime.yml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/runtime.yml");

/// The whole runtime configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where and how blobs are stored.
    pub cache: CacheConfig,
    /// TTL classes by name (longest prefix wins).
    pub classes: BTreeMap<String, ClassConfig>,
    /// The eviction and gc schedule.
    pub cleanup: CleanupConfig,
    /// Alert thresholds.
    pub monitoring: MonitoringConfig,
    /// Upstream politeness of the fetcher.
    pub fetch: FetchConfig,
    #[serde(default)]
    /// News feeds to revalidate.
    pub feeds: Vec<FeedConfig>,
    /// `freshcache run` settings.
    pub daemon: DaemonConfig,
    /// The shared Redis tier; `url: null` (the default) means none.
    #[serde(default)]
    pub redis: RedisConfig,
}

/// `cache:` — where and how blobs are stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cache root directory.
    pub root: PathBuf,
    /// Eviction cap: bytes charged against it (blobs plus index cost).
    pub max_size: Size,
    /// Eviction starts above this fraction of `max_size`.
    pub high_watermark: f64,
    /// Eviction stops at this fraction of `max_size`.
    pub low_watermark: f64,
    /// Admission control: a put that would pass this is refused or evicts first.
    pub hard_limit: Option<Size>,
    /// What a put does at `hard_limit`.
    pub on_full: OnFull,
    /// zstd compression level (blobs under a `zstd` codec, and what LZ4
    /// cannot shrink).
    pub zstd_level: i32,
    /// How blobs stored inline in the index are compressed.
    pub inline_codec: BlobCodec,
    /// How blobs stored as files are compressed.
    pub file_codec: BlobCodec,
    /// Encoded blobs up to this size live inline in the index; larger ones in files.
    pub inline_max: Size,
    /// Largest value a put accepts.
    pub max_value_size: Size,
    /// Budget of the in-memory L1.
    pub memory_size: Size,
    /// TTL of keys no class prefix matches.
    pub default_ttl: Dur,
    /// Batch window of access records and counters.
    pub access_flush: Dur,
    /// A read moves an entry's LRU position only when its recorded last
    /// access is at least this old (or `access_flush`, if longer).
    pub lru_precision: Dur,
    /// fsync blob files and use `synchronous = FULL`.
    pub fsync: bool,
    /// Enable the persistent sled hot tier.
    pub hot_tier: bool,
    /// Budget of the sled hot tier.
    pub hot_tier_size: Size,
}

/// The codec of inline blobs (`inline_codec`: values whose encoding fits in
/// `inline_max`) or of file blobs (`file_codec`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlobCodec {
    /// LZ4 blocks: decode 3-7x faster than zstd, ~1.8x larger on JSON;
    /// data LZ4 cannot shrink by 1/8 is offered to zstd.
    Lz4,
    /// zstd frames at `zstd_level`.
    Zstd,
}

/// What a put does when it would pass `hard_limit`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// Run an eviction pass first.
    Evict,
    /// Refuse the put with [`Error::Full`].
    Reject,
}

/// One TTL class (the seeds' CacheDataType). `ttl` is a duration, or
/// `{ adaptive: { min: 30s, max: 10m } }` (optionally with `base: 1m`, the
/// TTL until a URL has evidence; `min` without it): the fetcher then sets
/// each URL's TTL from its observed change interval, clamped to the bounds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "class_ttl::RawClass", into = "class_ttl::RawClass")]
pub struct ClassConfig {
    /// Keys starting with this belong to the class.
    pub prefix: String,
    /// Time to live of the class's entries.
    pub ttl: Dur,
    /// Per-URL TTLs from observed change intervals (opt-in).
    pub adaptive: Option<Adaptive>,
    /// Dated periods (free agency, a trade deadline) during which an entry
    /// of this class is fresh for at most the window's TTL from when it
    /// was stored, whenever that was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<TtlWindow>,
}

/// `ttl: { adaptive: { min, max } }` of a class.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Adaptive {
    /// Shortest TTL the estimator may set.
    pub min: Dur,
    /// Longest TTL the estimator may set.
    pub max: Dur,
}

/// One TTL window of a class: `{ from: 2026-03-11, to: 2026-03-20, ttl: 1h }`.
/// `from` and `to` are UTC dates or RFC 3339 instants; a date as `to`
/// includes that whole day (the window closes at the next midnight UTC).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TtlWindow {
    /// When the window opens (a UTC date means its midnight).
    pub from: Instant,
    /// When it closes (a UTC date includes that whole day).
    pub to: Instant,
    /// The TTL cap while the window is open.
    pub ttl: Dur,
}

/// `cleanup:` — the eviction schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CleanupConfig {
    /// Eviction and gc schedule (5-field cron, UTC).
    pub interval: String,
    /// Orphan files younger than this are kept.
    pub gc_grace: Dur,
}

/// `monitoring:` — alert thresholds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Alert when the TTL violation rate passes this.
    pub ttl_violation_threshold: f64,
    /// Alert when the hit ratio falls below this.
    pub cache_hit_ratio_threshold: f64,
}

/// `fetch:` — upstream politeness.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Requests per host and period.
    pub rate_limit: Rate,
    /// Requests per quota window (persisted).
    pub quota: Rate,
    /// The time zone of calendar quotas (`UTC` or a fixed offset `-05:00`).
    #[serde(default)]
    pub quota_tz: TzOffset,
    /// Deadline of one request.
    pub timeout: Dur,
    /// Deadline of one connect.
    pub connect_timeout: Dur,
    /// Retries of a transient failure.
    pub retries: u32,
    /// Redirects followed per fetch.
    pub max_redirects: u32,
    /// Whether the server's `max-age` may lengthen the class TTL.
    pub server_ttl: ServerTtl,
}

/// Whether a server's `max-age` may lengthen the class TTL.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServerTtl {
    /// The shorter of the class TTL and the server's freshness wins.
    Shorter,
    /// The server's freshness wins when it speaks.
    Server,
}

/// One news feed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The feed's name: articles are stored as `news:<name>:<id>`.
    pub name: String,
    /// The feed's URL.
    pub url: String,
    /// How often it is revalidated.
    pub every: Dur,
    #[serde(default)]
    /// Class of the stored entries (default: by prefix).
    pub class: Option<String>,
    /// A body larger than this is refused (default and ceiling:
    /// `cache.max_value_size`), and the feed backed off.
    #[serde(default)]
    pub max_size: Option<Size>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_layers(None, std::iter::empty()).expect("embedded default config is valid")
    }
}

impl Config {
    /// Loads `path` over the embedded default, then applies `FRESHCACHE_*`
    /// variables from the process environment.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file and field (also for an empty file,
    /// which is refused rather than read as "all defaults"); [`Error::Io`] if
    /// the file cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // A truncating save (or a file of comments only) would otherwise mean
        // "all defaults": every feed and class override silently dropped.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Err(Error::Config {
                source_name: path.display().to_string(),
                field: "(file)".into(),
                reason: "the file is empty (no YAML document); refusing it rather than \
                         running on all defaults"
                    .into(),
            });
        }
        Config::from_layers(Some((path.display().to_string(), &text)), std::env::vars())
    }

    /// The embedded default plus the process environment.
    ///
    /// # Errors
    /// [`Error::Config`] if an environment override is invalid.
    pub fn from_env() -> Result<Config> {
        Config::from_layers(None, std::env::vars())
    }

    /// Parses a YAML document (named `source_name` in errors) over the
    /// embedded default, then the given environment overrides.
    ///
    /// # Errors
    /// [`Error::Config`] naming the source and field.
    pub fn from_layers(
        file: Option<(String, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut tree: Value = serde_norway::from_str(EMBEDDED_DEFAULT).expect("embedded yaml");
        let source_name = file
            .as_ref()
            .map_or("<embedded default>".to_string(), |f| f.0.clone());
        if let Some((name, text)) = file {
            let layer: Value = serde_norway::from_str(text).map_err(|e| Error::Config {
                source_name: name.clone(),
                field: e
                    .location()
                    .map_or("?".into(), |l| format!("line {}", l.line())),
                reason: e.to_string(),
            })?;
            if !layer.is_null() {
                merge(&mut tree, layer);
            }
        }
        let mut env_names = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("FRESHCACHE_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let parsed: Value = if secret_field(&lower) {
                Value::String(value)
            } else {
                serde_norway::from_str(&value).unwrap_or(Value::String(value))
            };
            if set_path(&mut tree, &lower, parsed) {
                env_names.push(name);
            }
        }
        let source_name = if env_names.is_empty() {
            source_name
        } else {
            format!("{source_name} (with {})", env_names.join(", "))
        };
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let field = e.path().to_string();
            let reason = if secret_field(&field) {
                "invalid value (not shown: it may hold a secret); expected a string".into()
            } else {
                e.inner().to_string()
            };
            Error::Config {
                source_name: source_name.clone(),
                field,
                reason,
            }
        })?;
        let mut config = config;
        config.fetch.quota.tz = config.fetch.quota_tz;
        config.validate().map_err(|(field, reason)| Error::Config {
            source_name,
            field,
            reason,
        })?;
        Ok(config)
    }
}

/// Deep-merges `layer` into `base`: mappings merge key by key, anything else replaces.
fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Mapping(b), Value::Mapping(l)) => {
            for (k, v) in l {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Sets the field named by an underscore path such as `cache_max_size` or
/// `classes_llm_features_ttl`, matching the longest existing field name at
/// each level (field names contain underscores too).
fn set_path(node: &mut Value, path: &str, value: Value) -> bool {
    let Value::Mapping(map) = node else {
        return false;
    };
    let mut names: Vec<String> = map
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        if path == name {
            map.insert(Value::String(name), value);
            return true;
        }
        if let Some(rest) = path
            .strip_prefix(name.as_str())
            .and_then(|r| r.strip_prefix('_'))
        {
            let child = map.get_mut(name.as_str()).expect("name came from map");
            if child.is_null() {
                *child = Value::Mapping(Default::default());
            }
            if set_path(child, rest, value.clone()) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests;
