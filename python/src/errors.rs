//! Rust errors → the Python exception tree in `freshcache/_errors.py`.

use std::error::Error as _;

use freshcache::{Error, StaleReason};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS
        .get_or_try_init(py, || Ok(py.import("freshcache._errors")?.unbind()))
        .map(|m| m.bind(py))
}

/// The message of `e` with its source chain (`I/O error at P: No space left`).
fn message(e: &Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        src = s.source();
    }
    msg
}

fn reason_name(r: StaleReason) -> &'static str {
    r.as_str()
}

/// Builds an instance of `freshcache.<class>` with `attrs` and the CLI's
/// exit code.
fn build(py: Python<'_>, class: &str, e: &Error, attrs: &Bound<'_, PyDict>) -> PyResult<PyErr> {
    attrs.set_item("exit_code", e.exit_code())?;
    let cls = errors_module(py)?.getattr(class)?;
    let inst = cls.call((message(e),), Some(attrs))?;
    Ok(PyErr::from_value(inst))
}

fn try_convert(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let d = PyDict::new(py);
    let class = match e {
        Error::Shared { source } => return try_convert(py, source),
        Error::Loader { key, source } => {
            // The Python loader's own exception goes back to every caller.
            if let Some(pe) = source.downcast_ref::<PyErr>() {
                return Ok(pe.clone_ref(py));
            }
            d.set_item("key", key)?;
            "Upstream"
        }
        Error::InvalidKey { key, reason } => {
            d.set_item("key", key)?;
            d.set_item("reason", *reason)?;
            "InvalidKey"
        }
        Error::InvalidPattern { pattern, reason } => {
            d.set_item("pattern", pattern)?;
            d.set_item("reason", *reason)?;
            "InvalidPattern"
        }
        Error::Config {
            source_name,
            field,
            reason,
        } => {
            d.set_item("source_name", source_name)?;
            d.set_item("field", field)?;
            d.set_item("reason", reason)?;
            "ConfigError"
        }
        Error::UnknownClass { class } => {
            d.set_item("cls", class)?;
            "UnknownClass"
        }
        Error::TooLarge { size, max } => {
            d.set_item("size", size)?;
            d.set_item("max", max)?;
            "TooLarge"
        }
        Error::Full { stored, limit } => {
            d.set_item("stored", stored)?;
            d.set_item("limit", limit)?;
            "Full"
        }
        Error::InsecureRoot { path, reason } => {
            d.set_item("path", path.display().to_string())?;
            d.set_item("reason", *reason)?;
            "InsecureRoot"
        }
        Error::Corrupt { expected } => {
            d.set_item("hash", expected.to_hex())?;
            "Corrupt"
        }
        Error::Io { path, source } => {
            d.set_item("path", path.display().to_string())?;
            d.set_item("os_errno", source.raw_os_error())?;
            "Io"
        }
        Error::Index { path, .. } | Error::SchemaVersion { path, .. } => {
            d.set_item("path", path.display().to_string())?;
            "Io"
        }
        Error::Json { key, .. } => {
            d.set_item("key", key)?;
            "JsonError"
        }
        Error::Stale(signals) => {
            let list = PyList::empty(py);
            for s in signals {
                let sd = PyDict::new(py);
                sd.set_item("requirement", &s.requirement)?;
                sd.set_item("key", &s.key)?;
                sd.set_item("cls", &s.class)?;
                sd.set_item("reason", reason_name(s.reason))?;
                sd.set_item("age_ms", s.age_ms)?;
                sd.set_item("limit_ms", s.limit_ms)?;
                sd.set_item("over_by_ms", s.over_by_ms)?;
                list.append(sd)?;
            }
            d.set_item("signals", list)?;
            "StaleSignals"
        }
        Error::Upstream { url, reason } => {
            d.set_item("url", url)?;
            d.set_item("reason", reason)?;
            "Upstream"
        }
        Error::QuotaExceeded {
            used,
            limit,
            period,
        } => {
            d.set_item("used", used)?;
            d.set_item("limit", limit)?;
            d.set_item("period", period)?;
            "QuotaExceeded"
        }
        Error::Feed { feed, reason } => {
            d.set_item("feed", feed)?;
            d.set_item("reason", reason)?;
            "FeedError"
        }
        Error::Listen { .. } => "Io",
        _ => "Error",
    };
    build(py, class, e, &d)
}

/// The Python exception for a freshcache error.
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    try_convert(py, e).unwrap_or_else(|conv| {
        PyRuntimeError::new_err(format!(
            "freshcache error {} (and building its exception failed: {conv})",
            message(e)
        ))
    })
}

/// An `freshcache.Error` subclass by name with a message (input checks and
/// internal failures raised by the extension itself).
pub fn named(py: Python<'_>, class: &str, msg: String) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let cls = errors_module(py)?.getattr(class)?;
        Ok(PyErr::from_value(cls.call1((msg.clone(),))?))
    };
    make().unwrap_or_else(|_| PyRuntimeError::new_err(msg.clone()))
}
