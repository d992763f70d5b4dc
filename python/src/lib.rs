//! `freshcache._native`: the PyO3 layer over the `freshcache` crate.
//!
//! A thin layer: argument conversion, GIL release around every call into
//! the core (all of which may touch the disk or the network), error mapping
//! to the exception tree in `freshcache/_errors.py`, and fork detection.
//! No cache logic lives here; the pure-Python package (`freshcache/`) adds
//! the JSON helpers, the decorator and the asyncio forms.

#![forbid(unsafe_code)]

mod errors;
mod json;
mod runtime;

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use freshcache::config::Size;
use freshcache::fetch::feeds;
use freshcache::{Cache, Config, Error, FetchOptions, Fetcher, ManualClock, Meta, Outcome, Put};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString};

// ---------------------------------------------------------------- helpers

/// Runs `f` with the GIL released; a freshcache error becomes its Python
/// exception and a panic becomes `freshcache.Internal` (never a crash).
fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> freshcache::Result<T> + Send,
{
    match py.detach(move || std::panic::catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(errors::to_py(py, &e)),
        Err(panic) => Err(internal(py, &*panic)),
    }
}

fn internal(py: Python<'_>, panic: &(dyn std::any::Any + Send)) -> PyErr {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    errors::named(
        py,
        "Internal",
        format!("internal error in freshcache: {what}"),
    )
}

fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    errors::named(py, "InvalidInput", msg.into())
}

/// Seconds (int/float) or a `timedelta`, as a `Duration`.
fn duration(
    py: Python<'_>,
    v: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<Duration>> {
    let Some(v) = v else { return Ok(None) };
    if v.is_none() {
        return Ok(None);
    }
    let secs: f64 = if v.hasattr("total_seconds")? {
        v.call_method0("total_seconds")?.extract()?
    } else {
        v.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} must be seconds (int or float) or a timedelta"
            ))
        })?
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(invalid(
            py,
            format!("{what} must be a finite, non-negative duration, got {secs}"),
        ));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// Epoch milliseconds from seconds (int/float) or a `datetime`.
fn instant_ms(v: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    let secs: f64 = if v.hasattr("timestamp")? {
        v.call_method0("timestamp")?.extract()?
    } else {
        v.extract().map_err(|_| {
            PyTypeError::new_err(format!("{what} must be epoch seconds or a datetime"))
        })?
    };
    Ok((secs * 1000.0).round() as i64)
}

/// The bytes of a value: `bytes` without a copy, `str` as UTF-8,
/// `bytearray` / `memoryview` copied.
fn value_bytes<'a>(v: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(match s.to_cow()? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        });
    }
    if let Ok(b) = v.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if v.hasattr("__buffer__")? || v.get_type().name()?.to_cow()? == "memoryview" {
        let b = v.py().import("builtins")?.getattr("bytes")?.call1((v,))?;
        let b = b.cast::<PyBytes>()?;
        return Ok(Cow::Owned(b.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "value must be bytes or str, not {} (use put_json for JSON values)",
        v.get_type().name()?
    )))
}

fn path_arg(v: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let s = v.py().import("os")?.getattr("fspath")?.call1((v,))?;
    Ok(PathBuf::from(s.extract::<String>()?))
}

static DATETIME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TIMEDELTA: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn datetime_at(py: Python<'_>, ms: i64) -> PyResult<Bound<'_, PyAny>> {
    let dt = DATETIME.import(py, "datetime", "datetime")?;
    let utc = UTC.import(py, "datetime", "timezone")?.getattr("utc")?;
    dt.call_method1("fromtimestamp", (ms as f64 / 1000.0, utc))
}

fn timedelta_ms(py: Python<'_>, ms: i64) -> PyResult<Bound<'_, PyAny>> {
    let td = TIMEDELTA.import(py, "datetime", "timedelta")?;
    let kw = PyDict::new(py);
    kw.set_item("milliseconds", ms)?;
    td.call((), Some(&kw))
}

fn json_loads<'py>(py: Python<'py>, b: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    JSON_LOADS.import(py, "json", "loads")?.call1((b,))
}

/// A serde value (stats, reports) as Python objects.
fn to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(to_py(py, x)?)?;
            }
            l.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

fn serde_py<'py, T: serde::Serialize>(py: Python<'py>, v: &T) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(v)
        .map_err(|e| errors::named(py, "Internal", format!("cannot serialise a report: {e}")))?;
    to_py(py, &v)
}

// ------------------------------------------------------------------ clock

/// A clock that moves only when told to, for tests: pass it as
/// `Cache(root, clock=clock)` and move time with `advance`.
#[pyclass(frozen, module = "freshcache._native", name = "ManualClock")]
struct PyManualClock {
    inner: ManualClock,
}

#[pymethods]
impl PyManualClock {
    /// `start`: epoch seconds or a datetime (default: now).
    #[new]
    #[pyo3(signature = (start=None))]
    fn new(start: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let ms = match start {
            Some(s) if !s.is_none() => instant_ms(s, "start")?,
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        };
        Ok(PyManualClock {
            inner: ManualClock::new(ms),
        })
    }

    /// Moves time forward by seconds or a timedelta.
    fn advance(&self, py: Python<'_>, by: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Some(d) = duration(py, Some(by), "by")? {
            self.inner.advance(d);
        }
        Ok(())
    }

    /// Sets the time (epoch seconds or a datetime).
    fn set(&self, t: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.set(instant_ms(t, "t")?);
        Ok(())
    }

    /// Now, in epoch milliseconds.
    #[getter]
    fn now_ms(&self) -> i64 {
        use freshcache::Clock;
        self.inner.now_ms()
    }

    /// Now, as an aware UTC datetime.
    fn now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime_at(py, self.now_ms())
    }

    fn __repr__(&self) -> String {
        format!("ManualClock({})", freshcache::clock::rfc3339(self.now_ms()))
    }
}

// ------------------------------------------------------------------ entry

/// An entry's metadata and, for `get_entry` and the guard, its value.
/// Entries from `list` carry no value (`value` is None).
#[pyclass(frozen, module = "freshcache._native", name = "Entry")]
struct PyEntry {
    /// The key.
    #[pyo3(get)]
    key: String,
    /// blake3 hex of the value.
    #[pyo3(get)]
    hash: String,
    /// The TTL class.
    #[pyo3(get)]
    cls: String,
    /// Bytes of the value.
    #[pyo3(get)]
    size: u64,
    /// Bytes stored (compressed).
    #[pyo3(get)]
    stored_size: u64,
    #[pyo3(get)]
    created_at_ms: i64,
    #[pyo3(get)]
    expires_at_ms: i64,
    #[pyo3(get)]
    last_access_ms: i64,
    #[pyo3(get)]
    etag: Option<String>,
    #[pyo3(get)]
    last_modified: Option<String>,
    #[pyo3(get)]
    hits: u64,
    /// Whether the entry was fresh when read.
    #[pyo3(get)]
    fresh: bool,
    /// Milliseconds since the content was stored or last confirmed.
    #[pyo3(get)]
    age_ms: i64,
    /// The value (None for entries from `list`).
    #[pyo3(get)]
    value: Option<Py<PyBytes>>,
    /// For guard signals: the key or pattern this entry satisfies.
    #[pyo3(get)]
    requirement: Option<String>,
}

impl PyEntry {
    fn new(py: Python<'_>, m: Meta, value: Option<&Bytes>, requirement: Option<String>) -> Self {
        PyEntry {
            hash: m.hash.to_hex(),
            fresh: m.freshness.is_fresh(),
            key: m.key,
            cls: m.class,
            size: m.size,
            stored_size: m.stored_size,
            created_at_ms: m.created_at,
            expires_at_ms: m.expires_at,
            last_access_ms: m.last_access,
            etag: m.etag,
            last_modified: m.last_modified,
            hits: m.hits,
            age_ms: m.age_ms,
            value: value.map(|v| PyBytes::new(py, v).unbind()),
            requirement,
        }
    }
}

#[pymethods]
impl PyEntry {
    /// "fresh" or "stale".
    #[getter]
    fn freshness(&self) -> &'static str {
        if self.fresh {
            "fresh"
        } else {
            "stale"
        }
    }
    /// When the entry stops being fresh (aware UTC datetime).
    #[getter]
    fn expires_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime_at(py, self.expires_at_ms)
    }
    /// When the content was stored or last confirmed by a 304.
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime_at(py, self.created_at_ms)
    }
    #[getter]
    fn last_access<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime_at(py, self.last_access_ms)
    }
    /// Age as a timedelta.
    #[getter]
    fn age<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        timedelta_ms(py, self.age_ms)
    }
    /// TTL the entry was stored with, as a timedelta.
    #[getter]
    fn ttl<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        timedelta_ms(py, self.expires_at_ms - self.created_at_ms)
    }
    /// The value parsed as JSON.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.value {
            Some(v) => json_loads(py, v.bind(py).as_any()),
            None => Err(invalid(
                py,
                format!("entry `{}` carries no value", self.key),
            )),
        }
    }
    fn __repr__(&self) -> String {
        format!(
            "Entry(key={:?}, cls={:?}, freshness={:?}, size={}, age_ms={}, expires_at={})",
            self.key,
            self.cls,
            self.freshness(),
            self.size,
            self.age_ms,
            freshcache::clock::rfc3339(self.expires_at_ms)
        )
    }
}

// ------------------------------------------------------------------ fetch

/// What a fetch did: `outcome` is "fresh" (no request), "revalidated"
/// (304), "fetched" (200) or "stale_if_error".
#[pyclass(frozen, module = "freshcache._native", name = "FetchResult")]
struct PyFetchResult {
    #[pyo3(get)]
    outcome: &'static str,
    /// HTTP status of the final response (None when no request was made).
    #[pyo3(get)]
    status: Option<u16>,
    /// The current body (from the cache or the upstream).
    #[pyo3(get)]
    body: Py<PyBytes>,
    /// Body bytes received from the upstream (0 for a 304 or a hit).
    #[pyo3(get)]
    body_bytes: u64,
    #[pyo3(get)]
    requests: u32,
    #[pyo3(get)]
    fresh: bool,
    #[pyo3(get)]
    stored: bool,
    #[pyo3(get)]
    deduplicated: bool,
    #[pyo3(get)]
    expires_at_ms: Option<i64>,
    /// The URL that answered (after redirects).
    #[pyo3(get)]
    url: String,
    /// This caller waited on another caller's request (single-flight).
    #[pyo3(get)]
    shared: bool,
    /// Why the upstream failed, for a stale-if-error copy.
    #[pyo3(get)]
    error: Option<String>,
}

#[pymethods]
impl PyFetchResult {
    /// The body parsed as JSON.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.body.bind(py).as_any())
    }
    #[getter]
    fn expires_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.expires_at_ms.map(|ms| datetime_at(py, ms)).transpose()
    }
    fn __repr__(&self) -> String {
        format!(
            "FetchResult(outcome={:?}, status={:?}, body_bytes={}, requests={}, shared={})",
            self.outcome, self.status, self.body_bytes, self.requests, self.shared
        )
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Fresh => "fresh",
        Outcome::Revalidated => "revalidated",
        Outcome::Fetched => "fetched",
        Outcome::StaleIfError => "stale_if_error",
        _ => "unknown",
    }
}

// ------------------------------------------------------------------ cache

/// How to open the cache again (in a forked child).
#[derive(Debug, Clone)]
struct Spec {
    root: Option<PathBuf>,
    config_path: Option<PathBuf>,
    /// A config given as a mapping, as JSON (which is YAML).
    config_text: Option<String>,
}

#[derive(Debug)]
struct State {
    generation: u64,
    cache: Cache,
    fetcher: OnceLock<Fetcher>,
}

impl State {
    fn fetcher(&self) -> freshcache::Result<&Fetcher> {
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
fn load_config(spec: &Spec) -> freshcache::Result<Config> {
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

fn open(spec: &Spec, clock: Option<&ManualClock>) -> freshcache::Result<Cache> {
    let config = load_config(spec)?;
    let mut b = Cache::builder().config(config);
    if let Some(c) = clock {
        b = b.clock(c.clone());
    }
    b.open()
}

/// A freshcache cache root (see the `freshcache` package docs).
#[pyclass(subclass, frozen, module = "freshcache._native", name = "Cache")]
struct PyCache {
    spec: Spec,
    clock: Option<ManualClock>,
    /// Locked only with the GIL held (so never across a fork).
    state: Mutex<Arc<State>>,
}

impl PyCache {
    /// The state of this process; reopened transparently in a forked child.
    fn state(&self, py: Python<'_>) -> PyResult<Arc<State>> {
        let gen = runtime::generation();
        let mut slot = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if slot.generation == gen {
            return Ok(slot.clone());
        }
        let (spec, clock) = (self.spec.clone(), self.clock.clone());
        let cache = run(py, move || open(&spec, clock.as_ref()))?;
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

    fn rt(py: Python<'_>) -> PyResult<Arc<tokio::runtime::Runtime>> {
        runtime::runtime()
            .map_err(|e| errors::named(py, "Io", format!("cannot start the async runtime: {e}")))
    }
}

fn put_opts(
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
    /// returns (at_ms, entries) or raises StaleSignals.
    #[pyo3(signature = (requirements, *, max_age=None, class_max_age=None, at=None))]
    fn _guard(
        &self,
        py: Python<'_>,
        requirements: Vec<String>,
        max_age: Option<&Bound<'_, PyAny>>,
        class_max_age: Option<HashMap<String, Bound<'_, PyAny>>>,
        at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(i64, Vec<PyEntry>)> {
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
        Ok((set.at, entries))
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

static STDLIB_ENCODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Compact JSON bytes of `obj` (what `put_json` stores): dicts with str
/// keys, lists, tuples, str, int, float, bool and None are encoded here;
/// anything else (subclasses, non-str keys, big ints, ...) by the standard
/// library with the same settings. NaN and infinities are refused
/// (ValueError): the CLI and Rust readers accept only valid JSON.
#[pyfunction]
fn dumps<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    match json::dumps(obj) {
        Ok(v) => Ok(PyBytes::new(py, &v)),
        Err(json::Fallback::Py(e)) => Err(e),
        Err(json::Fallback::Unsupported) => {
            let enc = STDLIB_ENCODE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                let kw = PyDict::new(py);
                kw.set_item("separators", (",", ":"))?;
                kw.set_item("ensure_ascii", false)?;
                kw.set_item("allow_nan", false)?;
                let e = py
                    .import("json")?
                    .getattr("JSONEncoder")?
                    .call((), Some(&kw))?;
                Ok(e.getattr("encode")?.unbind())
            })?;
            let s = enc.bind(py).call1((obj,))?;
            let s = s.cast::<PyString>()?;
            Ok(PyBytes::new(py, s.to_cow()?.as_bytes()))
        }
    }
}

/// The JSON value of `data` (bytes), as `json.loads` would return it:
/// decoded in the extension, or by the standard library for what the fast
/// path leaves out (its exceptions are the standard library's).
#[pyfunction]
fn loads<'py>(py: Python<'py>, data: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyAny>> {
    match json::loads(py, data.as_bytes()) {
        Some(r) => r,
        None => json_loads(py, data.as_any()),
    }
}

/// Called by the package's `os.register_at_fork(after_in_child=...)` hook.
#[pyfunction]
fn _after_fork_in_child() {
    runtime::after_fork_in_child();
}

/// Raises a freshcache error of the kind named, for the tests of the
/// exception mapping (`kind`: "io", "corrupt", "upstream", "stale", "panic").
#[pyfunction]
fn _raise_for_test(py: Python<'_>, kind: &str) -> PyResult<()> {
    let kind = kind.to_owned();
    run(py, move || -> freshcache::Result<()> {
        Err(match kind.as_str() {
            "io" => Error::Io {
                path: "/nonexistent".into(),
                source: std::io::Error::from_raw_os_error(28),
            },
            "corrupt" => Error::Corrupt {
                expected: freshcache::Digest::of(b"x"),
            },
            "upstream" => Error::Upstream {
                url: "http://127.0.0.1:9/".into(),
                reason: "connection refused".into(),
            },
            "quota" => Error::QuotaExceeded {
                used: 10,
                limit: 10,
                period: "month".into(),
            },
            "panic" => panic!("deliberate test panic"),
            _ => Error::UnknownClass { class: kind },
        })
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCache>()?;
    m.add_class::<PyEntry>()?;
    m.add_class::<PyFetchResult>()?;
    m.add_class::<PyManualClock>()?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(_raise_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(dumps, m)?)?;
    m.add_function(wrap_pyfunction!(loads, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Fork detection: the hook runs in the child of os.fork() (and so of
    // multiprocessing's fork start method, gunicorn's workers...).
    let hook = m.getattr("_after_fork_in_child")?;
    let kw = PyDict::new(m.py());
    kw.set_item("after_in_child", hook)?;
    m.py()
        .import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kw))?;
    Ok(())
}
