//! Memory is bounded whatever a frame or a row claims: a small zstd frame
//! that really expands to 1 GiB, under a row that claims that size, costs
//! neither `get` nor `verify` more than 64 MiB of RSS (it is refused as
//! corrupt). Peak RSS is the child's `ru_maxrss` as `wait4` reports it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use freshcache::{Cache, Config, Put};

const CLAIMED: u64 = 1 << 30;

/// A root whose one file blob is a ~32 KB frame of 1 GiB of zeros, its row
/// claiming that size (the hash is the original value's: it cannot match).
fn crafted(root: &Path) {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 1024;
    let cache = Cache::with_config(c).unwrap();
    let stored = cache
        .put(
            "llm:features:c1:d1",
            &common::noise(7, 50_000),
            Put::default(),
        )
        .unwrap();
    drop(cache);
    let hex = stored.hash.to_hex();
    let file = root.join("blobs-v1").join(&hex[..2]).join(&hex[2..]);
    let mut enc = zstd::stream::Encoder::new(std::fs::File::create(&file).unwrap(), 1).unwrap();
    enc.set_pledged_src_size(Some(CLAIMED)).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(CLAIMED >> 20) {
        enc.write_all(&zeros).unwrap();
    }
    enc.finish().unwrap();
    let frame_len = std::fs::metadata(&file).unwrap().len();
    assert!(frame_len < 200_000, "a small frame: {frame_len}");
    let db = rusqlite::Connection::open(root.join("index.sqlite")).unwrap();
    db.execute(
        "UPDATE blobs SET size = ?1, stored_size = ?2, codec = 1",
        [CLAIMED as i64, frame_len as i64],
    )
    .unwrap();
}

/// Runs the CLI and returns (exit code, peak RSS in bytes). The peak is
/// the kernel's account at reaping (`wait4`), not a poll of
/// `/proc/<pid>/status`, which a child that exits quickly never shows. It
/// is an upper bound: the kernel counts the peak of the spawning process's
/// memory image before `exec` too, and this test process stays small.
fn run_measured(root: &Path, args: &[&str]) -> (i32, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_freshcache"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our unreaped child; both pointers are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "wait4: {e}");
    }
    // Reaped here: dropping `child` neither waits nor kills.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let peak = u64::try_from(usage.ru_maxrss).unwrap() * 1024; // KiB on Linux
    (code, peak)
}

#[test]
fn a_frame_claiming_a_gibibyte_costs_get_and_verify_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("get");
    crafted(&root);
    let (code, peak) = run_measured(&root, &["get", "llm:features:c1:d1"]);
    eprintln!("get: exit {code}, peak RSS {} MiB", peak >> 20);
    assert_eq!(code, 1, "refused as corrupt (quarantined miss)");
    assert!(
        peak > 0 && peak < 64 << 20,
        "get peak RSS {} MiB",
        peak >> 20
    );

    let root = dir.path().join("verify");
    crafted(&root);
    let (code, peak) = run_measured(&root, &["verify"]);
    eprintln!("verify: exit {code}, peak RSS {} MiB", peak >> 20);
    assert_eq!(code, 4, "reported as corrupt");
    assert!(
        peak > 0 && peak < 64 << 20,
        "verify peak RSS {} MiB",
        peak >> 20
    );
}
