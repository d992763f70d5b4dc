//! `config/runtime.yml`: the seeds' shape plus feeds. Loading is layered:
//! the embedded default, then the file, then `FRESHCACHE_*` environment
//! variables, then validation. Every error names the field and the source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml::Value;

use crate::base::error::{Error, Result};

/// The configuration compiled into the binary (`config/runtime.yml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/runtime.yml");

/// The whole runtime configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cache: CacheConfig,
    pub classes: BTreeMap<String, ClassConfig>,
    pub cleanup: CleanupConfig,
    pub monitoring: MonitoringConfig,
    pub fetch: FetchConfig,
    #[serde(default)]
    pub feeds: Vec<FeedConfig>,
    pub daemon: DaemonConfig,
    /// The shared Redis tier; `url: null` (the default) means none.
    #[serde(default)]
    pub redis: RedisConfig,
}

/// `cache:` — where and how blobs are stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub root: PathBuf,
    pub max_size: Size,
    pub high_watermark: f64,
    pub low_watermark: f64,
    pub hard_limit: Option<Size>,
    pub on_full: OnFull,
    pub zstd_level: i32,
    pub inline_max: Size,
    pub max_value_size: Size,
    pub memory_size: Size,
    pub default_ttl: Dur,
    pub access_flush: Dur,
    pub fsync: bool,
    pub hot_tier: bool,
    pub hot_tier_size: Size,
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

/// One TTL class (the seeds' CacheDataType).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    pub prefix: String,
    pub ttl: Dur,
}

/// `cleanup:` — the eviction schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CleanupConfig {
    pub interval: String,
    pub gc_grace: Dur,
}

/// `monitoring:` — alert thresholds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    pub ttl_violation_threshold: f64,
    pub cache_hit_ratio_threshold: f64,
}

/// `fetch:` — upstream politeness.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    pub rate_limit: Rate,
    pub quota: Rate,
    pub timeout: Dur,
    pub connect_timeout: Dur,
    pub retries: u32,
    pub max_redirects: u32,
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
    pub name: String,
    pub url: String,
    pub every: Dur,
    #[serde(default)]
    pub class: Option<String>,
}

/// `daemon:` — `freshcache run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of `/metrics`, `/healthz`, `/v1/stats` (`--listen` overrides).
    pub listen: std::net::SocketAddr,
    /// How often stored bytes are compared with the high watermark.
    pub size_check: Dur,
    /// On SIGTERM, in-flight fetches get this long before they are cancelled.
    pub shutdown_grace: Dur,
    /// Warm-up requests in flight at once.
    pub warm_concurrency: usize,
    /// Loaded on start: a URL fetched into `key`, or a key for the loader.
    #[serde(default)]
    pub warm: Vec<WarmItem>,
}

/// One warm-up item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WarmItem {
    pub key: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
}

/// `redis:` — the shared tier between the local tiers and the upstream.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` (TLS); several comma-separated
    /// seed nodes for a cluster. `None`: no Redis tier.
    pub url: Option<String>,
    /// Talk to a Redis Cluster (keys carry `{...}` hash tags).
    pub cluster: bool,
    /// Overrides the URL's password (e.g. from `FRESHCACHE_REDIS_PASSWORD`).
    pub password: Option<String>,
    /// Prefix of every Redis key and channel (several caches may share a server).
    pub key_prefix: String,
    /// Values up to this size ride inside the metadata record.
    pub inline_max: Size,
    /// Larger values are shared by blob hash up to this size; above it only
    /// the metadata is shared.
    pub max_blob_size: Size,
    /// Deadline of every Redis call.
    pub timeout: Dur,
    /// Redis keeps an entry this long past its expiry (for revalidation).
    pub grace: Dur,
    /// Lifetime of a cross-instance fetch lease (renewed while held).
    pub lease_ttl: Dur,
    /// Longest pause of the circuit breaker between probes.
    pub max_backoff: Dur,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            cluster: false,
            password: None,
            key_prefix: "freshcache".into(),
            inline_max: Size(16 << 10),
            max_blob_size: Size(8 << 20),
            timeout: Dur(Duration::from_millis(250)),
            grace: Dur(Duration::from_secs(600)),
            lease_ttl: Dur(Duration::from_secs(30)),
            max_backoff: Dur(Duration::from_secs(5)),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    /// Passwords (in the URL or the field) are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.url.as_deref().map(redact_url);
        f.debug_struct("RedisConfig")
            .field("url", &url)
            .field("cluster", &self.cluster)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("key_prefix", &self.key_prefix)
            .field("inline_max", &self.inline_max)
            .field("max_blob_size", &self.max_blob_size)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .field("lease_ttl", &self.lease_ttl)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
pub(crate) fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let creds = &u[s + 3..at];
                let user = creds.split(':').next().unwrap_or("");
                format!("{}{user}:***{}", &u[..s + 3], &u[at..])
            }
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
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
    /// [`Error::Config`] naming the file and field; [`Error::Io`] if the file
    /// cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
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
        let mut tree: Value = serde_yaml::from_str(EMBEDDED_DEFAULT).expect("embedded yaml");
        let source_name = file
            .as_ref()
            .map_or("<embedded default>".to_string(), |f| f.0.clone());
        if let Some((name, text)) = file {
            let layer: Value = serde_yaml::from_str(text).map_err(|e| Error::Config {
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
            let parsed: Value = serde_yaml::from_str(&value).unwrap_or(Value::String(value));
            if set_path(&mut tree, &rest.to_ascii_lowercase(), parsed) {
                env_names.push(name);
            }
        }
        let source_name = if env_names.is_empty() {
            source_name
        } else {
            format!("{source_name} (with {})", env_names.join(", "))
        };
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| Error::Config {
            source_name: source_name.clone(),
            field: e.path().to_string(),
            reason: e.inner().to_string(),
        })?;
        config.validate().map_err(|(field, reason)| Error::Config {
            source_name,
            field,
            reason,
        })?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, r: &str| Err((f.to_string(), r.to_string()));
        let c = &self.cache;
        if !(0.0 < c.low_watermark
            && c.low_watermark <= c.high_watermark
            && c.high_watermark <= 1.0)
        {
            return err(
                "cache.low_watermark",
                "need 0 < low_watermark <= high_watermark <= 1",
            );
        }
        if !(1..=22).contains(&c.zstd_level) {
            return err("cache.zstd_level", "must be between 1 and 22");
        }
        if c.max_size.0 == 0 {
            return err("cache.max_size", "must be greater than zero");
        }
        if c.max_value_size.0 > crate::base::limits::MAX_BLOB_BYTES {
            return err("cache.max_value_size", "must be at most 4GiB");
        }
        if c.access_flush.0.is_zero() {
            return err("cache.access_flush", "must be greater than zero");
        }
        for (name, class) in &self.classes {
            if crate::base::key::Key::new(name.as_str()).is_err() || name.contains(':') {
                return err(
                    &format!("classes.{name}"),
                    "class names are single key segments",
                );
            }
            if class.prefix.is_empty() {
                return err(
                    &format!("classes.{name}.prefix"),
                    "prefix must not be empty",
                );
            }
            if class.ttl.0.is_zero() {
                return err(
                    &format!("classes.{name}.ttl"),
                    "ttl must be greater than zero",
                );
            }
        }
        let m = &self.monitoring;
        for (f, v) in [
            (
                "monitoring.ttl_violation_threshold",
                m.ttl_violation_threshold,
            ),
            (
                "monitoring.cache_hit_ratio_threshold",
                m.cache_hit_ratio_threshold,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(f, "must be a ratio between 0 and 1");
            }
        }
        for (i, feed) in self.feeds.iter().enumerate() {
            if crate::base::key::Key::new(format!("news:{}:x", feed.name)).is_err()
                || feed.name.contains(':')
            {
                return err(
                    &format!("feeds[{i}].name"),
                    "must be a valid single key segment",
                );
            }
            if !(feed.url.starts_with("http://") || feed.url.starts_with("https://")) {
                return err(
                    &format!("feeds[{i}].url"),
                    "must be an http:// or https:// URL",
                );
            }
            if let Some(class) = &feed.class {
                if !self.classes.contains_key(class) {
                    return err(
                        &format!("feeds[{i}].class"),
                        &format!("unknown class `{class}`"),
                    );
                }
            }
            if feed.every.0.is_zero() {
                return err(&format!("feeds[{i}].every"), "must be greater than zero");
            }
            if self.feeds[..i].iter().any(|f| f.name == feed.name) {
                return err(&format!("feeds[{i}].name"), "duplicate feed name");
            }
        }
        self.validate_daemon()
    }

    fn validate_daemon(&self) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, r: String| Err((f.to_string(), r));
        if let Err(e) = self.cleanup.interval.parse::<croner::Cron>() {
            return err(
                "cleanup.interval",
                format!("invalid cron expression ({e}); e.g. \"0 2 * * *\""),
            );
        }
        let d = &self.daemon;
        if d.size_check.0.is_zero() {
            return err("daemon.size_check", "must be greater than zero".into());
        }
        if d.warm_concurrency == 0 {
            return err("daemon.warm_concurrency", "must be at least 1".into());
        }
        for (i, w) in d.warm.iter().enumerate() {
            if let Err(e) = crate::base::key::Key::new(w.key.as_str()) {
                return err(&format!("daemon.warm[{i}].key"), e.to_string());
            }
            if let Some(url) = &w.url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return err(
                        &format!("daemon.warm[{i}].url"),
                        "must be an http:// or https:// URL".into(),
                    );
                }
            }
            if let Some(class) = &w.class {
                if !self.classes.contains_key(class) {
                    return err(
                        &format!("daemon.warm[{i}].class"),
                        format!("unknown class `{class}`"),
                    );
                }
            }
        }
        self.validate_redis()
    }

    fn validate_redis(&self) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, r: &str| Err((format!("redis.{f}"), r.to_string()));
        let r = &self.redis;
        if let Some(url) = &r.url {
            for u in url.split(',') {
                let u = u.trim();
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                    return err("url", "must be a redis:// or rediss:// URL");
                }
            }
        }
        let p = &r.key_prefix;
        if p.is_empty() || p.len() > 64 || p.contains(['{', '}', '*', '?', '[', ']', ' ']) {
            return err(
                "key_prefix",
                "must be 1..=64 bytes without braces, glob characters or spaces",
            );
        }
        for (f, d) in [
            ("timeout", r.timeout),
            ("lease_ttl", r.lease_ttl),
            ("max_backoff", r.max_backoff),
        ] {
            if d.0.is_zero() {
                return err(f, "must be greater than zero");
            }
        }
        if r.inline_max.0 > r.max_blob_size.0 {
            return err("inline_max", "must not exceed redis.max_blob_size");
        }
        Ok(())
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

/// A duration written `90s`, `5m`, `1h`, `7d` (or a number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `90s`, `5m`, `1h 30m`, `7d`, `250ms`.
    ///
    /// # Errors
    /// A message saying what is wrong (negative, no unit, unknown unit).
    pub fn parse(s: &str) -> std::result::Result<Dur, String> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(format!("duration `{s}` is negative"));
        }
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(Dur(Duration::from_secs(secs)));
        }
        humantime::parse_duration(t)
            .map(Dur)
            .map_err(|e| format!("invalid duration `{s}` ({e}); use e.g. 90s, 5m, 1h, 7d"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.as_u64().is_some() => {
                Ok(Dur(Duration::from_secs(n.as_u64().unwrap_or(0))))
            }
            Value::Number(n) => Err(serde::de::Error::custom(format!(
                "duration `{n}` is negative or fractional"
            ))),
            Value::String(s) => Dur::parse(&s).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a duration, got {other:?}"
            ))),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A size in bytes written `64KiB`, `10GiB`, `500MB` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// Parses `64KiB`, `10GiB`, `1.5GB`, `4096`.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(s: &str) -> std::result::Result<Size, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid size `{s}`; use e.g. 64KiB, 10GiB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "unknown size unit in `{s}`; use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"
                ))
            }
        };
        Ok(Size((n * mult as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.as_u64().is_some() => Ok(Size(n.as_u64().unwrap_or(0))),
            Value::String(s) => Size::parse(&s).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a size such as 10GiB, got {other:?}"
            ))),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A rate such as `2/s` or `10000/month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/min`, `N/h`, `N/day`, `N/month` (30 days) or `N/<duration>`.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(s: &str) -> std::result::Result<Rate, String> {
        let (n, per) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid rate `{s}`; use e.g. 2/s"))?;
        let count = n
            .trim()
            .parse()
            .map_err(|_| format!("invalid count in rate `{s}`"))?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            "month" => Duration::from_secs(30 * 86_400),
            other => Dur::parse(other)?.0,
        };
        if count == 0 || per.is_zero() {
            return Err(format!("rate `{s}` must be positive"));
        }
        Ok(Rate { count, per })
    }

    /// A human name for the period (`month` for 30 days).
    pub fn period_name(&self) -> String {
        match self.per.as_secs() {
            1 => "second".into(),
            60 => "minute".into(),
            3600 => "hour".into(),
            86_400 => "day".into(),
            2_592_000 => "month".into(),
            _ => humantime::format_duration(self.per).to_string(),
        }
    }

    /// The spacing of requests this rate allows (`per / count`).
    pub fn interval(&self) -> Duration {
        self.per / u32::try_from(self.count.max(1)).unwrap_or(u32::MAX)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rate::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format!(
            "{}/{}",
            self.count,
            humantime::format_duration(self.per)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn embedded_default_has_the_seed_ttls() {
        let c = Config::default();
        let ttl = |n: &str| c.classes[n].ttl.0.as_secs();
        assert_eq!(ttl("teams"), 7 * 86_400);
        assert_eq!(ttl("odds"), 60);
        assert_eq!(ttl("player_props"), 300);
        assert_eq!(ttl("injuries"), 900);
        assert_eq!(ttl("llm_features"), 86_400);
        assert_eq!(ttl("news"), 3600);
        assert_eq!(c.cache.max_size.0, 10 << 30);
        assert_eq!(c.cleanup.interval, "0 2 * * *");
        assert_eq!(
            c.fetch.rate_limit,
            Rate {
                count: 2,
                per: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn env_overrides_nested_fields_with_underscores() {
        let c = Config::from_layers(
            None,
            env(&[
                ("FRESHCACHE_CACHE_MAX_SIZE", "5GiB"),
                ("FRESHCACHE_CACHE_ROOT", "/tmp/x"),
                ("FRESHCACHE_CLASSES_LLM_FEATURES_TTL", "6h"),
                ("FRESHCACHE_MONITORING_TTL_VIOLATION_THRESHOLD", "0.05"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.cache.max_size.0, 5 << 30);
        assert_eq!(c.cache.root, PathBuf::from("/tmp/x"));
        assert_eq!(
            c.classes["llm_features"].ttl.0,
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(c.monitoring.ttl_violation_threshold, 0.05);
    }

    #[test]
    fn file_merges_over_default() {
        let yaml = "classes:\n  odds: { prefix: 'odds:', ttl: 30s }\n  custom: { prefix: 'x:', ttl: 2m }\n";
        let c = Config::from_layers(Some(("f.yml".into(), yaml)), env(&[])).unwrap();
        assert_eq!(c.classes["odds"].ttl.0.as_secs(), 30);
        assert_eq!(c.classes["custom"].ttl.0.as_secs(), 120);
        assert_eq!(c.classes["teams"].ttl.0.as_secs(), 7 * 86_400);
    }

    #[test]
    fn bad_config_names_file_and_field() {
        let cases = [
            (
                "classes:\n  odds: { prefix: 'odds:', ttl: -5s }\n",
                "classes.odds.ttl",
                "negative",
            ),
            (
                "cache:\n  max_size: lots\n",
                "cache.max_size",
                "invalid size",
            ),
            ("cache:\n  bogus: 1\n", "cache", "unknown field"),
            (
                "classes:\n  odds: { prefix: 'odds:', ttl: 5s, color: red }\n",
                "classes.odds",
                "unknown field",
            ),
            (
                "feeds:\n  - { name: r, url: 'http://x', every: 5m, class: nope }\n",
                "feeds[0].class",
                "unknown class",
            ),
            (
                "monitoring:\n  ttl_violation_threshold: 3\n",
                "monitoring.ttl_violation_threshold",
                "ratio",
            ),
            ("cache: [\n", "line", ""),
            (
                "cleanup:\n  interval: 'every night'\n",
                "cleanup.interval",
                "cron",
            ),
            (
                "feeds:\n  - { name: r, url: 'http://x', every: 5m }\n  - { name: r, url: 'http://y', every: 5m }\n",
                "feeds[1].name",
                "duplicate",
            ),
            ("daemon:\n  listen: nowhere\n", "daemon.listen", ""),
            (
                "daemon:\n  warm: [{ key: 'a::b' }]\n",
                "daemon.warm[0].key",
                "",
            ),
        ];
        for (yaml, field, reason) in cases {
            let err = Config::from_layers(Some(("bad.yml".into(), yaml)), env(&[])).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("bad.yml"), "{msg}");
            assert!(msg.contains(field), "{yaml}: {msg}");
            assert!(msg.contains(reason), "{yaml}: {msg}");
        }
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let err =
            Config::from_layers(None, env(&[("FRESHCACHE_CACHE_MAX_SIZE", "huge")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("FRESHCACHE_CACHE_MAX_SIZE") && msg.contains("cache.max_size"),
            "{msg}"
        );
    }

    #[test]
    fn parses_units() {
        assert_eq!(Size::parse("64KiB").unwrap().0, 65_536);
        assert_eq!(Size::parse("10GiB").unwrap().0, 10 << 30);
        assert_eq!(Size::parse("1.5KB").unwrap().0, 1_500);
        assert!(Size::parse("10 parsecs").is_err());
        assert_eq!(Dur::parse("90s").unwrap().0.as_secs(), 90);
        assert_eq!(Dur::parse("7d").unwrap().0.as_secs(), 7 * 86_400);
        assert!(Dur::parse("-1m").is_err());
        assert_eq!(Rate::parse("10000/month").unwrap().count, 10_000);
    }
}
