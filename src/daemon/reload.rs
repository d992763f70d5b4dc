//! Hot reload: a notify watcher on the config file's directory (editors
//! replace files by rename, which a watch on the file itself would miss),
//! a short debounce, then validate-then-swap. A config that fails to parse
//! or validate is logged with its field and counted; the old one stays.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::http::Shared;
use crate::base::config::Config;
use crate::base::error::{Error, Result};

/// Events closer together than this are one change (an editor's write,
/// truncate and rename).
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches `path` and sends each changed config that validates. Dropping
/// the returned watcher stops the watch.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be watched.
pub(crate) fn watch(
    path: &Path,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Config>,
) -> Result<notify::RecommendedWatcher> {
    let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path.file_name().map(|n| n.to_os_string());
    let (ev_tx, mut ev_rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if ev.kind.is_access() {
            return;
        }
        if ev.paths.iter().any(|p| p.file_name() == name.as_deref()) {
            let _ = ev_tx.try_send(()); // a full channel already holds a wake-up
        }
    })
    .map_err(|e| notify_io(&dir, e))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| notify_io(&dir, e))?;
    tokio::spawn(async move {
        while ev_rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while ev_rx.try_recv().is_ok() {}
            if let Some(config) = load(&path, &shared) {
                if tx.send(config).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok(watcher)
}

fn notify_io(dir: &Path, e: notify::Error) -> Error {
    let source = match e.kind {
        notify::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    };
    Error::io(dir, source)
}

/// Loads and validates `path`; `None` (logged, counted) if it is rejected
/// or unchanged. The cache root and listen address keep their values.
pub(crate) fn load(path: &Path, shared: &Shared) -> Option<Config> {
    let old = shared.cache.config();
    match Config::load(path) {
        Err(e) => {
            shared.metrics.reload_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "config change rejected; the old config stays in force");
            None
        }
        Ok(mut new) => {
            if new.cache.root != old.cache.root {
                tracing::warn!(
                    path = %new.cache.root.display(),
                    "cache.root changes need a restart; keeping the running root"
                );
                new.cache.root = old.cache.root.clone();
            }
            if new.daemon.listen != old.daemon.listen {
                tracing::warn!(
                    listen = %new.daemon.listen,
                    "daemon.listen changes need a restart; keeping the running address"
                );
                new.daemon.listen = old.daemon.listen;
            }
            (new != *old).then_some(new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn shared(dir: &Path) -> Shared {
        let mut c = Config::default();
        c.cache.root = dir.join("cache");
        Shared {
            cache: Cache::with_config(c).unwrap(),
            metrics: Default::default(),
        }
    }

    #[test]
    fn a_broken_config_is_rejected_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path());
        let f = dir.path().join("runtime.yml");
        std::fs::write(&f, "classes:\n  odds: { prefix: 'odds:', ttl: soon }\n").unwrap();
        assert!(load(&f, &s).is_none());
        assert_eq!(s.metrics.reload_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_empty_file_is_rejected_and_the_feeds_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path());
        let f = dir.path().join("runtime.yml");
        std::fs::write(
            &f,
            "feeds:\n  - { name: wire, url: 'http://127.0.0.1:1/w.xml', every: 5m }\n",
        )
        .unwrap();
        s.cache.set_config(load(&f, &s).unwrap());
        for truncated in ["", "\n", "# saved half way\n"] {
            std::fs::write(&f, truncated).unwrap();
            assert!(load(&f, &s).is_none(), "{truncated:?} accepted");
        }
        assert_eq!(s.metrics.reload_errors.load(Ordering::Relaxed), 3);
        assert_eq!(s.cache.config().feeds.len(), 1);
    }

    #[test]
    fn a_valid_change_keeps_the_running_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path());
        let f = dir.path().join("runtime.yml");
        std::fs::write(
            &f,
            "cache: { root: /elsewhere }\nclasses:\n  odds: { prefix: 'odds:', ttl: 5s }\n",
        )
        .unwrap();
        let c = load(&f, &s).unwrap();
        assert_eq!(c.cache.root, s.cache.root());
        assert_eq!(c.classes["odds"].ttl.0, Duration::from_secs(5));
        s.cache.set_config(c);
        assert!(load(&f, &s).is_none(), "an unchanged file is not a reload");
    }
}
