//! One error type for the crate. A miss is `Ok(None)`, never an error.

use std::path::PathBuf;

use crate::base::digest::Digest;
use crate::base::signal::StaleSignal;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in freshcache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key broke one of the rules in DESIGN.md.
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// A pattern could not be parsed.
    #[error("invalid pattern `{pattern}`: {reason}")]
    InvalidPattern {
        pattern: String,
        reason: &'static str,
    },
    /// A configuration file or override is wrong; `field` names the offending field.
    #[error("invalid config {source_name}: field `{field}`: {reason}")]
    Config {
        source_name: String,
        field: String,
        reason: String,
    },
    /// A put named a class the config does not define.
    #[error("unknown class `{class}`")]
    UnknownClass { class: String },
    /// A TTL longer than 100 years (`policy::MAX_TTL`); nothing is stored.
    #[error("TTL of {ttl_secs}s is longer than 100 years (the longest accepted is 36525d)")]
    InvalidTtl { ttl_secs: u64 },
    /// A value is larger than `cache.max_value_size`.
    #[error("value of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    /// Admission control refused a put that would pass the hard size limit.
    #[error("cache is full: {stored} bytes stored, hard limit {limit} bytes")]
    Full { stored: u64, limit: u64 },
    /// The cache root is unsafe to use (owned by another user, or not a directory).
    #[error("refusing cache root {path}: {reason}")]
    InsecureRoot { path: PathBuf, reason: &'static str },
    /// The daemon could not listen on its address.
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A blob failed hash verification; it has been quarantined.
    #[error("blob {expected} failed verification")]
    Corrupt { expected: Digest },
    /// An I/O error, with the path it happened at.
    #[error("I/O error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The index database could not be opened or used.
    #[error("index error at {path}")]
    Index {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The index was written by a newer freshcache.
    #[error("index {path} has schema version {found}; this freshcache supports up to {supported}")]
    SchemaVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A stored value was not valid JSON for the requested type.
    #[error("value of `{key}` is not valid JSON for the requested type")]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The staleness guard refused an inference run.
    #[error("{} signal(s) stale or missing: {}", .0.len(), crate::base::signal::summarize(.0))]
    Stale(Vec<StaleSignal>),
    /// An upstream request failed and no usable copy exists.
    #[error("upstream error for {url}: {reason}")]
    Upstream { url: String, reason: String },
    /// The persisted request quota is used up for this period.
    #[error("request quota exhausted: {used}/{limit} requests this {period}")]
    QuotaExceeded {
        used: u64,
        limit: u64,
        period: String,
    },
    /// A `get_or_fetch` loader failed; nothing was stored.
    #[error("loader for `{key}` failed")]
    Loader {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A news feed could not be parsed (the other feeds are unaffected).
    #[error("feed `{feed}` is malformed: {reason}")]
    Feed { feed: String, reason: String },
    /// The error of a single-flight call, shared by every caller that waited on it.
    #[error(transparent)]
    Shared { source: std::sync::Arc<Error> },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The process exit code the CLI uses for this error (the table in
    /// README.md): 2 invalid input (key, pattern, config, class, size,
    /// JSON type), 3 refused by the guard, 4 corrupt data, 5 upstream or
    /// network, 6 local I/O or storage (disk full, unreadable file, unusable
    /// root, damaged or newer index, cannot listen). Never 1: that is a
    /// miss, which is `Ok(None)`, not an error. The match is exhaustive so
    /// that a new variant has to choose its code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidKey { .. }
            | Error::InvalidPattern { .. }
            | Error::Config { .. }
            | Error::UnknownClass { .. }
            | Error::InvalidTtl { .. }
            | Error::TooLarge { .. }
            | Error::Json { .. } => 2,
            Error::Stale(_) => 3,
            Error::Corrupt { .. } => 4,
            Error::Upstream { .. }
            | Error::QuotaExceeded { .. }
            | Error::Loader { .. }
            | Error::Feed { .. } => 5,
            Error::Io { .. }
            | Error::Index { .. }
            | Error::SchemaVersion { .. }
            | Error::Full { .. }
            | Error::InsecureRoot { .. }
            | Error::Listen { .. } => 6,
            Error::Shared { source } => source.exit_code(),
        }
    }
}
