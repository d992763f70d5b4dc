//! Building a cache: configuration, clock, the root's safety checks.

use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::{
    plug::{Coordinator, SharedTier},
    Cache, Inner, WeakCache,
};
use crate::base::clock::{Clock, Millis, SystemClock};
use crate::base::config::Config;
use crate::base::error::{Error, Result};
use crate::base::policy::Classes;
use crate::disk::blob::files::{self, BlobFiles};
use crate::disk::blob::Digest;
use crate::disk::hot::HotMap;
use crate::disk::index::Index;
use crate::disk::reserve::Reserve;
use crate::disk::stats::Recorder;
use crate::disk::store::Store;
use crate::disk::tier::HotTier;

/// Builds a [`Cache`].
///
/// ## Defaults
/// Everything comes from the embedded `config/runtime.yml` (root
/// `data/cache`, 10 GiB cap, zstd level 3, blobs over 32 KiB encoded in
/// files, 64 MiB L1, access batches of 1 s) and the system clock.
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    hook: Hook,
}

/// The blob-file fault-injection hook, if a test set one.
#[derive(Clone, Default)]
struct Hook(Option<files::IoHook>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hook(set)"
        } else {
            "Hook(none)"
        })
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            hook: Hook::default(),
        }
    }
}

impl CacheBuilder {
    /// Uses a whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// Sets the cache root.
    pub fn root(mut self, root: impl AsRef<Path>) -> Self {
        self.config.cache.root = root.as_ref().to_path_buf();
        self
    }
    /// Sets the eviction cap (bytes stored).
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.config.cache.max_size.0 = n;
        self
    }
    /// Sets the L1 memory budget.
    pub fn memory_bytes(mut self, n: u64) -> Self {
        self.config.cache.memory_size.0 = n;
        self
    }
    /// Encoded blobs larger than this go to files.
    pub fn inline_max(mut self, n: u64) -> Self {
        self.config.cache.inline_max.0 = n;
        self
    }
    /// Injects a clock (tests use [`crate::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Injects a shared clock.
    pub fn clock_arc(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Fault injection for tests: `hook(op)` runs before every file-system
    /// call of the blob store (`create`, `write`, `fsync`, `link`, `rename`,
    /// `open`, `read`, `stat`, `unlink`, `mkdir`) and an error it returns is
    /// what that call fails with. Not for production use.
    #[doc(hidden)]
    pub fn blob_io_hook(
        mut self,
        hook: Arc<dyn Fn(&'static str) -> Option<std::io::Error> + Send + Sync>,
    ) -> Self {
        self.hook = Hook(Some(hook));
        self
    }

    /// The configuration this builder will open with.
    pub(crate) fn config_ref(&self) -> &Config {
        &self.config
    }

    /// Opens (creating if needed) the cache with the given plug-ins
    /// (`crate::open` passes the ones the config describes).
    pub(crate) fn build(
        self,
        shared: Option<Arc<dyn SharedTier>>,
        coordinator: Option<Arc<dyn Coordinator>>,
    ) -> Result<Cache> {
        let root = self.config.cache.root.clone();
        prepare_root(&root)?;
        let seq_path = root.join(crate::disk::seq::SEQ_FILE);
        // Held until the counter (which keeps its own) is mapped: no index
        // is opened, created or migrated while `recover` rebuilds it.
        let _open_lock =
            crate::disk::seq::lock_shared(&root).map_err(|e| Error::io(&seq_path, e))?;
        let c = &self.config.cache;
        let store = Store {
            index: Index::open(&root, c.fsync)?,
            files: BlobFiles::with_hook(&root, c.fsync, self.hook.0.clone())?,
            inline_max: c.inline_max.0,
            // A row claiming more than a put may store is damaged: nothing
            // of its claimed size is allocated (see `Store::read_in`).
            max_blob: c.max_value_size.0.min(crate::base::limits::MAX_BLOB_BYTES),
            unlinks: Default::default(),
            reserve: Reserve::new(&root),
            zstd_level: c.zstd_level,
            inline_lz4: c.inline_codec == crate::base::config::BlobCodec::Lz4,
            file_lz4: c.file_codec == crate::base::config::BlobCodec::Lz4,
        };
        // A full disk: give back reserve chunks until the page fits.
        let seq = loop {
            match crate::disk::seq::ChangeSeq::open(&root).map_err(|e| Error::io(&seq_path, e)) {
                Err(e) if crate::disk::reserve::is_full(&e) && store.reserve.release() => {}
                other => break other?,
            }
        };
        store.index.attach_seq(seq);
        // Best effort, one stat when it is there (see disk::reserve).
        store.reserve.ensure();
        let hot = HotMap::new(&store.index, c.fsync, 1 << 20)?;
        let tier = if c.hot_tier {
            HotTier::open(&root, c.hot_tier_size.0)
        } else {
            None
        };
        let l1 = moka::sync::Cache::builder()
            .max_capacity(c.memory_size.0)
            .weigher(|_: &Digest, v: &Bytes| u32::try_from(v.len() + 64).unwrap_or(u32::MAX))
            .build_with_hasher(ahash::RandomState::new());
        let door = super::admit::Doorkeeper::for_memory(c.memory_size.0);
        let window = c.access_flush.0.as_millis() as Millis;
        let lru_precision = c.lru_precision.0.as_millis().min(i64::MAX as u128) as Millis;
        let classes = Classes::from_config(&self.config);
        let (flusher, wake) = super::flusher::channel();
        let store = Arc::new(store);
        let local = super::local::LocalCoordinator::new(store.clone(), self.clock.clone());
        let cache = Cache {
            inner: Arc::new(Inner {
                root,
                classes: RwLock::new(Arc::new(classes)),
                config: RwLock::new(Arc::new(self.config)),
                store,
                l1,
                door,
                clock: self.clock,
                recorder: Arc::new(Recorder::new(window, lru_precision)),
                latency: Default::default(),
                hot,
                tier,
                flights: Default::default(),
                shared,
                coordinator,
                local,
                flusher,
                handles: std::sync::atomic::AtomicUsize::new(1),
            }),
            user: true,
        };
        super::flusher::spawn(&cache.inner, wake, window_duration(window));
        if let Some(s) = &cache.inner.shared {
            s.attach(WeakCache(Arc::downgrade(&cache.inner)));
        }
        Ok(cache)
    }
}

fn window_duration(ms: Millis) -> std::time::Duration {
    std::time::Duration::from_millis(ms.max(1) as u64)
}

/// Creates the root 0700 and refuses one owned by another user.
fn prepare_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !root.exists() {
        files::mkdir(root)?;
    }
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::InsecureRoot {
            path: root.into(),
            reason: "not a directory",
        });
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(Error::InsecureRoot {
            path: root.into(),
            reason: "owned by another user",
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(root, e))?;
    }
    Ok(())
}
