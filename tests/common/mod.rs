//! Shared test helpers.
#![allow(dead_code)]

use std::path::Path;

use freshcache::{Cache, Config, ManualClock};

/// A fixed start instant (2027-01-15) so tests never depend on the wall clock.
pub const T0: i64 = 1_800_000_000_000;

/// A cache at `dir` with a manual clock at [`T0`].
pub fn open(dir: &Path) -> (Cache, ManualClock) {
    open_with(dir, |_| {})
}

/// Like [`open`], with a config tweak.
pub fn open_with(dir: &Path, tweak: impl FnOnce(&mut Config)) -> (Cache, ManualClock) {
    let clock = ManualClock::new(T0);
    let mut config = Config::default();
    config.cache.root = dir.to_path_buf();
    tweak(&mut config);
    let cache = Cache::builder()
        .config(config)
        .clock(clock.clone())
        .open()
        .expect("open cache");
    (cache, clock)
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Odds JSON of about `len` bytes (compressible).
pub fn odds_json(game: u32, len: usize) -> Vec<u8> {
    let mut s = format!("{{\"game\":\"g{game}\",\"lines\":[");
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"book\":\"b{i}\",\"home\":-110,\"away\":100,\"total\":47.5}},"
        ));
        i += 1;
    }
    s.push_str("{}]}");
    s.into_bytes()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The blob files of a cache root.
pub fn blob_files(root: &Path) -> Vec<std::path::PathBuf> {
    files_under(&root.join("blobs-v1"))
}

/// Path of an external tool the tests use (nginx, redis-server, promtool).
/// Missing: `None` with a skip line, or a panic under CI, where `.ci/run`
/// installs it and a silent skip would hide a broken install.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required under CI (scripts/test installs it)"
        );
        eprintln!("SKIPPED: {name} not installed (scripts/test installs it)");
    }
    found
}
