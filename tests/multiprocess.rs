//! Several processes on one root: puts, gets and deletes from two processes
//! lose nothing and never read a torn value; a writer next to an evict+gc
//! loop ends with a clean verify. Children are this test binary re-run with
//! FC_WORKER set.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use freshcache::{Cache, Config, Put};

/// A value that carries its own identity, so a reader can tell a torn or
/// mixed-up value from a good one.
fn value(worker: u64, key: u64, version: u64) -> Vec<u8> {
    let mut v = format!("{worker}:{key}:{version}:").into_bytes();
    v.resize(32, b' ');
    let len = 500 + ((key * 7919 + version * 104_729) % 20_000) as usize;
    v.extend(common::noise(worker << 40 | key << 20 | version, len));
    v
}

fn check(bytes: &[u8]) {
    let head = String::from_utf8_lossy(&bytes[..32]).to_string();
    let f: Vec<u64> = head
        .trim()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        bytes,
        &value(f[0], f[1], f[2])[..],
        "torn or mismatched value for {head}"
    );
}

fn open(root: &Path) -> Cache {
    let mut config = Config::default();
    config.cache.root = root.to_path_buf();
    config.cache.inline_max.0 = 4096; // a mix of inline and file blobs
    Cache::with_config(config).unwrap()
}

/// The worker body, run in child processes by the tests below.
#[test]
#[ignore = "child-process entry point, started by the multi-process tests"]
fn worker() {
    let spec = std::env::var("FC_WORKER").expect("FC_WORKER names the role");
    let parts: Vec<&str> = spec.split(',').collect();
    let (role, root, id, rounds): (&str, &Path, u64, u64) = (
        parts[0],
        Path::new(parts[1]),
        parts[2].parse().unwrap(),
        parts[3].parse().unwrap(),
    );
    let cache = open(root);
    match role {
        "writer" => {
            for round in 0..rounds {
                for key in 0..20u64 {
                    let k = format!("w{id}:k{key}");
                    cache
                        .put(&k, &value(id, key, round), Put::default())
                        .unwrap();
                    // Same content under a shared key: exercises dedup re-use.
                    cache
                        .put(&format!("shared:k{key}"), &value(9, key, 0), Put::default())
                        .unwrap();
                    let other = format!("w{}:k{}", 1 - id.min(1), (key + 5) % 20);
                    if let Some(b) = cache.get(&other).unwrap() {
                        check(&b);
                    }
                    if key % 7 == 3 {
                        cache.delete(&format!("w{id}:k{}", (key + 1) % 20)).unwrap();
                    }
                }
            }
            // Final state: every key written once more with a final version.
            for key in 0..20u64 {
                cache
                    .put(
                        &format!("w{id}:k{key}"),
                        &value(id, key, 1_000_000),
                        Put::default(),
                    )
                    .unwrap();
            }
        }
        "janitor" => {
            for _ in 0..rounds {
                cache.evict_with(Some(400_000), None).unwrap();
                cache.gc_with(Some(Duration::ZERO), None).unwrap();
                for key in 0..20u64 {
                    if let Some(b) = cache.get(&format!("w0:k{key}")).unwrap() {
                        check(&b);
                    }
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, root: &Path, id: u64, rounds: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "FC_WORKER",
            format!("{role},{},{id},{rounds}", root.display()),
        )
        .spawn()
        .unwrap()
}

#[test]
fn two_writer_processes_lose_nothing_and_never_read_torn_values() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn("writer", dir.path(), 0, 30);
    let b = spawn("writer", dir.path(), 1, 30);
    for mut c in [a, b] {
        assert!(c.wait().unwrap().success(), "a worker failed");
    }
    let cache = open(dir.path());
    for id in 0..2u64 {
        for key in 0..20u64 {
            let got = cache
                .get(&format!("w{id}:k{key}"))
                .unwrap()
                .expect("final write present");
            assert_eq!(got[..], value(id, key, 1_000_000)[..]);
        }
    }
    let r = cache.verify(false, None).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

#[test]
fn a_writer_beside_an_evict_and_gc_loop_ends_clean() {
    let dir = tempfile::tempdir().unwrap();
    let w = spawn("writer", dir.path(), 0, 40);
    let j = spawn("janitor", dir.path(), 0, 60);
    for mut c in [w, j] {
        assert!(c.wait().unwrap().success(), "a worker failed");
    }
    let cache = open(dir.path());
    let r = cache.verify(false, None).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    let mut present = 0;
    for key in 0..20u64 {
        if let Some(got) = cache.get(&format!("w0:k{key}")).unwrap() {
            assert_eq!(
                got[..],
                value(0, key, 1_000_000)[..],
                "a present key holds its last write"
            );
            present += 1;
        }
    }
    assert!(present > 0, "eviction left none of the final writes");
}
