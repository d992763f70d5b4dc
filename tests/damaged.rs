//! A damaged index: truncated to 90/50/10% or to nothing. Commands refuse
//! with a storage error (6) whose message names the recovery, `verify`
//! reports it as corruption (4), and `freshcache recover` rebuilds what can
//! be verified — never a byte that cannot.

mod common;

use std::path::Path;
use std::process::Command;

use freshcache::{Cache, Config, Put};

const KEYS: u64 = 1500;

fn value(i: u64) -> Vec<u8> {
    let len = if i % 3 == 0 { 3000 } else { 300 };
    common::noise(i, len)
}

fn cli(root: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_freshcache"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("FRESHCACHE_CACHE_INLINE_MAX", "1KiB")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A healthy root with KEYS entries, cleanly closed.
fn build(root: &Path) {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 1024;
    let cache = Cache::with_config(c).unwrap();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let values: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|&i| (format!("news:src:{i:05}"), value(i)))
            .collect();
        let items: Vec<(&str, &[u8], Put)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), &v[..], Put::default()))
            .collect();
        cache.put_many(&items).unwrap();
    }
}

fn copy_root(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn truncate(root: &Path, percent: u64) {
    let p = root.join("index.sqlite");
    assert!(!root.join("index.sqlite-wal").exists(), "cleanly closed");
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len * percent / 100).unwrap();
}

fn check_damaged_then_recover(root: &Path, label: &str) -> u64 {
    let (code, out, err) = cli(root, &["get", "news:src:00001"]);
    assert_eq!(
        code, 6,
        "{label}: get on a damaged index is a storage error: {err}"
    );
    assert!(out.is_empty(), "{label}: nothing served");
    assert!(
        err.contains("freshcache recover"),
        "{label}: the message names the recovery: {err}"
    );
    let (code, _, err) = cli(root, &["ls"]);
    assert_eq!(code, 6, "{label}: ls: {err}");
    let (code, out, err) = cli(root, &["verify", "--json"]);
    assert_eq!(code, 4, "{label}: verify reports corruption: {err}");
    assert!(
        String::from_utf8_lossy(&out).contains("damaged_index"),
        "{label}"
    );

    let (code, out, err) = cli(root, &["recover", "--json"]);
    assert_eq!(code, 0, "{label}: recover: {err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let (code, out, err) = cli(root, &["verify"]);
    assert_eq!(
        code,
        0,
        "{label}: clean after recovery: {err} {}",
        String::from_utf8_lossy(&out)
    );
    // Every key still served has exactly its bytes.
    let cache = Cache::open(root).unwrap();
    let mut served = 0;
    for i in 0..KEYS {
        if let Some(v) = cache.get(&format!("news:src:{i:05}")).unwrap() {
            assert!(v[..] == value(i)[..], "{label}: wrong bytes for key {i}");
            served += 1;
        }
    }
    assert_eq!(
        served,
        report["entries_kept"].as_u64().unwrap(),
        "{label}: the report counts what is served"
    );
    eprintln!("{label}: {served} of {KEYS} keys recovered");
    served
}

#[test]
fn a_truncated_index_is_refused_reported_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("healthy");
    build(&healthy);
    for percent in [90, 50, 10] {
        let root = dir.path().join(format!("cut{percent}"));
        copy_root(&healthy, &root);
        truncate(&root, percent);
        let served = check_damaged_then_recover(&root, &format!("{percent}%"));
        if percent == 90 {
            assert!(served > KEYS / 2, "most rows survive a 10% cut: {served}");
        }
    }
}

#[test]
fn an_emptied_index_does_not_open_silently_empty() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    build(&root);
    truncate(&root, 0);
    let (code, _, err) = cli(&root, &["ls"]);
    assert_eq!(
        code, 6,
        "an emptied index is refused, not an empty cache: {err}"
    );
    assert!(err.contains("freshcache recover"), "{err}");
    let (code, _, err) = cli(&root, &["put", "news:src:new", "-"]);
    assert_eq!(code, 6, "nothing is written over it: {err}");
    check_damaged_then_recover(&root, "0%");
    let (code, _, err) = cli(&root, &["ls"]);
    assert!(code == 0, "usable again after recovery: {err}");
}

#[test]
fn recover_on_a_healthy_root_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    build(&root);
    let (code, out, err) = cli(&root, &["recover", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["entries_kept"].as_u64(), Some(KEYS), "{report}");
    assert_eq!(report["entries_dropped"].as_u64(), Some(0), "{report}");
    let (code, _, err) = cli(&root, &["verify"]);
    assert_eq!(code, 0, "{err}");
    let cache = Cache::open(&root).unwrap();
    for i in (0..KEYS).step_by(7) {
        let v = cache
            .get(&format!("news:src:{i:05}"))
            .unwrap()
            .expect("kept");
        assert!(v[..] == value(i)[..], "key {i}");
    }
}

/// `recover` never rebuilds an index under a running process: while a
/// cache is open on the root it refuses (exit 6) and changes nothing; once
/// the process is gone it runs.
#[test]
fn recover_refuses_while_another_process_has_the_root_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    build(&root);
    let mut c = Config::default();
    c.cache.root = root.clone();
    let open = Cache::with_config(c).unwrap();
    let before = std::fs::read(root.join("index.sqlite")).unwrap();
    let (code, _, err) = cli(&root, &["recover"]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("another process has this cache root open"),
        "{err}"
    );
    assert_eq!(std::fs::read(root.join("index.sqlite")).unwrap(), before);
    assert!(open.get("odds:k:1").is_ok());
    drop(open);
    let (code, _, err) = cli(&root, &["recover"]);
    assert_eq!(code, 0, "{err}");
}
