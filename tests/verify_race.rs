//! `verify` beside running writers reports nothing on a healthy root: rows
//! and totals are read in one snapshot, and a blob that looks missing or
//! bad is checked again under the write lock before it is reported.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use freshcache::{Cache, Config, Put};

fn open(root: &std::path::Path) -> Cache {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 512; // most values are files: releases unlink them
    Cache::with_config(c).unwrap()
}

#[test]
fn verify_beside_writers_reports_no_false_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (root, stop, puts) = (root.clone(), stop.clone(), puts.clone());
        writers.push(std::thread::spawn(move || {
            let cache = open(&root);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("odds:w{w}:{}", n % 16);
                // New content every time: the old blob is released and unlinked.
                cache
                    .put(
                        &key,
                        &common::noise(w << 32 | n, 600 + (n % 7) as usize * 300),
                        Put::default(),
                    )
                    .unwrap();
                puts.fetch_add(1, Ordering::Relaxed);
                if n % 5 == 0 {
                    cache
                        .delete(&format!("odds:w{w}:{}", (n + 3) % 16))
                        .unwrap();
                }
                if n % 11 == 0 {
                    cache.invalidate(&format!("odds:w{w}:1*")).unwrap();
                }
                n += 1;
            }
            n
        }));
    }
    let janitor = {
        let (root, stop) = (root.clone(), stop.clone());
        std::thread::spawn(move || {
            let cache = open(&root);
            while !stop.load(Ordering::Relaxed) {
                cache.evict_with(Some(40_000), None).unwrap();
                cache.gc_with(Some(Duration::ZERO), None).unwrap();
            }
        })
    };
    let cache = open(&root);
    let mut false_reports = Vec::new();
    // At least 60 verifies, and keep verifying until the writers have made
    // 300 puts: on a loaded 2-core machine the writers can be starved, and a
    // count of verifies alone would end the race before it ran (CI saw 58
    // puts in 60 verifies). The deadline only bounds a wedged run.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut verifies = 0;
    while verifies < 60
        || (puts.load(Ordering::Relaxed) < 300 && std::time::Instant::now() < deadline)
    {
        let r = cache.verify(false, None).unwrap();
        if !r.is_clean() {
            false_reports.push(r.problems);
        }
        verifies += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    janitor.join().unwrap();
    assert!(
        writes >= 300,
        "the writers ran meanwhile ({writes} puts in {verifies} verifies)"
    );
    assert!(false_reports.is_empty(), "false reports: {false_reports:?}");
    let r = cache.verify(false, None).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// `verify --repair` beside running writers repairs nothing on a healthy
/// root and never drops an acknowledged value: every key holds the last
/// value its writer put.
#[test]
fn repair_beside_writers_drops_no_acknowledged_value() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (root, stop, puts) = (root.clone(), stop.clone(), puts.clone());
        writers.push(std::thread::spawn(move || {
            let cache = open(&root);
            let mut last = std::collections::HashMap::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("news:w{w}:{}", n % 8);
                let value = common::noise(w << 32 | n, 700 + (n % 5) as usize * 200);
                cache.put(&key, &value, Put::default()).unwrap();
                last.insert(key, value);
                puts.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            last
        }));
    }
    let cache = open(&root);
    let mut repairs = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut runs = 0;
    while runs < 40 || (puts.load(Ordering::Relaxed) < 200 && std::time::Instant::now() < deadline)
    {
        let r = cache.verify(true, None).unwrap();
        if !r.is_clean() || !r.keys_dropped.is_empty() {
            repairs.push((r.problems, r.keys_dropped));
        }
        runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let lasts: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(repairs.is_empty(), "repairs on a healthy root: {repairs:?}");
    for last in lasts {
        for (key, value) in last {
            let got = cache.get(&key).unwrap();
            assert_eq!(got.as_deref(), Some(&value[..]), "{key} lost or changed");
        }
    }
}
