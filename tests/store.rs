//! The core store: round trips, TTLs, dedup, files vs inline, statistics,
//! threads. Corruption, bad input and security: tests/store_integrity.rs.

mod common;

use std::time::Duration;

use common::{blob_files, noise, odds_json, open, open_with, T0};
use freshcache::{Error, Freshness, Put};

#[test]
fn put_get_round_trips_bytes_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    let odds = odds_json(1, 4096);
    cache
        .put("odds:g1:1700000000", &odds, Put::default())
        .unwrap();
    assert_eq!(cache.get("odds:g1:1700000000").unwrap().unwrap(), odds);

    let v = serde_json::json!({"title": "t", "n": [1, 2, 3]});
    cache
        .put_json("news:reuters:a1", &v, Put::default())
        .unwrap();
    let back: serde_json::Value = cache.get_json("news:reuters:a1").unwrap().unwrap();
    assert_eq!(back, v);
    assert_eq!(cache.get("news:reuters:nope").unwrap(), None);
}

#[test]
fn get_json_of_wrong_type_is_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    cache.put("x:y", b"not json", Put::default()).unwrap();
    assert!(matches!(
        cache.get_json::<serde_json::Value>("x:y"),
        Err(Error::Json { .. })
    ));
}

#[test]
fn entry_expires_at_class_ttl_and_stays_readable_as_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    let s = cache.put("odds:g1:1", b"{}", Put::default()).unwrap();
    assert_eq!((s.class.as_str(), s.expires_at), ("odds", T0 + 60_000));
    clock.set(T0 + 59_999);
    assert!(cache.get("odds:g1:1").unwrap().is_some());
    clock.set(T0 + 60_000);
    assert_eq!(cache.get("odds:g1:1").unwrap(), None);
    let e = cache.get_entry("odds:g1:1").unwrap().unwrap();
    assert_eq!(e.meta.freshness, Freshness::Stale);
    assert_eq!(&e.value[..], b"{}");
}

#[test]
fn named_class_and_explicit_ttl_override_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    let s = cache
        .put("misc:thing", b"1", Put::default().class("teams"))
        .unwrap();
    assert_eq!(
        (s.class.as_str(), s.expires_at),
        ("teams", T0 + 7 * 86_400_000)
    );
    let s = cache
        .put("odds:g:1", b"1", Put::default().ttl(Duration::from_secs(5)))
        .unwrap();
    assert_eq!((s.class.as_str(), s.expires_at), ("odds", T0 + 5_000));
    let s = cache.put("nothing:matches", b"1", Put::default()).unwrap();
    assert_eq!(s.class, "default");
    assert!(matches!(
        cache.put("a:b", b"1", Put::default().class("nope")),
        Err(Error::UnknownClass { .. })
    ));
}

#[test]
fn same_content_under_many_keys_is_stored_once_and_freed_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let v = noise(7, 8192);
    let a = cache.put("llm:features:c1:d1", &v, Put::default()).unwrap();
    let b = cache.put("llm:features:c1:d2", &v, Put::default()).unwrap();
    assert!(!a.deduplicated && b.deduplicated);
    assert_eq!(blob_files(dir.path()).len(), 1);
    let st = cache.stats().unwrap();
    assert_eq!(
        (st.entries, st.stored_bytes, st.logical_bytes),
        (2, 8192, 16_384)
    );

    assert!(cache.delete("llm:features:c1:d1").unwrap());
    assert_eq!(cache.get("llm:features:c1:d2").unwrap().unwrap(), v);
    assert_eq!(blob_files(dir.path()).len(), 1);
    assert!(cache.delete("llm:features:c1:d2").unwrap());
    assert_eq!(blob_files(dir.path()).len(), 0);
    assert_eq!(cache.stats().unwrap().stored_bytes, 0);
}

#[test]
fn overwriting_a_key_releases_its_old_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    cache.put("k:1", &noise(1, 4096), Put::default()).unwrap();
    cache.put("k:1", &noise(2, 4096), Put::default()).unwrap();
    assert_eq!(blob_files(dir.path()).len(), 1);
    assert_eq!(cache.get("k:1").unwrap().unwrap(), noise(2, 4096));
    let st = cache.stats().unwrap();
    assert_eq!(
        (st.entries, st.stored_bytes, st.logical_bytes),
        (1, 4096, 4096)
    );
}

#[test]
fn large_blobs_are_files_named_by_hash_small_ones_inline() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 16 * 1024);
    let big = noise(3, 1 << 20);
    let s = cache
        .put("llm:features:big:1", &big, Put::default())
        .unwrap();
    cache
        .put("odds:g1:1", &odds_json(1, 4096), Put::default())
        .unwrap();
    let files = blob_files(dir.path());
    assert_eq!(files.len(), 1, "only the large blob is a file");
    let hex = s.hash.to_hex();
    assert_eq!(
        files[0],
        dir.path().join("blobs-v1").join(&hex[..2]).join(&hex[2..])
    );
    assert_eq!(hex, blake3::hash(&big).to_hex().as_str());
    assert_eq!(cache.get("llm:features:big:1").unwrap().unwrap(), big);
}

#[test]
fn incompressible_data_is_stored_raw_and_compressible_data_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    let floats = noise(9, 6144);
    let s = cache
        .put("llm:features:c9:d", &floats, Put::default())
        .unwrap();
    assert_eq!(s.stored_size, 6144, "raw, not a zstd frame that is larger");
    let s = cache
        .put("odds:g1:2", &odds_json(2, 4096), Put::default())
        .unwrap();
    assert!(
        s.stored_size * 4 < s.size,
        "odds JSON compresses: {} -> {}",
        s.size,
        s.stored_size
    );
}

#[test]
fn invalidate_prefix_and_segment_wildcards_treat_sql_wildcards_literally() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    for k in [
        "news:reuters:1",
        "news:reuters:2",
        "news:reutersx:1",
        "news:a_b:1",
        "news:aXb:1",
        "news:A%:1",
        "odds:g1:2026-11-21",
        "odds:g2:2026-11-21",
        "odds:g2:2026-11-22",
        "odds:g3:x:2026-11-21",
    ] {
        cache.put(k, k.as_bytes(), Put::default()).unwrap();
    }
    assert_eq!(cache.invalidate("news:reuters:*").unwrap(), 2);
    assert!(cache.get("news:reutersx:1").unwrap().is_some());
    assert_eq!(
        cache.invalidate("news:a_b:*").unwrap(),
        1,
        "`_` is not a wildcard"
    );
    assert!(cache.get("news:aXb:1").unwrap().is_some());
    assert_eq!(
        cache.invalidate("news:a%:*").unwrap(),
        0,
        "case-sensitive, `%` literal"
    );
    assert_eq!(cache.invalidate("odds:*:2026-11-21").unwrap(), 2);
    let left: Vec<String> = cache
        .list(Some("odds:*"))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(left, ["odds:g2:2026-11-22", "odds:g3:x:2026-11-21"]);
}

#[test]
fn stats_count_hits_per_tier_and_class_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g1:1", b"{}", Put::default()).unwrap();
    let (fresh_handle, _) = open(dir.path());
    fresh_handle.get("odds:g1:1").unwrap().unwrap(); // disk (empty L1)
    fresh_handle.get("odds:g1:1").unwrap().unwrap(); // memory
    fresh_handle.get("news:x:1").unwrap(); // miss, class news
    clock.advance(Duration::from_secs(61));
    cache.get("odds:g1:1").unwrap(); // expired: miss, class odds
    fresh_handle.flush().unwrap();
    let s = cache.stats().unwrap();
    let odds = &s.by_class["odds"];
    assert_eq!(odds.hits.get("disk"), Some(&1));
    assert_eq!(odds.hits.get("memory"), Some(&1));
    assert_eq!(odds.misses, 1);
    assert_eq!(s.by_class["news"].misses, 1);
    assert_eq!((s.hits, s.misses), (2, 2));
    assert!((s.hit_rate - 0.5).abs() < 1e-9);
    assert_eq!(s.upstream_calls_avoided, 2);
}

#[test]
fn a_large_value_enters_memory_on_its_second_read_a_small_one_on_its_first() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    let large: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    cache.put("odds:big:1", &large, Put::default()).unwrap();
    cache.put("odds:small:1", b"{}", Put::default()).unwrap();
    let (reader, _) = open(dir.path());
    for _ in 0..3 {
        assert_eq!(reader.get("odds:big:1").unwrap().unwrap(), large);
        reader.get("odds:small:1").unwrap().unwrap();
    }
    reader.flush().unwrap();
    let odds = &cache.stats().unwrap().by_class["odds"];
    // big: disk, disk (admitted), memory; small: disk, memory, memory.
    assert_eq!(odds.hits.get("disk"), Some(&3));
    assert_eq!(odds.hits.get("memory"), Some(&3));
}

#[test]
fn a_flush_of_thousands_of_reads_persists_every_hit_once_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    const WINDOW: Duration = Duration::from_secs(600);
    let (cache, _) = open_with(dir.path(), |c| c.cache.access_flush.0 = WINDOW);
    let keys: Vec<String> = (0..1000).map(|i| format!("k:{i}")).collect();
    for k in &keys {
        cache.put(k, b"v", Put::default()).unwrap();
    }
    let (reader, _) = open_with(dir.path(), |c| c.cache.access_flush.0 = WINDOW);
    for (i, k) in keys.iter().enumerate() {
        for _ in 0..=(i % 3) {
            reader.get(k).unwrap().unwrap();
        }
    }
    reader.get("k:absent").unwrap();
    // Four chunks of access records; the counters go once, with the first.
    reader.flush().unwrap();
    reader.flush().unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            cache.stat(k).unwrap().unwrap().hits,
            (i % 3) as u64 + 1,
            "{k}"
        );
    }
    let s = cache.stats().unwrap();
    assert_eq!((s.hits, s.misses), (1999, 1));
}

#[test]
fn reads_are_recorded_in_batches_not_one_write_each() {
    let dir = tempfile::tempdir().unwrap();
    // A 10 min window: the background flusher also flushes once that much
    // wall-clock time has passed, which the default 1 s could reach
    // mid-test on a loaded machine. The window is passed on the cache's
    // clock below (still within the entry's 1 h TTL).
    const WINDOW: Duration = Duration::from_secs(600);
    let (cache, clock) = open_with(dir.path(), |c| c.cache.access_flush.0 = WINDOW);
    cache.put("k:1", b"v", Put::default()).unwrap();
    clock.advance(Duration::from_millis(100));
    for _ in 0..3 {
        cache.get("k:1").unwrap().unwrap();
    }
    // Within the window nothing has been written yet.
    let m = cache.stat("k:1").unwrap().unwrap();
    assert_eq!((m.hits, m.last_access), (0, T0));
    clock.advance(WINDOW);
    // Window passed: this read wakes the background flusher (a read never
    // writes the batch itself), which persists all four soon after.
    cache.get("k:1").unwrap().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = cache.stat("k:1").unwrap().unwrap();
        if m.hits == 4 || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let last = T0 + 100 + WINDOW.as_millis() as i64;
    assert_eq!((m.hits, m.last_access), (4, last));
}

#[test]
fn get_many_reads_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    cache.put("a:1", b"1", Put::default()).unwrap();
    cache.put("a:2", b"2", Put::default()).unwrap();
    let got = cache.get_many(&["a:1", "a:3", "a:2"]).unwrap();
    assert_eq!(got, [Some(b"1"[..].into()), None, Some(b"2"[..].into())]);
    assert!(cache.get_many(&["a:1", "bad::key"]).is_err());
}

#[test]
fn refresh_extends_expiry_without_touching_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    let s = cache
        .put("news:r:1", b"body", Put::default().etag("\"v1\""))
        .unwrap();
    clock.advance(Duration::from_secs(3601));
    assert_eq!(cache.get("news:r:1").unwrap(), None);
    assert!(cache
        .refresh("news:r:1", None, &Put::default().etag("W/\"v2\""))
        .unwrap());
    let m = cache.stat("news:r:1").unwrap().unwrap();
    assert_eq!(m.hash, s.hash);
    assert_eq!(m.etag.as_deref(), Some("W/\"v2\""));
    assert_eq!(m.expires_at, T0 + 3_601_000 + 3_600_000);
    assert_eq!(cache.get("news:r:1").unwrap().unwrap(), &b"body"[..]);
    assert!(!cache.refresh("news:r:404", None, &Put::default()).unwrap());
}

#[test]
fn threads_share_one_cache_and_never_see_torn_values() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 2048);
    let value = |t: u64, i: u64| {
        let mut v = format!("{t}:{i}:").into_bytes();
        v.extend(noise(t * 1000 + i, 3000 + (i as usize % 3) * 2000));
        v
    };
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let cache = cache.clone();
            s.spawn(move || {
                for i in 0..200u64 {
                    let key = format!("k:{}", i % 10);
                    cache.put(&key, &value(t, i), Put::default()).unwrap();
                    if let Some(got) = cache.get(&format!("k:{}", (i + 3) % 10)).unwrap() {
                        let text = String::from_utf8_lossy(&got[..12]).to_string();
                        let mut parts = text.split(':');
                        let (a, b) = (parts.next().unwrap(), parts.next().unwrap());
                        assert_eq!(got[..], value(a.parse().unwrap(), b.parse().unwrap())[..]);
                    }
                    if i % 17 == 0 {
                        cache.delete(&key).unwrap();
                    }
                }
            });
        }
    });
    let report = cache.verify(false, None).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn put_many_is_all_or_nothing_and_deduplicates_within_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let v = noise(1, 5000);
    let bad: Vec<(&str, &[u8], Put)> = vec![
        ("news:a:1", b"one", Put::default()),
        ("news::2", b"two", Put::default()),
    ];
    assert!(matches!(
        cache.put_many(&bad),
        Err(Error::InvalidKey { .. })
    ));
    assert_eq!(
        cache.stats().unwrap().entries,
        0,
        "nothing of a failed batch is stored"
    );
    let good: Vec<(&str, &[u8], Put)> = vec![
        ("news:a:1", &v, Put::default()),
        ("news:a:2", &v, Put::default()),
        ("odds:g:1", b"{}", Put::default()),
    ];
    let out = cache.put_many(&good).unwrap();
    assert_eq!(
        out.iter().map(|s| s.deduplicated).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(out[2].class, "odds");
    assert_eq!(blob_files(dir.path()).len(), 1);
    assert_eq!(cache.get("news:a:2").unwrap().unwrap(), v);
    assert!(cache.verify(false, None).unwrap().is_clean());
}

#[test]
fn a_read_never_waits_for_another_writer_to_flush_its_access_batch() {
    let dir = tempfile::tempdir().unwrap();
    // LRU exact to the batch window, so the flushed read moves last_access.
    let (cache, clock) = open_with(dir.path(), |c| c.cache.lru_precision.0 = Duration::ZERO);
    cache.put("k:1", b"v", Put::default()).unwrap();
    let other = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap(); // another process holds the write lock
    clock.advance(Duration::from_secs(2)); // the batch window has passed
    assert!(
        cache.get("k:1").unwrap().is_some(),
        "the get does not wait for the lock"
    );
    other.execute_batch("COMMIT").unwrap();
    cache.flush().unwrap();
    let m = cache.stat("k:1").unwrap().unwrap();
    assert_eq!(
        (m.hits, m.last_access),
        (1, T0 + 2000),
        "the batch was kept, not lost"
    );
}

#[test]
fn a_conditional_refresh_never_vouches_for_content_it_did_not_ask_about() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    let a = cache
        .put("news:r:1", b"version a", Put::default().etag("\"a\""))
        .unwrap()
        .hash;
    cache.put("news:r:1", b"version b", Put::default()).unwrap(); // another writer, meanwhile
    clock.advance(Duration::from_secs(3601));
    assert!(!cache
        .refresh_if("news:r:1", Some(&a), None, &Put::default().etag("\"a\""))
        .unwrap());
    assert_eq!(
        cache.get("news:r:1").unwrap(),
        None,
        "b was not made fresh by a's 304"
    );
    let b = cache.stat("news:r:1").unwrap().unwrap().hash;
    assert!(cache
        .refresh_if("news:r:1", Some(&b), None, &Put::default())
        .unwrap());
    assert_eq!(&cache.get("news:r:1").unwrap().unwrap()[..], b"version b");
}
