//! The hot tier when freshcache is built without the `sled` feature: it
//! never opens (`cache.hot_tier: true` logs a line and runs without it).

use std::path::Path;

use bytes::Bytes;

use crate::disk::blob::Digest;

/// Directory name inside the cache root (kept for layout docs and gc).
pub const HOT_DIR: &str = "hot.sled";

/// No value: the tier cannot exist in this build.
#[derive(Debug)]
pub enum HotTier {}

impl HotTier {
    /// Always `None`, with a log line.
    pub fn open(_root: &Path, _max_bytes: u64) -> Option<HotTier> {
        tracing::warn!(
            "cache.hot_tier is on, but this freshcache was built without the `sled` feature; \
             running without the hot tier"
        );
        None
    }

    pub fn get(&self, _hash: &Digest) -> Option<Bytes> {
        match *self {}
    }

    pub fn insert(&self, _hash: &Digest, _bytes: &[u8]) {
        match *self {}
    }
}
