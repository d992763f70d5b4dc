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

/// `get_json`'s decoder: JSON bytes straight to Python objects with the
/// standard library's results — integers of any size (`int(text)` beyond
/// 64 bits), correctly rounded floats (Rust's `f64` parser), duplicate keys
/// last-wins in first position. Anything else (NaN/Infinity literals, lone
/// surrogates, invalid UTF-8 or JSON, deep nesting) returns `None`, and the
/// caller asks the standard library, which decides or raises its error.
pub fn loads<'py>(py: Python<'py>, src: &[u8]) -> Option<PyResult<Bound<'py, PyAny>>> {
    let mut p = Parser {
        py,
        s: src,
        i: 0,
        keys: Vec::new(),
    };
    p.ws();
    let v = match p.value(0) {
        Ok(v) => v,
        Err(Stop::Py(e)) => return Some(Err(e)),
        Err(Stop::Fallback) => return None,
    };
    p.ws();
    if p.i != src.len() {
        return None;
    }
    Some(Ok(v))
}

enum Stop {
    Fallback,
    Py(PyErr),
}

impl From<PyErr> for Stop {
    fn from(e: PyErr) -> Self {
        Stop::Py(e)
    }
}

struct Parser<'py, 'a> {
    py: Python<'py>,
    s: &'a [u8],
    i: usize,
    /// Recent object keys, reused (the stdlib memoises keys too).
    keys: Vec<(&'a [u8], Bound<'py, PyString>)>,
}

type R<T> = Result<T, Stop>;

impl<'py, 'a> Parser<'py, 'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> R<()> {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(Stop::Fallback)
        }
    }

    fn value(&mut self, depth: usize) -> R<Bound<'py, PyAny>> {
        if depth > MAX_DEPTH {
            return Err(Stop::Fallback);
        }
        let py = self.py;
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let d = PyDict::new(py);
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(d.into_any());
                }
                loop {
                    self.ws();
                    let k = self.key()?;
                    self.ws();
                    self.eat(b":")?;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    d.set_item(k, v)?;
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(d.into_any());
                        }
                        _ => return Err(Stop::Fallback),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let l = PyList::empty(py);
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(l.into_any());
                }
                loop {
                    self.ws();
                    l.append(self.value(depth + 1)?)?;
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(l.into_any());
                        }
                        _ => return Err(Stop::Fallback),
                    }
                }
            }
            Some(b'"') => Ok(self.string()?.into_any()),
            Some(b't') => {
                self.eat(b"true")?;
                Ok(PyBool::new(py, true).to_owned().into_any())
            }
            Some(b'f') => {
                self.eat(b"false")?;
                Ok(PyBool::new(py, false).to_owned().into_any())
            }
            Some(b'n') => {
                self.eat(b"null")?;
                Ok(py.None().into_bound(py))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Stop::Fallback),
        }
    }

    fn key(&mut self) -> R<Bound<'py, PyString>> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(Stop::Fallback);
        }
        // Fast path: a key without escapes seen before in this document.
        let start = self.i + 1;
        if let Some(len) = self.s[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\')
        {
            let raw = &self.s[start..start + len];
            if self.s[start + len] == b'"' {
                if let Some((_, k)) = self.keys.iter().find(|(r, _)| *r == raw) {
                    self.i = start + len + 1;
                    return Ok(k.clone());
                }
                let k = self.string()?;
                if self.keys.len() < 64 {
                    self.keys.push((raw, k.clone()));
                }
                return Ok(k);
            }
        }
        self.string()
    }

    fn string(&mut self) -> R<Bound<'py, PyString>> {
        self.i += 1; // opening quote
        let start = self.i;
        // Fast path: no escapes.
        while let Some(&b) = self.s.get(self.i) {
            match b {
                b'"' => {
                    let text =
                        std::str::from_utf8(&self.s[start..self.i]).map_err(|_| Stop::Fallback)?;
                    self.i += 1;
                    return Ok(PyString::new(self.py, text));
                }
                b'\\' => break,
                0..=0x1f => return Err(Stop::Fallback),
                _ => self.i += 1,
            }
        }
        let mut out: Vec<u8> = self.s[start..self.i].to_vec();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err(Stop::Fallback);
            };
            self.i += 1;
            match b {
                b'"' => break,
                0..=0x1f => return Err(Stop::Fallback),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(Stop::Fallback);
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate must pair with a low one.
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(Stop::Fallback);
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Stop::Fallback);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or(Stop::Fallback)?
                        }
                        _ => return Err(Stop::Fallback),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(b),
            }
        }
        let text = std::str::from_utf8(&out).map_err(|_| Stop::Fallback)?;
        Ok(PyString::new(self.py, text))
    }

    fn hex4(&mut self) -> R<u32> {
        let h = self.s.get(self.i..self.i + 4).ok_or(Stop::Fallback)?;
        let h = std::str::from_utf8(h).map_err(|_| Stop::Fallback)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Stop::Fallback);
        }
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| Stop::Fallback)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> R<Bound<'py, PyAny>> {
        let py = self.py;
        let start = self.i;
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        // JSON: 0 or [1-9][0-9]*
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Stop::Fallback),
        }
        let mut float = false;
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Stop::Fallback);
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Stop::Fallback);
            }
            float = true;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| Stop::Fallback)?;
        if float {
            let x: f64 = text.parse().map_err(|_| Stop::Fallback)?;
            return Ok(PyFloat::new(py, x).into_any());
        }
        match text.parse::<i64>() {
            Ok(n) => {
                let Ok(o) = n.into_pyobject(py);
                Ok(o.into_any())
            }
            // Beyond 64 bits: Python's int() of the literal, exactly.
            Err(_) => Ok(py.get_type::<PyInt>().call1((text,))?),
        }
    }
}
