//! The daemon's refresh-ahead with the injected clock: a hot key is
//! revalidated before it expires (URL-backed: a conditional GET through the
//! fetcher; otherwise the loader registered for its prefix), a cold one is
//! not, and the miss it avoided is counted in stats and /metrics.

#[path = "common/fetch_origin.rs"]
mod origin;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freshcache::daemon::{Loaders, RefreshAhead};
use freshcache::{Cache, FetchOptions, Fetcher, ManualClock, Put};
use origin::{reply, Origin};

fn cache() -> (tempfile::TempDir, Cache, ManualClock) {
    cache_with(freshcache::Config::default())
}

fn cache_with(config: freshcache::Config) -> (tempfile::TempDir, Cache, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = ManualClock::new(now);
    let cache = Cache::builder()
        .config(config)
        .root(dir.path())
        .clock(clock.clone())
        .open()
        .unwrap();
    (dir, cache, clock)
}

#[tokio::test]
async fn a_hot_url_key_is_revalidated_before_it_expires_and_a_cold_one_is_not() {
    let origin = Origin::start(|seen, _| {
        if seen.header("if-none-match").as_deref() == Some("\"v1\"") {
            reply(304, &[("etag", "\"v1\"")], "")
        } else {
            reply(200, &[("etag", "\"v1\"")], "{\"line\": -110}")
        }
    })
    .await;
    let (_dir, cache, clock) = cache();
    let fetcher = Fetcher::new(&cache).unwrap();
    let opts = FetchOptions::default();
    fetcher
        .fetch(&origin.url("/hot"), "odds:g1:hot", &opts)
        .await
        .unwrap();
    fetcher
        .fetch(&origin.url("/cold"), "odds:g1:cold", &opts)
        .await
        .unwrap();
    assert_eq!(origin.count(), 2);
    for _ in 0..5 {
        assert!(cache.get("odds:g1:hot").unwrap().is_some());
    }
    assert!(cache.get("odds:g1:cold").unwrap().is_some());
    let mut ra = RefreshAhead::new(&cache, Loaders::default()).unwrap();
    // 30 s into a 60 s TTL: hot, but not in its last 10% yet.
    clock.advance(Duration::from_secs(30));
    assert!(ra.pass().await.unwrap().refreshed.is_empty());
    assert_eq!(origin.count(), 2);
    // 55 s: in the last 6 s.
    clock.advance(Duration::from_secs(25));
    let r = ra.pass().await.unwrap();
    assert_eq!(r.refreshed, ["odds:g1:hot"]);
    assert_eq!(origin.count(), 3);
    let last = origin.last();
    assert_eq!(last.path, "/hot");
    assert_eq!(last.header("if-none-match").as_deref(), Some("\"v1\""));
    // At 61 s the cold key has expired; the hot one is fresh until 115 s.
    clock.advance(Duration::from_secs(6));
    assert!(cache.get("odds:g1:cold").unwrap().is_none());
    assert!(cache.get("odds:g1:hot").unwrap().is_some());
    // The next pass sees that read after the old expiry: one miss avoided.
    // The hot key's reads were counted from its refresh: 1 < 3, not hot now.
    let r = ra.pass().await.unwrap();
    assert_eq!(r.misses_avoided, 1);
    assert!(r.refreshed.is_empty());
    let s = cache.stats().unwrap();
    assert_eq!(s.refresh_ahead.refreshed, 1);
    assert_eq!(s.refresh_ahead.misses_avoided, 1);
    let m = cache.metrics().unwrap().finish();
    assert!(
        m.contains("freshcache_refresh_ahead_total{outcome=\"refreshed\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("freshcache_refresh_ahead_misses_avoided_total 1\n"),
        "{m}"
    );
}

#[tokio::test]
async fn keys_without_a_url_go_through_the_loader_registered_for_their_prefix() {
    let (_dir, cache, clock) = cache();
    cache
        .put("llm:features:c1:d1", b"old", Put::default())
        .unwrap();
    cache
        .put("llm:features:c2:d1", b"old", Put::default())
        .unwrap();
    cache.put("teams:nfl", b"old", Put::default()).unwrap();
    for _ in 0..3 {
        cache.get("llm:features:c1:d1").unwrap();
        cache.get("teams:nfl").unwrap();
    }
    cache.get("llm:features:c2:d1").unwrap(); // read once: cold
    let calls = Arc::new(AtomicUsize::new(0));
    let mut loaders = Loaders::default();
    let c = calls.clone();
    loaders.register("llm:", move |key: String| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(format!("new {key}").into_bytes())
        }
    });
    let mut ra = RefreshAhead::new(&cache, loaders).unwrap();
    // 22 h into 24 h for llm_features; teams (7 d) are nowhere near expiry.
    clock.advance(Duration::from_secs(22 * 3600));
    let r = ra.pass().await.unwrap();
    assert_eq!(r.refreshed, ["llm:features:c1:d1"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        &cache.get("llm:features:c1:d1").unwrap().unwrap()[..],
        b"new llm:features:c1:d1"
    );
    assert_eq!(
        &cache.get("llm:features:c2:d1").unwrap().unwrap()[..],
        b"old"
    );
    // Counted against the persisted quota like an upstream request.
    assert_eq!(cache.stats().unwrap().quota.used, 1);
    // A hot key with neither URL nor loader is reported, not refreshed.
    cache
        .put(
            "llm_other:x",
            b"v",
            Put::default().ttl(Duration::from_secs(100)),
        )
        .unwrap();
    for _ in 0..3 {
        cache.get("llm_other:x").unwrap();
    }
    clock.advance(Duration::from_secs(95));
    let r = ra.pass().await.unwrap();
    assert_eq!(r.no_source, ["llm_other:x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_daemon_refreshes_a_hot_key_through_its_registered_loader() {
    use freshcache::daemon::{Daemon, Options};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_800_000_000_000);
    let mut config = freshcache::Config::default();
    config.cache.root = dir.path().to_path_buf();
    config.daemon.refresh_ahead.every = freshcache::config::Dur(Duration::from_millis(20));
    let cache = Cache::builder()
        .config(config)
        .clock(clock.clone())
        .open()
        .unwrap();
    cache
        .put("llm:features:c1:d1", b"old", Put::default())
        .unwrap();
    cache
        .put("llm:features:c2:d1", b"old", Put::default())
        .unwrap();
    for _ in 0..4 {
        cache.get("llm:features:c1:d1").unwrap();
    }
    clock.advance(Duration::from_secs(23 * 3600)); // in the last 10% of 24 h
    let options = Options {
        config_path: None,
        listen: Some("127.0.0.1:0".parse().unwrap()),
    };
    let daemon = Daemon::bind(cache.clone(), options)
        .await
        .unwrap()
        .loader("llm:", |key: String| async move {
            Ok(format!("new {key}").into_bytes())
        });
    let addr = daemon.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(async move {
        let _ = stop_rx.await;
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cache.stats().unwrap().refresh_ahead.refreshed == 0 {
        assert!(std::time::Instant::now() < deadline, "no refresh ahead");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        &cache.get("llm:features:c1:d1").unwrap().unwrap()[..],
        b"new llm:features:c1:d1"
    );
    assert_eq!(
        &cache.get("llm:features:c2:d1").unwrap().unwrap()[..],
        b"old"
    );
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("freshcache_refresh_ahead_total{outcome=\"refreshed\"} 1\n"),
        "{metrics}"
    );
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// Loader refreshes keep the rate limit, like requests: three hot keys under
/// one loader at `fetch.rate_limit: 1/h` wait an hour between calls (tokio's
/// paused clock measures it), and the quota counts each call.
#[tokio::test(start_paused = true)]
async fn loader_refreshes_keep_the_rate_limit() {
    let mut config = freshcache::Config::default();
    config.fetch.rate_limit = freshcache::config::Rate::parse("1/h").unwrap();
    let (_dir, cache, clock) = cache_with(config);
    for i in 0..3 {
        let key = format!("llm:features:c{i}:d1");
        cache.put(&key, b"old", Put::default()).unwrap();
        for _ in 0..3 {
            cache.get(&key).unwrap();
        }
    }
    let mut loaders = Loaders::default();
    loaders.register("llm:", |key: String| async move {
        Ok(format!("new {key}").into_bytes())
    });
    let mut ra = RefreshAhead::new(&cache, loaders).unwrap();
    clock.advance(Duration::from_secs(22 * 3600));
    let t0 = tokio::time::Instant::now();
    let r = ra.pass().await.unwrap();
    assert_eq!(r.refreshed.len(), 3, "{r:?}");
    let waited = t0.elapsed();

    assert!(
        waited >= Duration::from_secs(2 * 3600) && waited < Duration::from_secs(3 * 3600),
        "three calls at 1/h: the 2nd and 3rd wait an hour each, waited {waited:?}"
    );
    assert_eq!(cache.stats().unwrap().quota.used, 3);
}

/// A TTL shorter than the pass interval (`every`, 5 s by default): its
/// last 10% (1 s) falls between two passes, so a hot entry is refreshed
/// once it would expire before the next pass.
#[tokio::test]
async fn a_ttl_shorter_than_the_pass_interval_is_still_refreshed_ahead() {
    let (_dir, cache, clock) = cache();
    let ttl = Put::default().ttl(Duration::from_secs(10));
    cache
        .put("llm:features:fast:1", b"old", ttl.clone())
        .unwrap();
    for _ in 0..3 {
        cache.get("llm:features:fast:1").unwrap();
    }
    let mut loaders = Loaders::default();
    loaders.register("llm:", |key: String| async move {
        Ok(format!("new {key}").into_bytes())
    });
    let mut ra = RefreshAhead::new(&cache, loaders).unwrap();
    clock.advance(Duration::from_secs(2)); // 8 s left: the next pass is in time
    assert!(ra.pass().await.unwrap().refreshed.is_empty());
    clock.advance(Duration::from_secs(4)); // 4 s left: expired before the next pass
    let r = ra.pass().await.unwrap();
    assert_eq!(r.refreshed, ["llm:features:fast:1"]);
    clock.advance(Duration::from_secs(5)); // past the old expiry: still a hit
    assert_eq!(
        &cache.get("llm:features:fast:1").unwrap().unwrap()[..],
        b"new llm:features:fast:1"
    );
}
