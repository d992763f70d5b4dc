//! The sled hot tier: warm restarts, one owner process, and a hash
//! mismatch in the tier never returned.

mod common;

use common::{odds_json, open_with};
use freshcache::Put;

fn with_tier(c: &mut freshcache::Config) {
    c.cache.hot_tier = true;
}

#[test]
fn a_restarted_process_reads_hot_data_from_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let v = odds_json(1, 4096);
    {
        let (cache, _) = open_with(dir.path(), with_tier);
        assert!(cache.hot_tier_active());
        cache.put("odds:g1:1", &v, Put::default()).unwrap();
        let (other, _) = open_with(dir.path(), |_| {}); // no L1 of the writer
        drop(other);
    }
    {
        let (cache, _) = open_with(dir.path(), with_tier);
        assert_eq!(cache.get("odds:g1:1").unwrap().unwrap(), v); // disk, fills the tier
    }
    let (cache, _) = open_with(dir.path(), with_tier);
    assert_eq!(cache.get("odds:g1:1").unwrap().unwrap(), v);
    let s = cache.stats().unwrap();
    assert_eq!(
        s.by_class["odds"].hits.get("hot"),
        Some(&1),
        "{:?}",
        s.by_class["odds"]
    );
}

#[test]
fn a_second_process_runs_without_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = open_with(dir.path(), with_tier);
    let (b, _) = open_with(dir.path(), with_tier);
    assert!(a.hot_tier_active());
    assert!(!b.hot_tier_active(), "sled's lock keeps one owner");
    b.put("k:1", b"from b", Put::default()).unwrap();
    assert_eq!(&a.get("k:1").unwrap().unwrap()[..], b"from b");
    drop(a);
    let (c, _) = open_with(dir.path(), with_tier);
    assert!(
        c.hot_tier_active(),
        "ownership passes on when the owner exits"
    );
}

#[test]
fn a_hash_mismatch_in_the_tier_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let v = odds_json(2, 4096);
    let hash = {
        let (cache, _) = open_with(dir.path(), with_tier);
        let h = cache.put("odds:g2:1", &v, Put::default()).unwrap().hash;
        let (fresh, _) = open_with(dir.path(), |_| {});
        drop(fresh);
        drop(cache);
        let (cache, _) = open_with(dir.path(), with_tier);
        cache.get("odds:g2:1").unwrap().unwrap(); // now in the tier
        h
    };
    {
        let db = sled::open(dir.path().join("hot.sled")).unwrap();
        let blobs = db.open_tree("blobs").unwrap();
        assert!(blobs.get(hash.0).unwrap().is_some());
        blobs
            .insert(hash.0, &b"tampered bytes of another size"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let (cache, _) = open_with(dir.path(), with_tier);
    let disk_hits = |c: &freshcache::Cache| {
        c.stats().unwrap().by_class["odds"]
            .hits
            .get("disk")
            .copied()
    };
    let before = disk_hits(&cache).unwrap();
    assert_eq!(
        cache.get("odds:g2:1").unwrap().unwrap(),
        v,
        "served from disk, verified"
    );
    assert_eq!(disk_hits(&cache), Some(before + 1));
    assert_eq!(
        cache.stats().unwrap().by_class["odds"].hits.get("hot"),
        None
    );
}
