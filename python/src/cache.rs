//! `freshcache.Cache`: the Python class over the Rust `Cache`.

use crate::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use freshcache::config::Size;
use freshcache::fetch::feeds;
use freshcache::{FetchOptions, ManualClock, Put};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// A freshcache cache root (see the `freshcache` package docs).
#[pyclass(subclass, frozen, module = "freshcache._native", name = "Cache")]
pub(crate) struct PyCache {
    pub(crate) spec: Spec,
    pub(crate) clock: Option<ManualClock>,
    /// Locked only with the GIL held (so never across a fork).
    pub(crate) state: Mutex<Arc<State>>,
}

impl Drop for PyCache {
    /// A cache freed in a forked child before it was used there holds the
    /// parent's state: its SQLite handles and its flusher thread (which does
    /// not exist here). Never dropped: dropping would flush through them and
    /// wait for that thread.
    fn drop(&mut self) {
        let slot = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if slot.generation != runtime::generation() {
            std::mem::forget(slot.clone());
        }
    }
}

impl PyCache {
    /// The state of this process; reopened transparently in a forked child.
    pub(crate) fn state(&self, py: Python<'_>) -> PyResult<Arc<State>> {
        let gen = runtime::generation();
        {
            let slot = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if slot.generation == gen {
                return Ok(slot.clone());
            }
        }
        // Opened without the lock: `run` gives the GIL up while it opens, and
        // a second thread that took the GIL and then waited for this lock
        // would never give it back (a deadlock on a gthread worker's first
        // requests after fork). Two threads may both open; one state wins.
        let (spec, clock) = (self.spec.clone(), self.clock.clone());
        let cache = run(py, move || open(&spec, clock.as_ref()))?;
        let mut slot = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if slot.generation == gen {
            return Ok(slot.clone()); // another thread won; ours drops here
        }
        let fresh = Arc::new(State {
            generation: gen,
            cache,
            fetcher: OnceLock::new(),
        });
        // The parent's cache holds the parent's SQLite handles and threads:
        // never touched again, never dropped (dropping would flush through them).
        std::mem::forget(std::mem::replace(&mut *slot, fresh.clone()));
        Ok(fresh)
    }

    pub(crate) fn rt(py: Python<'_>) -> PyResult<Arc<tokio::runtime::Runtime>> {
        runtime::runtime()
            .map_err(|e| errors::named(py, "Io", format!("cannot start the async runtime: {e}")))
    }
}

pub(crate) fn put_opts(
    py: Python<'_>,
    cls: Option<String>,
    ttl: Option<&Bound<'_, PyAny>>,
    etag: Option<String>,
    last_modified: Option<String>,
) -> PyResult<Put> {
    Ok(Put {
        class: cls,
        ttl: duration(py, ttl, "ttl")?,
        etag,
        last_modified,
        headers: None,
    })
}

#[pymethods]
impl PyCache {
    /// Opens (creating if needed) a cache root, resolved like the CLI:
    /// `root` (or `FRESHCACHE_ROOT`) over `cache.root` of `config` (a path
    /// to a runtime.yml, a mapping in its shape, or `FRESHCACHE_CONFIG`),
    /// over the embedded default, with `FRESHCACHE_*` overrides.
    #[new]
    #[pyo3(signature = (root=None, config=None, *, clock=None))]
    fn new(
        py: Python<'_>,
        root: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let root = root.filter(|r| !r.is_none()).map(path_arg).transpose()?;
        let (config_path, config_text) = match config {
            None => (None, None),
            Some(c) if c.is_none() => (None, None),
            Some(c) if c.cast::<PyDict>().is_ok() => {
                let dumps = py.import("json")?.getattr("dumps")?;
                (None, Some(dumps.call1((c,))?.extract::<String>()?))
            }
            Some(c) => (Some(path_arg(c)?), None),
        };
        let mut spec = Spec {
            root,
            config_path,
            config_text,
        };
        let clock = clock.map(|c| c.get().inner.clone());
        let s2 = spec.clone();
        let c2 = clock.clone();
        let cache = run(py, move || open(&s2, c2.as_ref()))?;
        // A forked child reopens the same directory even after a chdir.
        spec.root = Some(std::path::absolute(cache.root()).unwrap_or_else(|_| cache.root().into()));
        if let Some(p) = &spec.config_path {
            spec.config_path = Some(std::path::absolute(p).unwrap_or_else(|_| p.clone()));
        }
        Ok(PyCache {
            spec,
            clock,
            state: Mutex::new(Arc::new(State {
                generation: runtime::generation(),
                cache,
                fetcher: OnceLock::new(),
            })),
        })
    }

    /// The cache root directory.
    #[getter]
    fn root(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.state(py)?.cache.root().display().to_string())
    }

    /// The config file in use, if any.
    #[getter]
    fn config_path(&self) -> Option<String> {
        self.spec
            .config_path
            .as_ref()
            .map(|p| p.display().to_string())
    }

    /// The config given as a mapping, as JSON text (for pickling).
    #[getter]
    fn _config_text(&self) -> Option<String> {
        self.spec.config_text.clone()
    }

    /// How many times this process has (re)opened the cache since import
    /// generation 0; moves on in a forked child.
    #[getter]
    fn _generation(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.state(py)?.generation)
    }

    /// Now by the cache's clock, in epoch milliseconds.
    fn now_ms(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.state(py)?.cache.now())
    }

    /// Stores `value` (bytes or str) under `key`. The class comes from the
    /// longest matching key prefix unless `cls` names one; `ttl` (seconds
    /// or a timedelta) overrides the class TTL.
    #[pyo3(signature = (key, value, *, cls=None, ttl=None, etag=None, last_modified=None))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        cls: Option<String>,
        ttl: Option<&Bound<'_, PyAny>>,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> PyResult<()> {
        let opts = put_opts(py, cls, ttl, etag, last_modified)?;
        let bytes = value_bytes(value)?;
        let st = self.state(py)?;
        let b: &[u8] = &bytes;
        run(py, || st.cache.put(key, b, opts).map(|_| ()))
    }

    /// The fresh value of `key`, or None (missing or expired).
    fn get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let st = self.state(py)?;
        let v = run(py, || st.cache.get(key))?;
        Ok(v.map(|b| PyBytes::new(py, &b)))
    }

    /// Fresh values of several keys (None for each miss), read as of one
    /// snapshot, in the order given.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<String>,
    ) -> PyResult<Vec<Option<Bound<'py, PyBytes>>>> {
        let st = self.state(py)?;
        let v = run(py, || {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            st.cache.get_many(&refs)
        })?;
        Ok(v.into_iter()
            .map(|o| o.map(|b| PyBytes::new(py, &b)))
            .collect())
    }

    /// The entry for `key`, fresh or stale, with its metadata; None if absent.
    fn get_entry(&self, py: Python<'_>, key: &str) -> PyResult<Option<PyEntry>> {
        let st = self.state(py)?;
        let e = run(py, || st.cache.get_entry(key))?;
        Ok(e.map(|e| PyEntry::new(py, e.meta, Some(&e.value), None)))
    }

    /// The metadata of `key` without its bytes; None if absent.
    fn stat(&self, py: Python<'_>, key: &str) -> PyResult<Option<PyEntry>> {
        let st = self.state(py)?;
        let m = run(py, || st.cache.stat(key))?;
        Ok(m.map(|m| PyEntry::new(py, m, None, None)))
    }

    /// Removes `key`; True if it existed.
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let st = self.state(py)?;
        run(py, || st.cache.delete(key))
    }

    /// Removes every key matching `pattern` (`news:reuters:*`,
    /// `odds:*:2026-11-21`) in one transaction; returns how many.
    fn invalidate(&self, py: Python<'_>, pattern: &str) -> PyResult<usize> {
        let st = self.state(py)?;
        run(py, || st.cache.invalidate(pattern))
    }

    /// Metadata of every key matching `pattern` (all keys for None), in key
    /// order. The entries carry no value.
    #[pyo3(signature = (pattern=None))]
    fn list(&self, py: Python<'_>, pattern: Option<String>) -> PyResult<Vec<PyEntry>> {
        let st = self.state(py)?;
        let metas = run(py, || st.cache.list(pattern.as_deref()))?;
        Ok(metas
            .into_iter()
            .map(|m| PyEntry::new(py, m, None, None))
            .collect())
    }

    /// Hits, misses, sizes and rates (shared by every process on the root),
    /// as a dict shaped like `freshcache stats --json`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let st = self.state(py)?;
        let s = run(py, || st.cache.stats())?;
        serde_py(py, &s)
    }

    /// Writes batched access records and counters now.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let st = self.state(py)?;
        run(py, || st.cache.flush())
    }

    /// One eviction pass (expired first, then least recently used) from
    /// above the high watermark down to the low one. `max_size`: bytes or
    /// "10GiB" instead of `cache.max_size`.
    #[pyo3(signature = (max_size=None))]
    fn evict<'py>(
        &self,
        py: Python<'py>,
        max_size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let max = match max_size {
            None => None,
            Some(v) if v.is_none() => None,
            Some(v) => match v.extract::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    let s: String = v.extract()?;
                    Some(Size::parse(&s).map_err(|e| invalid(py, e))?.0)
                }
            },
        };
        let st = self.state(py)?;
        let r = run(py, || st.cache.evict_with(max, None))?;
        serde_py(py, &r)
    }

    /// Removes orphan blob files and temp files older than `grace`
    /// (seconds or timedelta; default `cleanup.gc_grace`).
    #[pyo3(signature = (grace=None))]
    fn gc<'py>(
        &self,
        py: Python<'py>,
        grace: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let grace = duration(py, grace, "grace")?;
        let st = self.state(py)?;
        let r = run(py, || st.cache.gc_with(grace, None))?;
        serde_py(py, &r)
    }

    /// Hashes every blob and checks rows, refcounts and totals; with
    /// `repair`, fixes what it can. Returns the report (`problems` empty
    /// when clean).
    #[pyo3(signature = (repair=false))]
    fn verify<'py>(&self, py: Python<'py>, repair: bool) -> PyResult<Bound<'py, PyAny>> {
        let st = self.state(py)?;
        let r = run(py, || st.cache.verify(repair, None))?;
        serde_py(py, &r)
    }

    /// The staleness guard (the package's `Cache.guard` wraps this):
    /// returns (at_ms, entries, unconfirmed keys) or raises StaleSignals.
    #[pyo3(signature = (requirements, *, max_age=None, class_max_age=None, at=None))]
    fn _guard(
        &self,
        py: Python<'_>,
        requirements: Vec<String>,
        max_age: Option<&Bound<'_, PyAny>>,
        class_max_age: Option<HashMap<String, Bound<'_, PyAny>>>,
        at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(i64, Vec<PyEntry>, Vec<String>)> {
        let max_age = duration(py, max_age, "max_age")?;
        let mut per_class = Vec::new();
        for (class, d) in class_max_age.unwrap_or_default() {
            if let Some(d) = duration(py, Some(&d), "class_max_age")? {
                per_class.push((class, d));
            }
        }
        let at = at
            .filter(|a| !a.is_none())
            .map(|a| instant_ms(a, "at"))
            .transpose()?;
        let st = self.state(py)?;
        let set = run(py, || {
            let mut g = st.cache.guard();
            if let Some(d) = max_age {
                g = g.max_age(d);
            }
            for (c, d) in per_class {
                g = g.class_max_age(c, d);
            }
            if let Some(at) = at {
                g = g.at(at);
            }
            g.require(&requirements)
        })?;
        let entries = set
            .signals
            .into_iter()
            .map(|s| PyEntry::new(py, s.meta, Some(&s.value), Some(s.requirement)))
            .collect();
        Ok((set.at, entries, set.unconfirmed))
    }

    /// The fresh value of `key`, or the value `fn()` returns (bytes or
    /// str), stored with the class/TTL. Concurrent callers of one key in
    /// this process (any thread) run `fn` once and share its result or its
    /// exception. The GIL is released while waiting.
    #[pyo3(signature = (key, r#fn, *, cls=None, ttl=None))]
    fn get_or_fetch<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        r#fn: Py<PyAny>,
        cls: Option<String>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let opts = put_opts(py, cls, ttl, None, None)?;
        let st = self.state(py)?;
        let rt = Self::rt(py)?;
        let loader = move || async move {
            Python::attach(|py| -> PyResult<Vec<u8>> {
                let v = r#fn.bind(py).call0()?;
                Ok(value_bytes(&v)?.into_owned())
            })
        };
        let v = run(py, || {
            runtime::block_on(&rt, st.cache.get_or_fetch_with(key, opts, loader))
        })?;
        Ok(PyBytes::new(py, &v))
    }

    /// Makes `key` hold the current content of `url`: no request while the
    /// entry is fresh, else a conditional GET with the stored validators
    /// (304 → refreshed without a body). Concurrent fetches of one key
    /// share one request.
    #[pyo3(signature = (url, key, *, cls=None, ttl=None, stale_if_error=false, revalidate=false))]
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &self,
        py: Python<'_>,
        url: &str,
        key: &str,
        cls: Option<String>,
        ttl: Option<&Bound<'_, PyAny>>,
        stale_if_error: bool,
        revalidate: bool,
    ) -> PyResult<PyFetchResult> {
        let opts = FetchOptions {
            class: cls,
            ttl: duration(py, ttl, "ttl")?,
            stale_if_error,
            revalidate,
            ..FetchOptions::default()
        };
        let st = self.state(py)?;
        let rt = Self::rt(py)?;
        let o = run(py, || {
            let f = st.fetcher()?;
            runtime::block_on(&rt, f.fetch(url, key, &opts))
        })?;
        Ok(PyFetchResult {
            outcome: outcome_name(o.outcome),
            status: o.status,
            body: PyBytes::new(py, &o.value).unbind(),
            body_bytes: o.body_bytes,
            requests: o.requests,
            fresh: o.freshness.is_fresh(),
            stored: o.stored,
            deduplicated: o.deduplicated,
            expires_at_ms: o.expires_at,
            url: o.url,
            shared: o.shared,
            error: o.error,
        })
    }

    /// Revalidates every feed in the config (`feeds:`) and stores new
    /// articles as `news:<source>:<id>`; one report dict per feed (a
    /// failing feed has `error` set, the others go on).
    fn refresh_feeds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let st = self.state(py)?;
        let rt = Self::rt(py)?;
        let reports = run(py, || {
            let f = st.fetcher()?;
            let feeds_conf = st.cache.config().feeds.clone();
            Ok(runtime::block_on(&rt, feeds::refresh_all(f, &feeds_conf)))
        })?;
        serde_py(py, &reports)
    }

    /// `(used, limit)` of the fetcher's request quota this period.
    fn quota(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        let st = self.state(py)?;
        run(py, || st.fetcher()?.quota())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Cache(root={:?})", self.root(py)?))
    }
}
