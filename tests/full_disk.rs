//! A full disk, for real: a small tmpfs (mounted by the test, which needs
//! root; without it the test says so and skips) filled to the last byte.
//! Opening writes nothing, reads work, and `rm`, `invalidate` and `evict`
//! free space (the reserve gives SQLite room for its WAL and shm files).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use freshcache::{Cache, Config, Put};

/// A tmpfs of `mib` MiB, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn config(root: &Path) -> Config {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 4096; // inline and file blobs
    c
}

/// Writes a filler file outside the root until the file system refuses.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filled until ENOSPC: {e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    path
}

fn cli(root: &Path, args: &[&str]) -> (i32, String, String) {
    let (code, out, err) = cli_bytes(root, args);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

fn cli_bytes(root: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_freshcache"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("FRESHCACHE_CACHE_INLINE_MAX", "4KiB")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count(json: &str) -> usize {
    serde_json::from_str::<Vec<serde_json::Value>>(json)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

fn free_bytes(p: &Path) -> u64 {
    let s = rustix::fs::statvfs(p).unwrap();
    s.f_bavail * s.f_frsize
}

#[test]
fn a_full_disk_still_reads_and_frees_space() {
    let Some(fs) = Tmpfs::mount(24) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); see tests/faults.rs for ENOSPC by injection");
        return;
    };
    let root = fs.path().join("cache");
    {
        let cache = Cache::with_config(config(&root)).unwrap();
        for i in 0..200u64 {
            let len = if i % 2 == 0 { 2_000 } else { 20_000 };
            let class = if i < 100 { "news:a" } else { "news:b" };
            cache
                .put(
                    &format!("{class}:{i}"),
                    &common::noise(i, len),
                    Put::default(),
                )
                .unwrap();
        }
    }
    let filler = fill(fs.path());
    assert!(free_bytes(fs.path()) < 8192, "the disk is full");

    // Reads, listings and stats on a full disk.
    let (code, out, err) = cli_bytes(&root, &["get", "news:a:1"]);
    assert_eq!(code, 0, "get on a full disk: {err}");
    assert!(out == common::noise(1, 20_000), "the value, byte for byte");
    let (code, out, err) = cli(&root, &["ls", "news:*", "--json"]);
    assert_eq!((code, count(&out)), (0, 200), "ls: {err}");
    let (code, _, err) = cli(&root, &["stats", "--json"]);
    assert_eq!(code, 0, "stats: {err}");
    let (code, _, err) = cli(&root, &["verify"]);
    assert_eq!(code, 0, "verify: {err}");
    let (code, _, err) = cli(&root, &["gc", "--grace", "0s"]);
    assert_eq!(code, 0, "gc: {err}");

    // A put is refused as a storage failure (6), never a miss, and loses nothing.
    let big = common::noise(9999, 3 << 20);
    let input = fs.path().join("input");
    let _ = std::fs::remove_file(&input);
    // (the input lives on another file system: /proc/self/fd/0 via stdin)
    let out = Command::new(env!("CARGO_BIN_EXE_freshcache"))
        .arg("--root")
        .arg(&root)
        .args(["put", "news:a:1", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&big)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out, _) = cli_bytes(&root, &["get", "news:a:1"]);
    assert!(
        code == 0 && out == common::noise(1, 20_000),
        "old value kept"
    );

    // Space is freed by rm, invalidate and evict, full disk or not.
    let (code, _, err) = cli(&root, &["rm", "news:a:1"]);
    assert_eq!(code, 0, "rm on a full disk: {err}");
    let (code, out, err) = cli(&root, &["invalidate", "news:a:*", "--json"]);
    assert_eq!(code, 0, "invalidate on a full disk: {err}");
    assert!(
        out.contains("\"removed\":99") || out.contains("\"removed\": 99"),
        "{out}"
    );
    std::fs::remove_file(&filler).unwrap();
    let _ = fill(fs.path());
    let (code, _, err) = cli(&root, &["evict", "--max-size", "100KiB"]);
    assert_eq!(code, 0, "evict on a full disk: {err}");
    let (code, out, _) = cli(&root, &["ls", "--json"]);
    assert_eq!(code, 0);
    assert!(count(&out) < 20, "evicted down to the cap: {out}");
    let blob_files = common::files_under(&root.join("blobs-v1")).len();
    assert!(
        blob_files < 20,
        "evicted files are unlinked: {blob_files} left"
    );
    let (code, _, err) = cli(&root, &["verify"]);
    assert_eq!(code, 0, "verify clean after all that: {err}");
    // The reserve is whole again once there is room.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let (code, _, _) = cli(&root, &["stats"]);
    assert_eq!(code, 0);
    let chunks = std::fs::read_dir(root.join("reserve")).unwrap().count();
    assert_eq!(chunks, 8, "reserve recreated");
}

/// Opening an index at the current schema version writes nothing: no WAL
/// frame appears while the cache is open and unused (the old open rewrote
/// `PRAGMA user_version` every time).
#[test]
fn opening_an_existing_index_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    {
        let cache = Cache::with_config(config(&root)).unwrap();
        cache.put("news:a:1", b"one", Put::default()).unwrap();
    }
    let index = root.join("index.sqlite");
    let before = std::fs::read(&index).unwrap();
    let cache = Cache::with_config(config(&root)).unwrap();
    let wal = std::fs::metadata(root.join("index.sqlite-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0, "no WAL frames written by opening");
    assert!(
        std::fs::read(&index).unwrap() == before,
        "the index file is untouched"
    );
    drop(cache);
}
