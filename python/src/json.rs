//! `put_json`'s encoder: Python objects straight to compact JSON bytes
//! (what `json.dumps(v, separators=(",", ":"), ensure_ascii=False)`
//! produces, up to float spelling), without the standard library's
//! per-call encoder set-up. Anything it does not handle natively is left
//! to the standard library (`Unsupported`), so the two never disagree on
//! what is valid.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Deeper than this, the standard library decides (it detects cycles).
const MAX_DEPTH: usize = 256;

/// Why the fast path gave up.
pub enum Fallback {
    /// A type, key or value this encoder leaves to the standard library.
    Unsupported,
    /// A Python error while reading a value.
    Py(PyErr),
}

impl From<PyErr> for Fallback {
    fn from(e: PyErr) -> Self {
        Fallback::Py(e)
    }
}

/// Encodes `v` as compact JSON.
pub fn dumps(v: &Bound<'_, PyAny>) -> Result<Vec<u8>, Fallback> {
    let mut out = Vec::with_capacity(256);
    write(v, &mut out, 0)?;
    Ok(out)
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping: ", \, control characters; UTF-8 kept as is.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write(v: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> Result<(), Fallback> {
    if depth > MAX_DEPTH {
        return Err(Fallback::Unsupported);
    }
    if v.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(s) = v.cast_exact::<PyString>() {
        write_str(&s.to_cow()?, out);
    } else if let Ok(b) = v.cast_exact::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(i) = v.cast_exact::<PyInt>() {
        match i.extract::<i64>() {
            Ok(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Err(_) => return Err(Fallback::Unsupported), // big ints: str(int) semantics
        }
    } else if let Ok(f) = v.cast_exact::<PyFloat>() {
        let x = f.value();
        if !x.is_finite() {
            return Err(Fallback::Unsupported);
        }
        serde_json::to_writer(&mut *out, &x).expect("writing to a Vec cannot fail");
    } else if let Ok(d) = v.cast_exact::<PyDict>() {
        out.push(b'{');
        let mut first = true;
        for (k, x) in d.iter() {
            let Ok(k) = k.cast_exact::<PyString>() else {
                return Err(Fallback::Unsupported); // non-str keys: the stdlib's conversions
            };
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(&k.to_cow()?, out);
            out.push(b':');
            write(&x, out, depth + 1)?;
        }
        out.push(b'}');
    } else if let Ok(l) = v.cast_exact::<PyList>() {
        out.push(b'[');
        for (n, x) in l.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write(&x, out, depth + 1)?;
        }
        out.push(b']');
    } else if let Ok(t) = v.cast_exact::<PyTuple>() {
        out.push(b'[');
        for (n, x) in t.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write(&x, out, depth + 1)?;
        }
        out.push(b']');
    } else {
        return Err(Fallback::Unsupported);
    }
    Ok(())
}
