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
    InvalidKey {
        /// The key as given.
        key: String,
        /// The rule it broke.
        reason: &'static str,
    },
    /// A pattern could not be parsed.
    #[error("invalid pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A configuration file or override is wrong; `field` names the offending field.
    #[error("invalid config {source_name}: field `{field}`: {reason}")]
    Config {
        /// The file or variable the value came from.
        source_name: String,
        /// The offending field (`cache.max_size`, `redis.url`...).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A put named a class the config does not define.
    #[error("unknown class `{class}`")]
    UnknownClass {
        /// The class named.
        class: String,
    },
    /// A TTL longer than 100 years (`policy::MAX_TTL`); nothing is stored.
    #[error("TTL of {ttl_secs}s is longer than 100 years (the longest accepted is 36525d)")]
    InvalidTtl {
        /// The TTL asked for, in seconds.
        ttl_secs: u64,
    },
    /// A value is larger than `cache.max_value_size`.
    #[error("value of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The value's size.
        size: u64,
        /// `cache.max_value_size`.
        max: u64,
    },
    /// Admission control refused a put that would pass the hard size limit.
    #[error("cache is full: {stored} bytes stored, hard limit {limit} bytes")]
    Full {
        /// Bytes charged against the cap now.
        stored: u64,
        /// `cache.hard_limit`.
        limit: u64,
    },
    /// The cache root is unsafe to use (owned by another user, or not a directory).
    #[error("refusing cache root {path}: {reason}")]
    InsecureRoot {
        /// The root.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The daemon could not listen on its address.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// A blob failed hash verification; it has been quarantined.
    #[error("blob {expected} failed verification")]
    Corrupt {
        /// The hash the bytes should have had.
        expected: Digest,
    },
    /// An I/O error, with the path it happened at.
    #[error("I/O error at {path}")]
    Io {
        /// Where it happened.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The index database could not be opened or used.
    #[error("index error at {path}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The index was written by a newer freshcache.
    #[error("index {path} has schema version {found}; this freshcache supports up to {supported}")]
    SchemaVersion {
        /// The index file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A stored value was not valid JSON for the requested type.
    #[error("value of `{key}` is not valid JSON for the requested type")]
    Json {
        /// The key read or written.
        key: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// The staleness guard refused an inference run.
    #[error("{} signal(s) stale or missing: {}", .0.len(), crate::base::signal::summarize(.0))]
    Stale(Vec<StaleSignal>),
    /// An upstream request failed and no usable copy exists.
    #[error("upstream error for {url}: {reason}")]
    Upstream {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The persisted request quota is used up for this period.
    #[error("request quota exhausted: {used}/{limit} requests this {period}")]
    QuotaExceeded {
        /// Requests made in this window.
        used: u64,
        /// The quota.
        limit: u64,
        /// The window's name (`day`, `month`...).
        period: String,
    },
    /// A `get_or_fetch` loader failed; nothing was stored.
    #[error("loader for `{key}` failed")]
    Loader {
        /// The key being loaded.
        key: String,
        /// The loader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A news feed could not be parsed (the other feeds are unaffected).
    #[error("feed `{feed}` is malformed: {reason}")]
    Feed {
        /// The feed's name.
        feed: String,
        /// What the parser said.
        reason: String,
    },
    /// The error of a single-flight call, shared by every caller that waited on it.
    #[error(transparent)]
    Shared {
        /// The leader's error.
        source: std::sync::Arc<Error>,
    },
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
