//! The value types handed to Python: the clock, entries, fetch results.

use crate::*;

use bytes::Bytes;
use freshcache::{ManualClock, Meta, Outcome};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A clock that moves only when told to, for tests: pass it as
/// `Cache(root, clock=clock)` and move time with `advance`.
#[pyclass(frozen, module = "freshcache._native", name = "ManualClock")]
pub(crate) struct PyManualClock {
    pub(crate) inner: ManualClock,
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
pub(crate) struct PyEntry {
    /// The key.
    #[pyo3(get)]
    pub(crate) key: String,
    /// blake3 hex of the value.
    #[pyo3(get)]
    pub(crate) hash: String,
    /// The TTL class.
    #[pyo3(get)]
    pub(crate) cls: String,
    /// Bytes of the value.
    #[pyo3(get)]
    pub(crate) size: u64,
    /// Bytes stored (compressed).
    #[pyo3(get)]
    pub(crate) stored_size: u64,
    #[pyo3(get)]
    pub(crate) created_at_ms: i64,
    #[pyo3(get)]
    pub(crate) expires_at_ms: i64,
    #[pyo3(get)]
    pub(crate) last_access_ms: i64,
    #[pyo3(get)]
    pub(crate) etag: Option<String>,
    #[pyo3(get)]
    pub(crate) last_modified: Option<String>,
    #[pyo3(get)]
    pub(crate) hits: u64,
    /// Whether the entry was fresh when read.
    #[pyo3(get)]
    pub(crate) fresh: bool,
    /// Milliseconds since the content was stored or last confirmed.
    #[pyo3(get)]
    pub(crate) age_ms: i64,
    /// The value (None for entries from `list`).
    #[pyo3(get)]
    pub(crate) value: Option<Py<PyBytes>>,
    /// For guard signals: the key or pattern this entry satisfies.
    #[pyo3(get)]
    pub(crate) requirement: Option<String>,
}

impl PyEntry {
    pub(crate) fn new(
        py: Python<'_>,
        m: Meta,
        value: Option<&Bytes>,
        requirement: Option<String>,
    ) -> Self {
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
pub(crate) struct PyFetchResult {
    #[pyo3(get)]
    pub(crate) outcome: &'static str,
    /// HTTP status of the final response (None when no request was made).
    #[pyo3(get)]
    pub(crate) status: Option<u16>,
    /// The current body (from the cache or the upstream).
    #[pyo3(get)]
    pub(crate) body: Py<PyBytes>,
    /// Body bytes received from the upstream (0 for a 304 or a hit).
    #[pyo3(get)]
    pub(crate) body_bytes: u64,
    #[pyo3(get)]
    pub(crate) requests: u32,
    #[pyo3(get)]
    pub(crate) fresh: bool,
    #[pyo3(get)]
    pub(crate) stored: bool,
    #[pyo3(get)]
    pub(crate) deduplicated: bool,
    #[pyo3(get)]
    pub(crate) expires_at_ms: Option<i64>,
    /// The URL that answered (after redirects).
    #[pyo3(get)]
    pub(crate) url: String,
    /// This caller waited on another caller's request (single-flight).
    #[pyo3(get)]
    pub(crate) shared: bool,
    /// Why the upstream failed, for a stale-if-error copy.
    #[pyo3(get)]
    pub(crate) error: Option<String>,
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

pub(crate) fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Fresh => "fresh",
        Outcome::Revalidated => "revalidated",
        Outcome::Fetched => "fetched",
        Outcome::StaleIfError => "stale_if_error",
        _ => "unknown",
    }
}

// ------------------------------------------------------------------ cache
