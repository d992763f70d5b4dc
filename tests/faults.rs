//! Fault injection over the blob files: every file-system call of put,
//! put_many, overwrite, delete, invalidate, evict and gc is made to fail in
//! turn (ENOSPC, EIO, EINTR), each followed by a reopen: every key holds
//! its old value or its new one — never neither, never corrupt — and
//! `verify` is clean. An injected EINTR is retried and changes nothing.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use freshcache::{Cache, Config, Put};

/// Fails the `fail_at`-th call (counted from the last `arm`) with `errno`.
#[derive(Default)]
struct Plan {
    calls: AtomicU64,
    fail_at: AtomicU64,
    errno: AtomicI32,
    failed: AtomicU64,
}

impl Plan {
    fn arm(&self, fail_at: u64, errno: i32) {
        self.calls.store(0, Ordering::SeqCst);
        self.failed.store(0, Ordering::SeqCst);
        self.errno.store(errno, Ordering::SeqCst);
        self.fail_at.store(fail_at, Ordering::SeqCst);
    }
    fn hook(self: &Arc<Self>) -> Arc<dyn Fn(&'static str) -> Option<std::io::Error> + Send + Sync> {
        let plan = self.clone();
        Arc::new(move |_op| {
            let n = plan.calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n == plan.fail_at.load(Ordering::SeqCst)).then(|| {
                plan.failed.fetch_add(1, Ordering::SeqCst);
                std::io::Error::from_raw_os_error(plan.errno.load(Ordering::SeqCst))
            })
        })
    }
}

fn config(root: &Path) -> Config {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 512; // file blobs, plus one inline value
    c
}

const KEYS: [&str; 5] = ["odds:k0", "odds:k1", "odds:k2", "odds:k3", "odds:k4"];

fn old(i: usize) -> Vec<u8> {
    let len = if i == 4 { 100 } else { 3000 + i * 100 };
    common::noise(i as u64, len)
}

fn new(i: usize) -> Vec<u8> {
    common::noise(1000 + i as u64, 4000 + i * 10)
}

/// The state every run starts from, plus an orphan file for gc.
fn setup(cache: &Cache, root: &Path) {
    for (i, k) in KEYS.iter().enumerate() {
        cache.put(k, &old(i), Put::default()).unwrap();
    }
    let orphan = root.join("blobs-v1").join("ee").join("e".repeat(62));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(orphan, b"orphan").unwrap();
}

/// One operation; what each key may hold afterwards (`None` = absent).
struct Op {
    name: &'static str,
    run: fn(&Cache) -> freshcache::Result<()>,
    /// For key i: the allowed outcomes besides "unchanged".
    after: fn(usize) -> Vec<Option<Vec<u8>>>,
    /// All keys change together or none does.
    atomic: bool,
}

fn ops() -> Vec<Op> {
    vec![
        Op {
            name: "put",
            run: |c| c.put("odds:new", &new(9), Put::default()).map(drop),
            after: |_| vec![],
            atomic: false,
        },
        Op {
            name: "put_many",
            run: |c| {
                let (a, b) = (new(0), new(9));
                c.put_many(&[
                    ("odds:k0", &a[..], Put::default()),
                    ("odds:new", &b[..], Put::default()),
                ])
                .map(drop)
            },
            after: |i| if i == 0 { vec![Some(new(0))] } else { vec![] },
            atomic: true,
        },
        Op {
            name: "overwrite",
            run: |c| c.put("odds:k1", &new(1), Put::default()).map(drop),
            after: |i| if i == 1 { vec![Some(new(1))] } else { vec![] },
            atomic: false,
        },
        Op {
            name: "delete",
            run: |c| c.delete("odds:k2").map(drop),
            after: |i| if i == 2 { vec![None] } else { vec![] },
            atomic: false,
        },
        Op {
            name: "invalidate",
            run: |c| c.invalidate("odds:*").map(drop),
            after: |_| vec![None],
            atomic: true,
        },
        Op {
            name: "evict",
            run: |c| c.evict_to_bytes(0).map(drop),
            after: |_| vec![None],
            atomic: false,
        },
        Op {
            name: "gc",
            run: |c| c.gc_with(Some(Duration::ZERO), None).map(drop),
            after: |_| vec![],
            atomic: false,
        },
    ]
}

/// Runs `op` with the `n`-th call failing (0: none); returns (calls made,
/// the op's result) after checking the reopened root.
fn run_once(op: &Op, n: u64, errno: i32) -> (u64, bool) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let plan = Arc::new(Plan::default());
    let cache = Cache::builder()
        .config(config(root))
        .blob_io_hook(plan.hook())
        .open()
        .unwrap();
    setup(&cache, root);
    plan.arm(n, errno);
    let result = (op.run)(&cache);
    let calls = plan.calls.load(Ordering::SeqCst);
    plan.arm(0, 0);
    drop(cache);

    let label = format!("{} with call {n} failing ({errno})", op.name);
    if errno == rustix::io::Errno::INTR.raw_os_error() {
        assert!(
            result.is_ok(),
            "{label}: EINTR is retried: {:?}",
            result.err()
        );
    }
    let cache = Cache::with_config(config(root)).unwrap();
    let mut changed = Vec::new();
    for (i, k) in KEYS.iter().enumerate() {
        let got = cache.get(k).unwrap_or_else(|e| panic!("{label}: {k}: {e}"));
        let unchanged = got.as_deref() == Some(&old(i)[..]);
        let allowed = (op.after)(i).iter().any(|a| a.as_deref() == got.as_deref());
        assert!(
            unchanged || allowed,
            "{label}: {k} holds neither its old nor its new value"
        );
        if result.is_ok() && !(op.after)(i).is_empty() && op.name != "evict" {
            assert!(!unchanged, "{label}: the op succeeded, so {k} changed");
        }
        changed.push(!unchanged);
    }
    let fresh = cache.get("odds:new").unwrap();
    assert!(
        fresh.is_none() || fresh.as_deref() == Some(&new(9)[..]),
        "{label}: odds:new is absent or new"
    );
    if op.name.starts_with("put") && result.is_ok() {
        assert!(fresh.is_some(), "{label}: an acknowledged put is there");
    }
    if op.atomic {
        let touched: Vec<bool> = changed
            .iter()
            .enumerate()
            .filter(|(i, _)| !(op.after)(*i).is_empty())
            .map(|(_, c)| *c)
            .collect();
        let all_or_none = touched.iter().all(|c| *c) || touched.iter().all(|c| !*c);
        assert!(all_or_none, "{label}: all or nothing, got {changed:?}");
        if op.name == "put_many" {
            assert_eq!(
                changed[0],
                fresh.is_some(),
                "{label}: put_many is one transaction"
            );
        }
    }
    let r = cache.verify(false, None).unwrap();
    assert!(r.is_clean(), "{label}: {:?}", r.problems);
    (calls, result.is_ok())
}

#[test]
fn every_blob_io_failure_point_leaves_old_or_new_and_a_clean_root() {
    let errnos = [
        rustix::io::Errno::NOSPC.raw_os_error(),
        rustix::io::Errno::IO.raw_os_error(),
        rustix::io::Errno::INTR.raw_os_error(),
    ];
    let mut swept = 0u64;
    let mut failed_ops = 0u64;
    for op in ops() {
        let (points, ok) = run_once(&op, 0, 0);
        assert!(ok, "{} runs clean without faults", op.name);
        assert!(
            points > 0 || op.name == "invalidate" || op.name == "delete",
            "{} makes file calls",
            op.name
        );
        for &errno in &errnos {
            for n in 1..=points {
                let (_, ok) = run_once(&op, n, errno);
                swept += 1;
                failed_ops += u64::from(!ok);
            }
        }
        eprintln!("{}: {points} blob I/O failure points", op.name);
    }
    eprintln!(
        "swept {swept} (failure point, errno) runs; {failed_ops} operations reported an error"
    );
    assert!(swept >= 60, "a real sweep: {swept}");
}
