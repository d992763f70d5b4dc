//! The `daemon:` and `redis:` sections (the redis one keeps its secrets
//! out of every serialisation and `Debug`).

use super::*;

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
    /// Open connections to the endpoints at most; beyond it the oldest idle
    /// one is closed.
    pub max_connections: usize,
    /// A client must send a complete request head within this long.
    pub header_timeout: Dur,
    /// Loaded on start: a URL fetched into `key`, or a key for the loader.
    #[serde(default)]
    pub warm: Vec<WarmItem>,
    /// Revalidation of hot entries before they expire.
    #[serde(default)]
    pub refresh_ahead: RefreshAheadConfig,
}

/// `daemon.refresh_ahead`: an entry read at least `min_reads` times since
/// it was stored (or last refreshed ahead) and in the last `fraction` of
/// its TTL is revalidated before it expires.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshAheadConfig {
    /// Refresh hot entries ahead of expiry.
    pub enabled: bool,
    /// Reads within the entry's TTL that make it hot.
    pub min_reads: u64,
    /// The last part of the TTL in which a hot entry is refreshed (0 < f < 1).
    pub fraction: f64,
    /// How often the daemon looks for such entries.
    pub every: Dur,
    /// Refreshes started per pass at most (the rate limit and quota apply too).
    pub max_per_pass: usize,
}

impl Default for RefreshAheadConfig {
    fn default() -> Self {
        RefreshAheadConfig {
            enabled: true,
            min_reads: 3,
            fraction: 0.1,
            every: Dur(Duration::from_secs(5)),
            max_per_pass: 100,
        }
    }
}

/// One warm-up item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WarmItem {
    /// The key to warm.
    pub key: String,
    #[serde(default)]
    /// Fetch it from this URL (else it must be in the cache).
    pub url: Option<String>,
    #[serde(default)]
    /// Class of the stored entries (default: by prefix).
    pub class: Option<String>,
}

/// `redis:` — the shared tier between the local tiers and the upstream.
///
/// Its secrets (the `password` field, a password inside `url`) never leave
/// the process: `Serialize` (the daemon's `/v1/config`, `--json`) and
/// `Debug` (logs) print them as `***`.
#[derive(Clone, Deserialize, PartialEq)]
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
    /// What to do with local entries not yet confirmed against the shared
    /// invalidation log (after a restart that could not catch up, while
    /// Redis is unreachable): serve them (`available`) or not (`strict`).
    pub consistency: Consistency,
    /// Invalidations kept in the shared log for instances that were away;
    /// one further behind reconciles instead of replaying.
    pub log_len: u64,
    /// PEM file of CA certificates for `rediss://` (instead of the system
    /// roots), e.g. for a server with a self-signed certificate.
    pub tls_ca_file: Option<PathBuf>,
}

/// `redis.consistency`: how unconfirmed local entries are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Served, and each such read counted (`unconfirmed_reads`); the guard
    /// accepts them and lists them as unconfirmed.
    #[default]
    Available,
    /// Treated as misses; the guard refuses them as `unconfirmed`.
    Strict,
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
            consistency: Consistency::Available,
            log_len: 10_000,
            tls_ca_file: None,
        }
    }
}

/// What [`RedisConfig`] serialises as: the same fields, secrets redacted.
#[derive(Serialize)]
struct RedisConfigShown<'a> {
    url: Option<String>,
    cluster: bool,
    password: Option<&'static str>,
    key_prefix: &'a str,
    inline_max: Size,
    max_blob_size: Size,
    timeout: Dur,
    grace: Dur,
    lease_ttl: Dur,
    max_backoff: Dur,
    consistency: Consistency,
    log_len: u64,
    tls_ca_file: Option<&'a std::path::Path>,
}

impl Serialize for RedisConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        RedisConfigShown {
            url: self.url.as_deref().map(redact_url),
            cluster: self.cluster,
            password: self.password.as_ref().map(|_| "***"),
            key_prefix: &self.key_prefix,
            inline_max: self.inline_max,
            max_blob_size: self.max_blob_size,
            timeout: self.timeout,
            grace: self.grace,
            lease_ttl: self.lease_ttl,
            max_backoff: self.max_backoff,
            consistency: self.consistency,
            log_len: self.log_len,
            tls_ca_file: self.tls_ca_file.as_deref(),
        }
        .serialize(s)
    }
}

/// Fields whose values may hold a secret: taken from the environment as
/// strings (never re-parsed as YAML), and never quoted in an error.
pub(super) fn secret_field(path: &str) -> bool {
    matches!(
        path,
        "redis.password" | "redis.url" | "redis_password" | "redis_url"
    )
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
            .field("consistency", &self.consistency)
            .field("log_len", &self.log_len)
            .field("tls_ca_file", &self.tls_ca_file)
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
