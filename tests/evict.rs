//! Eviction order and cap, admission control, gc, verify and repair.

mod common;

use std::time::Duration;

use common::{blob_files, noise, open, open_with};
use freshcache::{Cache, Error, ManualClock, Put};
use proptest::prelude::*;

fn fill(cache: &Cache, clock: &ManualClock, n: u64, size: usize) {
    for i in 0..n {
        cache
            .put(
                &format!("k:{i:04}"),
                &noise(i, size),
                Put::default().ttl(Duration::from_secs(3600)),
            )
            .unwrap();
        clock.advance(Duration::from_millis(10));
    }
}

#[test]
fn under_the_high_watermark_nothing_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    fill(&cache, &clock, 10, 1000);
    let r = cache.evict().unwrap(); // 10 GiB cap
    assert_eq!(r.entries_removed, 0);
    assert_eq!(cache.stats().unwrap().entries, 10);
}

#[test]
fn after_evict_disk_bytes_are_at_most_the_low_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    fill(&cache, &clock, 200, 8192);
    let before = cache.disk_bytes().unwrap();
    let cap = before / 2;
    let r = cache.evict_with(Some(cap), None).unwrap();
    assert!(r.bytes_after <= r.low_watermark_bytes, "{r:?}");
    assert_eq!(r.low_watermark_bytes, (cap as f64 * 0.8) as u64);
    assert!(r.entries_removed > 100 && r.entries_removed < 200, "{r:?}");
    assert_eq!(cache.disk_bytes().unwrap(), r.bytes_after);
    assert_eq!(cache.stats().unwrap().evicted_entries, r.entries_removed);
    assert!(cache.verify(false, None).unwrap().is_clean());
}

#[test]
fn expired_entries_go_first_then_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open_with(dir.path(), |c| {
        c.cache.inline_max.0 = 1024;
        c.cache.lru_precision.0 = Duration::ZERO; // exact to access_flush
    });
    fill(&cache, &clock, 20, 8192);
    // k:0015..0019 expire soon; k:0000..0004 are read recently.
    for i in 15..20 {
        cache
            .put(
                &format!("k:{i:04}"),
                &noise(i, 8192),
                Put::default().ttl(Duration::from_secs(1)),
            )
            .unwrap();
    }
    clock.advance(Duration::from_secs(5));
    for i in 0..5 {
        cache.get(&format!("k:{i:04}")).unwrap().unwrap();
    }
    let per_entry = 8192;
    let target_removed = 8; // 5 expired + 3 LRU
    let cap_bytes = cache.disk_bytes().unwrap() - target_removed * per_entry;
    let r = cache
        .evict_with(Some((cap_bytes as f64 / 0.8) as u64 + 1), None)
        .unwrap();
    assert_eq!(r.expired_removed, 5, "{r:?}");
    let alive: Vec<String> = cache
        .list(None)
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    for i in 15..20 {
        assert!(
            !alive.contains(&format!("k:{i:04}")),
            "expired k:{i} must go first"
        );
    }
    for i in 0..5 {
        assert!(
            alive.contains(&format!("k:{i:04}")),
            "recently read k:{i} must stay"
        );
    }
    // The LRU victims are the oldest unread ones.
    assert!(!alive.contains(&"k:0005".to_string()), "{alive:?}");
    assert!(alive.contains(&"k:0014".to_string()), "{alive:?}");
}

/// With the default `lru_precision` (1 min) a read moves an entry in LRU
/// order only when its recorded last access is at least that old; its hit
/// is counted either way.
#[test]
fn a_read_within_the_lru_precision_leaves_the_entry_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    assert_eq!(
        freshcache::Config::default().cache.lru_precision.0,
        Duration::from_secs(60)
    );
    fill(&cache, &clock, 3, 8192); // k:0000..0002, 10 ms apart
    let last_access = |key: &str| {
        let m = cache.list(Some(key)).unwrap();
        (m[0].last_access, m[0].hits)
    };
    let (put_at, _) = last_access("k:0000");
    clock.advance(Duration::from_secs(30));
    cache.get("k:0000").unwrap().unwrap();
    cache.flush().unwrap();
    assert_eq!(
        last_access("k:0000"),
        (put_at, 1),
        "moved within the precision"
    );
    let one = cache.disk_bytes().unwrap() - 8192;
    let r = cache
        .evict_with(Some((one as f64 / 0.8) as u64 + 1), None)
        .unwrap();
    assert_eq!(r.entries_removed, 1, "{r:?}");
    assert_eq!(cache.get("k:0000").unwrap(), None, "still the least recent");

    // Past the precision the read moves it: k:0001 outlives k:0002.
    clock.advance(Duration::from_secs(60));
    cache.get("k:0001").unwrap().unwrap();
    cache.flush().unwrap();
    assert_eq!(last_access("k:0001"), (cache.now(), 1));
    let one = cache.disk_bytes().unwrap() - 8192;
    let r = cache
        .evict_with(Some((one as f64 / 0.8) as u64 + 1), None)
        .unwrap();
    assert_eq!(r.entries_removed, 1, "{r:?}");
    assert_eq!(cache.get("k:0002").unwrap(), None);
    assert!(cache.get("k:0001").unwrap().is_some());
}

#[test]
fn shared_blobs_survive_while_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let shared = noise(99, 50_000);
    cache.put("old:a", &shared, Put::default()).unwrap();
    clock.advance(Duration::from_secs(1));
    fill(&cache, &clock, 10, 8192);
    cache.put("new:b", &shared, Put::default()).unwrap();
    let before = cache.disk_bytes().unwrap();
    // "old:a" is the least recently used; evicting it frees nothing of the
    // shared blob, which "new:b" (the most recent) still references.
    let r = cache.evict_with(Some(before), None).unwrap();
    assert!(r.entries_removed >= 2, "{r:?}");
    assert_eq!(cache.get("old:a").unwrap(), None);
    assert_eq!(cache.get("new:b").unwrap().unwrap(), shared);
}

#[test]
fn admission_control_rejects_or_evicts_at_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| {
        c.cache.inline_max.0 = 1024;
        c.cache.hard_limit = Some(freshcache::config::Size(400_000));
        c.cache.on_full = freshcache::config::OnFull::Reject;
    });
    let mut rejected = None;
    for i in 0..100 {
        if let Err(e) = cache.put(&format!("k:{i}"), &noise(i, 20_000), Put::default()) {
            rejected = Some(e);
            break;
        }
    }
    assert!(
        matches!(rejected, Some(Error::Full { limit: 400_000, .. })),
        "{rejected:?}"
    );
    assert!(cache.disk_bytes().unwrap() <= 400_000);

    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open_with(dir.path(), |c| {
        c.cache.inline_max.0 = 1024;
        c.cache.hard_limit = Some(freshcache::config::Size(400_000));
    });
    for i in 0..100 {
        cache
            .put(&format!("k:{i}"), &noise(i, 20_000), Put::default())
            .unwrap();
        clock.advance(Duration::from_millis(1));
        assert!(cache.disk_bytes().unwrap() <= 400_000 + 20_000);
    }
    assert!(cache.get("k:99").unwrap().is_some());
    assert!(cache.stats().unwrap().evicted_entries > 0);
}

#[test]
fn gc_removes_old_orphans_and_temp_files_but_not_live_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    cache
        .put("k:live", &noise(1, 10_000), Put::default())
        .unwrap();
    let orphan = freshcache::Digest::of(b"orphan").to_hex();
    let shard = dir.path().join("blobs-v1").join(&orphan[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join(&orphan[2..]), b"orphan bytes").unwrap();
    let crashed = dir.path().join("tmp").join("crashed.tmp");
    std::fs::write(&crashed, b"half a blob").unwrap();
    let in_flight = dir.path().join("tmp").join("in-flight.tmp");
    std::fs::write(&in_flight, b"being written").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&crashed)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    std::fs::write(dir.path().join("blobs-v1").join("README"), b"not ours").unwrap();

    let young = cache
        .gc_with(Some(Duration::from_secs(3 * 3600)), None)
        .unwrap();
    assert_eq!(
        (young.orphan_files_removed, young.temp_files_removed),
        (0, 0),
        "grace protects young files"
    );
    let r = cache.gc_with(Some(Duration::ZERO), None).unwrap();
    assert_eq!(
        (
            r.orphan_files_removed,
            r.temp_files_removed,
            r.foreign_files
        ),
        (1, 1, 1)
    );
    assert_eq!(
        blob_files(dir.path()).len(),
        2,
        "live blob and the foreign file remain"
    );
    assert_eq!(cache.get("k:live").unwrap().unwrap(), noise(1, 10_000));
}

fn damaged_cache() -> (
    tempfile::TempDir,
    Cache,
    freshcache::Digest,
    freshcache::Digest,
) {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let a = cache
        .put("k:a", &noise(1, 10_000), Put::default())
        .unwrap()
        .hash;
    let b = cache
        .put("k:b", &noise(2, 10_000), Put::default())
        .unwrap()
        .hash;
    cache.put("k:c", &noise(3, 10_000), Put::default()).unwrap();
    cache.put("k:d", &noise(4, 10_000), Put::default()).unwrap();
    cache.put("k:e", b"small inline", Put::default()).unwrap();
    (dir, cache, a, b)
}

fn blob_path(root: &std::path::Path, d: &freshcache::Digest) -> std::path::PathBuf {
    let h = d.to_hex();
    root.join("blobs-v1").join(&h[..2]).join(&h[2..])
}

#[test]
fn verify_finds_flipped_truncated_missing_and_wrong_refcounts_and_repair_fixes_them() {
    let (dir, cache, a, b) = damaged_cache();
    assert!(cache.verify(false, None).unwrap().is_clean());
    let pa = blob_path(dir.path(), &a);
    let mut bytes = std::fs::read(&pa).unwrap();
    bytes[10] ^= 0x80;
    std::fs::write(&pa, bytes).unwrap();
    let pb = blob_path(dir.path(), &b);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pb)
        .unwrap()
        .set_len(100)
        .unwrap();
    let c = cache.stat("k:c").unwrap().unwrap().hash;
    std::fs::remove_file(blob_path(dir.path(), &c)).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    let d = cache.stat("k:d").unwrap().unwrap().hash;
    conn.execute("UPDATE blobs SET refs = 7 WHERE hash = ?1", [&d.0[..]])
        .unwrap();
    drop(conn);

    let r = cache.verify(false, None).unwrap();
    let kinds: Vec<String> = r
        .problems
        .iter()
        .map(|p| {
            serde_json::to_value(p).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "corrupt_blob").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "missing_blob").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "wrong_refcount").count(),
        1,
        "{kinds:?}"
    );

    let r = cache.verify(true, None).unwrap();
    let mut dropped = r.keys_dropped.clone();
    dropped.sort();
    assert_eq!(dropped, ["k:a", "k:b", "k:c"]);
    let after = cache.verify(false, None).unwrap();
    assert!(after.is_clean(), "{:?}", after.problems);
    assert_eq!(cache.get("k:d").unwrap().unwrap(), noise(4, 10_000));
    assert_eq!(&cache.get("k:e").unwrap().unwrap()[..], b"small inline");
    assert_eq!(cache.stats().unwrap().entries, 2);
}

/// Replays a random history on `cache`: op 0 puts key `m:<k>` with a TTL
/// of `step * ttl_factor` ms, op 1 gets it and checks the answer against
/// the model, anything else only steps the clock. Returns the model: key →
/// (expires_at, last put or fresh read).
fn replay(
    cache: &Cache,
    clock: &ManualClock,
    ops: &[(u8, u8, u64)],
    ttl_factor: u64,
) -> Result<std::collections::BTreeMap<String, (i64, i64)>, TestCaseError> {
    let mut model: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for &(op, k, step) in ops {
        clock.advance(Duration::from_millis(step));
        let key = format!("m:{k:02}");
        let now = cache.now();
        match op {
            0 => {
                let ttl = Duration::from_millis(step * ttl_factor);
                let value = noise(u64::from(k) * 1_000 + step, 2048);
                cache.put(&key, &value, Put::default().ttl(ttl)).unwrap();
                model.insert(key, (now + ttl.as_millis() as i64, now));
            }
            1 => {
                let got = cache.get(&key).unwrap().is_some();
                let fresh = model.get(&key).is_some_and(|(exp, _)| now < *exp);
                prop_assert_eq!(got, fresh);
                if fresh {
                    model.get_mut(&key).unwrap().1 = now;
                }
            }
            _ => {}
        }
    }
    Ok(model)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random puts, gets and clock steps, then evict to a cap: the entries
    /// removed are exactly a prefix of the model's eviction order (expired
    /// by expiry, then least recently used), and the cap holds.
    #[test]
    fn eviction_order_matches_the_model(
        ops in proptest::collection::vec((0u8..3, 0u8..24, 1u64..5_000), 10..80),
        cap_fraction in 0.2f64..0.9,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (cache, clock) = open_with(dir.path(), |c| {
            c.cache.inline_max.0 = 512;
            c.cache.lru_precision.0 = Duration::ZERO; // exact to access_flush
        });
        let model = replay(&cache, &clock, &ops, 7)?;
        let now = cache.now();
        let mut order: Vec<(&String, &(i64, i64))> = model.iter().collect();
        order.sort_by(|a, b| {
            let (ea, eb) = (a.1 .0 <= now, b.1 .0 <= now);
            eb.cmp(&ea)
                .then_with(|| if ea && eb { a.1 .0.cmp(&b.1 .0) } else { a.1 .1.cmp(&b.1 .1) })
                .then_with(|| a.0.cmp(b.0))
        });
        let cap = (cache.disk_bytes().unwrap() as f64 * cap_fraction) as u64;
        let r = cache.evict_with(Some(cap), None).unwrap();
        prop_assert!(r.bytes_after <= r.low_watermark_bytes.max(r.bytes_after.min(r.high_watermark_bytes)) || r.entries_removed as usize == model.len());
        let alive: std::collections::BTreeSet<String> = cache.list(None).unwrap().into_iter().map(|m| m.key).collect();
        let removed = model.len() - alive.len();
        prop_assert_eq!(removed as u64, r.entries_removed);
        for (i, (key, _)) in order.iter().enumerate() {
            prop_assert_eq!(alive.contains(*key), i >= removed, "key {} at position {} of the model order", key, i);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same random history under a 2 s `lru_precision`: expired entries
    /// still go first by expiry, and among live ones no removed entry was
    /// read more than the precision after an entry that stays.
    #[test]
    fn eviction_order_is_exact_to_the_lru_precision(
        ops in proptest::collection::vec((0u8..3, 0u8..24, 1u64..3_000), 10..80),
        cap_fraction in 0.2f64..0.9,
    ) {
        const PRECISION: i64 = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let (cache, clock) = open_with(dir.path(), |c| {
            c.cache.inline_max.0 = 512;
            c.cache.lru_precision.0 = Duration::from_millis(PRECISION as u64);
        });
        let model = replay(&cache, &clock, &ops, 40)?;
        let now = cache.now();
        let cap = (cache.disk_bytes().unwrap() as f64 * cap_fraction) as u64;
        let r = cache.evict_with(Some(cap), None).unwrap();
        let alive: std::collections::BTreeSet<String> = cache.list(None).unwrap().into_iter().map(|m| m.key).collect();
        prop_assert_eq!((model.len() - alive.len()) as u64, r.entries_removed);
        let (expired, live): (Vec<_>, Vec<_>) = model.iter().partition(|(_, (exp, _))| *exp <= now);
        let gone = |k: &String| !alive.contains(k);
        if live.iter().any(|(k, _)| gone(k)) {
            prop_assert!(expired.iter().all(|(k, _)| gone(k)), "a live entry went before an expired one");
        }
        for (r, (re, _)) in expired.iter().filter(|(k, _)| gone(k)) {
            for (a, (ae, _)) in expired.iter().filter(|(k, _)| !gone(k)) {
                prop_assert!(re <= ae, "expired {} (at {}) went before {} (at {})", r, re, a, ae);
            }
        }
        for (r, (_, ra)) in live.iter().filter(|(k, _)| gone(k)) {
            for (a, (_, aa)) in live.iter().filter(|(k, _)| !gone(k)) {
                prop_assert!(*ra <= aa + PRECISION, "{} read at {} went, {} read at {} stayed", r, ra, a, aa);
            }
        }
    }
}

#[test]
fn two_evictors_at_once_neither_double_free_nor_corrupt_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    // Half the blobs shared by two keys, so a double release would show.
    for i in 0..300u64 {
        let v = noise(i / 2, 3000);
        cache.put(&format!("k:{i:04}"), &v, Put::default()).unwrap();
        clock.advance(Duration::from_millis(1));
    }
    let target = cache.disk_bytes().unwrap() / 3;
    let (a, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let (b, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    std::thread::scope(|s| {
        s.spawn(|| a.evict_to_bytes(target).unwrap());
        s.spawn(|| b.evict_to_bytes(target).unwrap());
    });
    let r = cache.verify(false, None).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert!(cache.disk_bytes().unwrap() <= target);
    let s = cache.stats().unwrap();
    assert_eq!(s.entries as usize, cache.list(None).unwrap().len());
    assert_eq!(s.evicted_entries, 300 - s.entries);
    for m in cache.list(None).unwrap() {
        assert!(
            cache.get(&m.key).unwrap().is_some(),
            "{} survives whole",
            m.key
        );
    }
}
