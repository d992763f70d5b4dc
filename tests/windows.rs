//! TTL windows (seed 001's invalidation periods): while a window of a
//! class is open, its entries are fresh for at most the window's TTL from
//! when they were stored — for get, get_entry, the guard, stat, ls and
//! eviction alike; outside it the class rules return. Hot reload applies a
//! changed window at once.

mod common;

use std::time::Duration;

use freshcache::{Cache, Config, Error, Freshness, ManualClock, Put};

fn at(s: &str) -> i64 {
    freshcache::config::Instant::parse(s).unwrap().ms
}

const WINDOW: &str = "classes:\n  players: { prefix: 'players:', ttl: 24h, windows: \
                      [{ from: 2026-03-11, to: 2026-03-20, ttl: 1h }] }\n";

fn config(dir: &std::path::Path, yaml: &str) -> Config {
    let mut c = Config::from_layers(Some(("test.yml".into(), yaml)), Vec::new()).unwrap();
    c.cache.root = dir.to_path_buf();
    c
}

fn open(dir: &std::path::Path, yaml: &str, start: &str) -> (Cache, ManualClock) {
    let clock = ManualClock::new(at(start));
    let cache = Cache::builder()
        .config(config(dir, yaml))
        .clock(clock.clone())
        .open()
        .unwrap();
    (cache, clock)
}

fn fresh_everywhere(cache: &Cache, key: &str) -> bool {
    let get = cache.get(key).unwrap().is_some();
    let entry = cache.get_entry(key).unwrap().unwrap().meta.freshness;
    let stat = cache.stat(key).unwrap().unwrap().freshness;
    let ls = cache.list(Some("players:*")).unwrap()[0].freshness;
    let guard = cache.guard().require(&[key]).is_ok();
    let all = [get, entry.is_fresh(), stat.is_fresh(), ls.is_fresh(), guard];
    assert!(
        all.iter().all(|&b| b == get),
        "get, get_entry, stat, ls and the guard disagree: {all:?}"
    );
    get
}

#[test]
fn an_entry_stored_before_a_window_turns_stale_when_it_opens_and_fresh_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path(), WINDOW, "2026-03-10T20:00:00Z");
    cache.put("players:p1", b"{}", Put::default()).unwrap();
    // Read twice so the hot map remembers it.
    assert!(fresh_everywhere(&cache, "players:p1"));
    assert!(fresh_everywhere(&cache, "players:p1"));
    clock.set(at("2026-03-10T23:59:59.999Z"));
    assert!(fresh_everywhere(&cache, "players:p1"));
    // The window opens: 4 h since the put is more than its 1 h TTL.
    clock.set(at("2026-03-11T00:00:00Z"));
    assert!(!fresh_everywhere(&cache, "players:p1"));
    let meta = cache.stat("players:p1").unwrap().unwrap();
    assert_eq!(meta.expires_at, at("2026-03-10T21:00:00Z"));
    match cache.guard().require(&["players:p1"]) {
        Err(Error::Stale(s)) => assert_eq!(s[0].limit_ms, Some(3_600_000)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Inside the window a new put is fresh for one hour only.
    clock.set(at("2026-03-15T12:00:00Z"));
    let stored = cache.put("players:p2", b"{}", Put::default()).unwrap();
    assert_eq!(stored.expires_at, at("2026-03-15T13:00:00Z"));
    assert!(cache.get("players:p2").unwrap().is_some());
    clock.advance(Duration::from_secs(3599));
    assert!(cache.get("players:p2").unwrap().is_some());
    clock.advance(Duration::from_secs(1));
    assert!(cache.get("players:p2").unwrap().is_none());
    // `to: 2026-03-20` includes that day; on the 21st the 24 h rule is back.
    clock.set(at("2026-03-20T20:00:00Z"));
    cache.put("players:p3", b"{}", Put::default()).unwrap();
    clock.set(at("2026-03-20T23:59:59Z"));
    assert!(cache.get("players:p3").unwrap().is_none());
    clock.set(at("2026-03-21T00:00:00Z"));
    assert!(cache.get("players:p3").unwrap().is_some());
    assert_eq!(
        cache
            .get_entry("players:p3")
            .unwrap()
            .unwrap()
            .meta
            .freshness,
        Freshness::Fresh
    );
    // p1 (stored on the 10th) is past its 24 h anyway.
    assert!(!fresh_everywhere(&cache, "players:p1"));
    // Other classes never noticed.
    cache.put("teams:t1", b"{}", Put::default()).unwrap();
    assert!(cache.get("teams:t1").unwrap().is_some());
}

#[test]
fn hot_reload_applies_a_changed_window_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path(), "", "2026-05-01T10:00:00Z");
    cache.put("players:p1", b"{}", Put::default()).unwrap();
    assert!(cache.get("players:p1").unwrap().is_some());
    assert!(cache.get("players:p1").unwrap().is_some()); // from the hot map
    clock.advance(Duration::from_secs(7200));
    assert!(fresh_everywhere(&cache, "players:p1"));
    let yaml = "classes:\n  players: { prefix: 'players:', ttl: 24h, windows: \
                [{ from: '2026-05-01T11:00:00Z', to: '2026-05-02T00:00:00Z', ttl: 30m }] }\n";
    cache.set_config(config(dir.path(), yaml));
    assert!(!fresh_everywhere(&cache, "players:p1"));
    // And removing it brings the class TTL back.
    cache.set_config(config(dir.path(), ""));
    assert!(fresh_everywhere(&cache, "players:p1"));
}

#[test]
fn eviction_takes_window_expired_entries_before_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path(), WINDOW, "2026-03-10T20:00:00Z");
    let blob = |i: u64| common::noise(i, 4096);
    // Old players entries, then newer teams entries (LRU would take players
    // last only if they were read recently: read them now).
    for i in 0..10 {
        cache
            .put(&format!("players:p{i}"), &blob(i), Put::default())
            .unwrap();
    }
    clock.set(at("2026-03-11T06:00:00Z"));
    for i in 0..10 {
        cache
            .put(&format!("teams:t{i}"), &blob(100 + i), Put::default())
            .unwrap();
    }
    // Touch every teams entry after the players ones, then make the players
    // entries the most recently used: plain LRU would evict teams first.
    clock.advance(Duration::from_secs(60));
    for i in 0..10 {
        cache.get_entry(&format!("players:p{i}")).unwrap();
    }
    cache.flush().unwrap();
    let before = cache.disk_bytes().unwrap();
    let r = cache.evict_to_bytes(before / 2).unwrap();
    assert!(r.entries_removed >= 1);
    assert_eq!(r.expired_removed, r.entries_removed, "{r:?}");
    for i in 0..10 {
        assert!(cache.stat(&format!("teams:t{i}")).unwrap().is_some());
    }
    assert!(cache.stat("players:p0").unwrap().is_none());
}
