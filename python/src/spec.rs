//! How a Python `Cache` opens its root: the spec it keeps (to open again
//! in a forked child), the CLI's config resolution, and the per-process state.

use std::path::PathBuf;
use std::sync::OnceLock;

use freshcache::{Cache, Config, Fetcher, ManualClock};

/// How to open the cache again (in a forked child).
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) root: Option<PathBuf>,
    pub(crate) config_path: Option<PathBuf>,
    /// A config given as a mapping, as JSON (which is YAML).
    pub(crate) config_text: Option<String>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) generation: u64,
    pub(crate) cache: Cache,
    pub(crate) fetcher: OnceLock<Fetcher>,
}

impl State {
    pub(crate) fn fetcher(&self) -> freshcache::Result<&Fetcher> {
        if let Some(f) = self.fetcher.get() {
            return Ok(f);
        }
        let f = Fetcher::new(&self.cache)?;
        Ok(self.fetcher.get_or_init(|| f))
    }
}

/// The CLI's resolution: `--config` (or `FRESHCACHE_CONFIG`) over the
/// embedded default, `FRESHCACHE_*` overrides, then `--root` (or
/// `FRESHCACHE_ROOT`) over `cache.root`.
pub(crate) fn load_config(spec: &Spec) -> freshcache::Result<Config> {
    let env_path = || {
        std::env::var_os("FRESHCACHE_CONFIG")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let mut config = match (
        &spec.config_text,
        spec.config_path.clone().or_else(env_path),
    ) {
        (Some(text), _) => {
            Config::from_layers(Some(("<config mapping>".into(), text)), std::env::vars())?
        }
        (None, Some(path)) => Config::load(path)?,
        (None, None) => Config::from_env()?,
    };
    let root = spec.root.clone().or_else(|| {
        std::env::var_os("FRESHCACHE_ROOT")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    if let Some(root) = root {
        config.cache.root = root;
    }
    Ok(config)
}

pub(crate) fn open(spec: &Spec, clock: Option<&ManualClock>) -> freshcache::Result<Cache> {
    let config = load_config(spec)?;
    let mut b = Cache::builder().config(config);
    if let Some(c) = clock {
        b = b.clock(c.clone());
    }
    b.open()
}
