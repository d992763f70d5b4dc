//! `freshcache._native`: the PyO3 layer over the `freshcache` crate.
//!
//! A thin layer: argument conversion, GIL release around every call into
//! the core (all of which may touch the disk or the network), error mapping
//! to the exception tree in `freshcache/_errors.py`, and fork detection.
//! No cache logic lives here; the pure-Python package (`freshcache/`) adds
//! the JSON helpers, the decorator and the asyncio forms.

#![forbid(unsafe_code)]

mod cache;
mod errors;
mod json;
mod runtime;
mod spec;
mod types;

pub(crate) use cache::*;
pub(crate) use spec::*;
pub(crate) use types::*;

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use freshcache::Error;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString};

// ---------------------------------------------------------------- helpers

/// Runs `f` with the GIL released; a freshcache error becomes its Python
/// exception and a panic becomes `freshcache.Internal` (never a crash).
pub(crate) fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
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

pub(crate) fn internal(py: Python<'_>, panic: &(dyn std::any::Any + Send)) -> PyErr {
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

pub(crate) fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    errors::named(py, "InvalidInput", msg.into())
}

/// Seconds (int/float) or a `timedelta`, as a `Duration`.
pub(crate) fn duration(
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
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| invalid(py, format!("{what} of {secs} seconds is out of range")))
}

/// Epoch milliseconds from seconds (int/float) or a `datetime`.
pub(crate) fn instant_ms(v: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
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
pub(crate) fn value_bytes<'a>(v: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
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

pub(crate) fn path_arg(v: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let s = v.py().import("os")?.getattr("fspath")?.call1((v,))?;
    Ok(PathBuf::from(s.extract::<String>()?))
}

pub(crate) static DATETIME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
pub(crate) static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
pub(crate) static TIMEDELTA: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
pub(crate) static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub(crate) fn datetime_at(py: Python<'_>, ms: i64) -> PyResult<Bound<'_, PyAny>> {
    let dt = DATETIME.import(py, "datetime", "datetime")?;
    let utc = UTC.import(py, "datetime", "timezone")?.getattr("utc")?;
    dt.call_method1("fromtimestamp", (ms as f64 / 1000.0, utc))
}

pub(crate) fn timedelta_ms(py: Python<'_>, ms: i64) -> PyResult<Bound<'_, PyAny>> {
    let td = TIMEDELTA.import(py, "datetime", "timedelta")?;
    let kw = PyDict::new(py);
    kw.set_item("milliseconds", ms)?;
    td.call((), Some(&kw))
}

pub(crate) fn json_loads<'py>(
    py: Python<'py>,
    b: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    JSON_LOADS.import(py, "json", "loads")?.call1((b,))
}

/// A serde value (stats, reports) as Python objects.
pub(crate) fn to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
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

pub(crate) fn serde_py<'py, T: serde::Serialize>(
    py: Python<'py>,
    v: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(v)
        .map_err(|e| errors::named(py, "Internal", format!("cannot serialise a report: {e}")))?;
    to_py(py, &v)
}

// ------------------------------------------------------------------ clock

pub(crate) static STDLIB_ENCODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Compact JSON bytes of `obj` (what `put_json` stores): dicts with str
/// keys, lists, tuples, str, int, float, bool and None are encoded here;
/// anything else (subclasses, non-str keys, big ints, ...) by the standard
/// library with the same settings. NaN and infinities are refused
/// (ValueError): the CLI and Rust readers accept only valid JSON.
#[pyfunction]
pub(crate) fn dumps<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
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
pub(crate) fn loads<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyAny>> {
    match json::loads(py, data.as_bytes()) {
        Some(r) => r,
        None => json_loads(py, data.as_any()),
    }
}

/// Called by the package's `os.register_at_fork(after_in_child=...)` hook.
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    runtime::after_fork_in_child();
}

/// Raises a freshcache error of the kind named, for the tests of the
/// exception mapping (`kind`: "io", "corrupt", "upstream", "stale", "panic").
#[pyfunction]
pub(crate) fn _raise_for_test(py: Python<'_>, kind: &str) -> PyResult<()> {
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
pub(crate) fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
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
