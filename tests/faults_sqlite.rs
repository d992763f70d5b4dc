//! Fault injection under SQLite: a shim VFS, registered as the process's
//! default (so the library's own connections use it), that makes the N-th
//! `xWrite`, `xSync` or `xTruncate` fail (SQLITE_FULL, SQLITE_IOERR). Every
//! such point of put, put_many, overwrite, delete, invalidate, evict and gc
//! is swept, each followed by a reopen: the value is the old one or the new
//! one, never neither, never corrupt, and `verify` is clean. One test
//! function: the VFS and its counters are process-wide.

mod common;

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use freshcache::{Cache, Config, Put};
use rusqlite::ffi;

static CALLS: AtomicU64 = AtomicU64::new(0);
static FAIL_AT: AtomicU64 = AtomicU64::new(0);
static CODE: AtomicI32 = AtomicI32::new(0);
static ARMED: AtomicI32 = AtomicI32::new(0);

struct Shim {
    real_open: unsafe extern "C" fn(
        *mut ffi::sqlite3_vfs,
        *const c_char,
        *mut ffi::sqlite3_file,
        c_int,
        *mut c_int,
    ) -> c_int,
    orig_vfs: usize,
    /// (real method table, our patched copy, the real methods) per kind of
    /// file (the unix VFS has one for databases, one for journals and WALs).
    tables: std::sync::Mutex<Vec<(usize, usize, ffi::sqlite3_io_methods)>>,
}

// SAFETY: the raw pointers inside point at SQLite's static tables.
unsafe impl Send for Shim {}
unsafe impl Sync for Shim {}

static SHIM: OnceLock<Shim> = OnceLock::new();

/// The real methods behind a patched file.
unsafe fn real(f: *mut ffi::sqlite3_file) -> ffi::sqlite3_io_methods {
    let patched = (*f).pMethods as usize;
    let t = SHIM.get().unwrap().tables.lock().unwrap();
    t.iter()
        .find(|(_, p, _)| *p == patched)
        .expect("a patched file")
        .2
}

fn fault() -> Option<c_int> {
    if ARMED.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    (n == FAIL_AT.load(Ordering::SeqCst)).then(|| CODE.load(Ordering::SeqCst))
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    b: *const c_void,
    n: c_int,
    off: i64,
) -> c_int {
    if let Some(code) = fault() {
        return code;
    }
    (real(f).xWrite.unwrap())(f, b, n, off)
}

unsafe extern "C" fn x_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    if let Some(code) = fault() {
        return if code == ffi::SQLITE_FULL {
            ffi::SQLITE_IOERR_FSYNC
        } else {
            code
        };
    }
    (real(f).xSync.unwrap())(f, flags)
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    if let Some(code) = fault() {
        return if code == ffi::SQLITE_FULL {
            ffi::SQLITE_IOERR_TRUNCATE
        } else {
            code
        };
    }
    (real(f).xTruncate.unwrap())(f, size)
}

unsafe extern "C" fn shim_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let shim = SHIM.get().unwrap();
    let rc = (shim.real_open)(
        shim.orig_vfs as *mut ffi::sqlite3_vfs,
        name,
        file,
        flags,
        out,
    );
    let methods = (*file).pMethods;
    if rc == ffi::SQLITE_OK && !methods.is_null() {
        let mut t = shim.tables.lock().unwrap();
        let patched = match t.iter().find(|(r, _, _)| *r == methods as usize) {
            Some((_, p, _)) => *p,
            None => {
                let real = *methods;
                let mut p = real;
                p.xWrite = Some(x_write);
                p.xSync = Some(x_sync);
                p.xTruncate = Some(x_truncate);
                let p = Box::leak(Box::new(p)) as *const _ as usize;
                t.push((methods as usize, p, real));
                p
            }
        };
        (*file).pMethods = patched as *const ffi::sqlite3_io_methods;
    }
    rc
}

/// Registers the shim as the default VFS (once per process).
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        let orig = ffi::sqlite3_vfs_find(std::ptr::null());
        assert!(!orig.is_null());
        let mut vfs = *orig;
        vfs.zName = c"faulty".as_ptr();
        vfs.xOpen = Some(shim_open);
        let _ = SHIM.set(Shim {
            real_open: (*orig).xOpen.unwrap(),
            orig_vfs: orig as usize,
            tables: std::sync::Mutex::new(Vec::new()),
        });
        let vfs = Box::leak(Box::new(vfs));
        assert_eq!(ffi::sqlite3_vfs_register(vfs, 1), ffi::SQLITE_OK);
    });
}

fn arm(fail_at: u64, code: c_int) {
    CALLS.store(0, Ordering::SeqCst);
    CODE.store(code, Ordering::SeqCst);
    FAIL_AT.store(fail_at, Ordering::SeqCst);
    ARMED.store(1, Ordering::SeqCst);
}

fn disarm() -> u64 {
    ARMED.store(0, Ordering::SeqCst);
    CALLS.load(Ordering::SeqCst)
}

fn config(root: &Path) -> Config {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 512;
    c
}

const KEYS: [&str; 4] = ["odds:k0", "odds:k1", "odds:k2", "odds:k3"];

fn old(i: usize) -> Vec<u8> {
    common::noise(i as u64, if i == 3 { 100 } else { 3000 })
}
fn new(i: usize) -> Vec<u8> {
    common::noise(500 + i as u64, 4000)
}

type Run = fn(&Cache) -> freshcache::Result<()>;

/// (name, operation, keys it may change and to what: None = removed).
/// (name, operation, the keys it may change and to what, all-or-nothing).
type Case = (&'static str, Run, Vec<(usize, Option<Vec<u8>>)>, bool);

fn ops() -> Vec<Case> {
    vec![
        (
            "put",
            |c| c.put("odds:new", &new(9), Put::default()).map(drop),
            vec![],
            false,
        ),
        (
            "put_many",
            |c| {
                let (a, b) = (new(0), new(9));
                c.put_many(&[
                    ("odds:k0", &a[..], Put::default()),
                    ("odds:new", &b[..], Put::default()),
                ])
                .map(drop)
            },
            vec![(0, Some(new(0)))],
            true,
        ),
        (
            "overwrite",
            |c| c.put("odds:k1", &new(1), Put::default()).map(drop),
            vec![(1, Some(new(1)))],
            false,
        ),
        (
            "delete",
            |c| c.delete("odds:k2").map(drop),
            vec![(2, None)],
            false,
        ),
        (
            "invalidate",
            |c| c.invalidate("odds:*").map(drop),
            (0..4).map(|i| (i, None)).collect(),
            true,
        ),
        (
            "evict",
            |c| c.evict_to_bytes(0).map(drop),
            (0..4).map(|i| (i, None)).collect(),
            false,
        ),
        (
            "gc",
            |c| c.gc_with(Some(Duration::ZERO), None).map(drop),
            vec![],
            false,
        ),
    ]
}

fn run_once(
    name: &str,
    op: Run,
    may: &[(usize, Option<Vec<u8>>)],
    atomic: bool,
    n: u64,
    code: c_int,
) -> (u64, bool) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = Cache::with_config(config(root)).unwrap();
    for (i, k) in KEYS.iter().enumerate() {
        cache.put(k, &old(i), Put::default()).unwrap();
    }
    cache.flush().unwrap();
    arm(n, code);
    let result = op(&cache);
    let calls = disarm();
    drop(cache);
    let label = format!("{name} with SQLite I/O call {n} failing ({code})");
    let cache = Cache::with_config(config(root)).unwrap();
    let mut changed = Vec::new();
    for (i, k) in KEYS.iter().enumerate() {
        let got = cache
            .get(k)
            .unwrap_or_else(|e| panic!("{label}: {k}: {e:#}"));
        let unchanged = got.as_deref() == Some(&old(i)[..]);
        let allowed = may
            .iter()
            .any(|(j, v)| *j == i && v.as_deref() == got.as_deref());
        assert!(
            unchanged || allowed,
            "{label}: {k} holds neither its old nor its new value"
        );
        if result.is_ok()
            && allowed != unchanged
            && name != "evict"
            && may.iter().any(|(j, _)| *j == i)
        {
            assert!(!unchanged, "{label}: the op succeeded, so {k} changed");
        }
        changed.push((i, !unchanged));
    }
    let fresh = cache.get("odds:new").unwrap();
    assert!(
        fresh.is_none() || fresh.as_deref() == Some(&new(9)[..]),
        "{label}: odds:new"
    );
    if name.starts_with("put") && result.is_ok() {
        assert!(fresh.is_some(), "{label}: an acknowledged put is there");
    }
    if atomic {
        let touched: Vec<bool> = changed
            .iter()
            .filter(|(i, _)| may.iter().any(|(j, _)| j == i))
            .map(|(_, c)| *c)
            .collect();
        assert!(
            touched.iter().all(|c| *c) || touched.iter().all(|c| !*c),
            "{label}: all or nothing: {changed:?}"
        );
        if name == "put_many" {
            assert_eq!(changed[0].1, fresh.is_some(), "{label}: one transaction");
        }
    }
    let r = cache.verify(false, None).unwrap();
    assert!(r.is_clean(), "{label}: {:?}", r.problems);
    (calls, result.is_ok())
}

#[test]
fn every_sqlite_io_failure_point_leaves_old_or_new_and_a_clean_root() {
    install();
    let mut swept = 0u64;
    let mut errors = 0u64;
    for (name, op, may, atomic) in ops() {
        let (points, ok) = run_once(name, op, &may, atomic, 0, 0);
        assert!(ok, "{name} runs clean without faults");
        for code in [ffi::SQLITE_FULL, ffi::SQLITE_IOERR_WRITE] {
            for n in 1..=points {
                let (_, ok) = run_once(name, op, &may, atomic, n, code);
                swept += 1;
                errors += u64::from(!ok);
            }
        }
        eprintln!("{name}: {points} SQLite write/sync/truncate failure points");
    }
    eprintln!("swept {swept} (failure point, error) runs; {errors} operations reported an error");
    assert!(swept >= 20, "a real sweep: {swept}");
}
