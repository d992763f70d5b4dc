//! Calendar quotas through the fetcher (injected clock) and the CLI: a
//! monthly quota resets at midnight on the 1st and not before; `stats`
//! shows used, left and the reset instant; TTL windows seen through `stat`.

#[path = "common/fetch_origin.rs"]
mod origin;

mod cli_support;
mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::{SystemTime, UNIX_EPOCH};

use cli_support::{run, s};
#[allow(unused_imports)] // redis_server.rs reaches them through `super::`
use common::{open_with, tool};
use freshcache::config::Instant;
use freshcache::{Cache, Config, Error, FetchOptions, Fetcher, ManualClock};
use origin::{reply, Origin};

fn at(s: &str) -> i64 {
    Instant::parse(s).unwrap().ms
}

#[tokio::test]
async fn a_monthly_quota_resets_at_midnight_on_the_first_and_not_before() {
    let origin = Origin::start(|_, _| reply(200, &[], "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at("2026-01-31T22:00:00Z"));
    let yaml = "fetch: { quota: 3/month }\n";
    let mut config = Config::from_layers(Some(("t.yml".into(), yaml)), Vec::new()).unwrap();
    config.cache.root = dir.path().to_path_buf();
    let cache = Cache::builder()
        .config(config)
        .clock(clock.clone())
        .open()
        .unwrap();
    let fetcher = Fetcher::new(&cache).unwrap();
    let fetch = |i: u32| {
        let (f, u) = (fetcher.clone(), origin.url("/odds"));
        async move {
            f.fetch(&u, &format!("odds:g{i}:1"), &FetchOptions::default())
                .await
        }
    };
    for i in 0..3 {
        fetch(i).await.unwrap();
    }
    let q = cache.stats().unwrap().quota;
    assert_eq!((q.used, q.left, q.limit), (3, 0, 3));
    assert_eq!(q.period, "month");
    assert_eq!(q.window_start, at("2026-01-01T00:00:00Z"));
    assert_eq!(q.resets_at, at("2026-02-01T00:00:00Z"));
    clock.set(at("2026-01-31T23:59:59.999Z"));
    match fetch(3).await {
        Err(Error::QuotaExceeded {
            used: 3,
            limit: 3,
            period,
        }) => assert_eq!(period, "month"),
        other => panic!("expected the quota to hold until midnight, got {other:?}"),
    }
    assert_eq!(
        origin.count(),
        3,
        "a refused request never reaches the origin"
    );
    clock.set(at("2026-02-01T00:00:00Z"));
    fetch(4).await.unwrap();
    let q = cache.stats().unwrap().quota;
    assert_eq!((q.used, q.left), (1, 2));
    assert_eq!(q.resets_at, at("2026-03-01T00:00:00Z"));
    let m = cache.metrics().unwrap().finish();
    assert!(m.contains("freshcache_quota_remaining 2\n"), "{m}");
}

/// A large quota is reserved in blocks (one write per 64 requests), but
/// what is reported is what was used, and closing the cache gives the rest
/// back: another handle opened afterwards sees the exact count.
#[tokio::test]
async fn a_large_quota_reports_what_was_used_and_returns_the_rest_on_close() {
    let origin = Origin::start(|_, _| reply(200, &[], "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at("2026-01-10T12:00:00Z"));
    let open = || {
        let yaml = "fetch: { quota: 1000000/month }\n";
        let mut config = Config::from_layers(Some(("t.yml".into(), yaml)), Vec::new()).unwrap();
        config.cache.root = dir.path().to_path_buf();
        Cache::builder()
            .config(config)
            .clock(clock.clone())
            .open()
            .unwrap()
    };
    let cache = open();
    let fetcher = Fetcher::new(&cache).unwrap();
    for i in 0..3 {
        let key = format!("odds:g{i}:1");
        fetcher
            .fetch(&origin.url("/odds"), &key, &FetchOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(cache.stats().unwrap().quota.used, 3);
    // Another handle on the root meanwhile sees the reservation as used.
    let other = open();
    assert_eq!(other.stats().unwrap().quota.used, 64);
    drop(fetcher);
    drop(cache);
    assert_eq!(other.stats().unwrap().quota.used, 3, "61 unused given back");
}

#[test]
fn stats_shows_the_quota_window_and_stat_the_windowed_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("runtime.yml");
    std::fs::write(
        &cfg,
        "fetch: { quota: 500/day, quota_tz: '+02:00' }\n\
         classes:\n  players: { prefix: 'players:', ttl: 24h, windows: \
         [{ from: 2000-01-01, to: 2999-12-31, ttl: 90s }] }\n",
    )
    .unwrap();
    let root = dir.path().join("root");
    let (r, c) = (s(&root), s(&cfg));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let o = run(
        &["--root", &r, "--config", &c, "stats", "--json"],
        None,
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let q = &v["quota"];
    assert_eq!(
        (q["used"].as_u64(), q["left"].as_u64()),
        (Some(0), Some(500))
    );
    assert_eq!(q["period"], "day");
    // The next midnight in UTC+2.
    let reset = at(q["resets_at"].as_str().unwrap());
    let day = 86_400_000;
    let expected = (now + 2 * 3_600_000).div_euclid(day) * day + day - 2 * 3_600_000;
    assert!(reset == expected || reset == expected + day, "{q}");
    let o = run(&["--root", &r, "--config", &c, "stats"], None, &[]);
    assert!(
        o.stdout
            .contains("fetch quota      0 used, 500 left of 500/day; resets "),
        "{}",
        o.stdout
    );

    // The open window caps a 24 h class at 90 s, in `stat` as everywhere.
    let put = run(
        &["--root", &r, "--config", &c, "put", "players:p1", "-"],
        Some(b"{}"),
        &[],
    );
    assert_eq!(put.code, Some(0), "{}", put.stderr);
    let o = run(
        &["--root", &r, "--config", &c, "stat", "players:p1", "--json"],
        None,
        &[],
    );
    let m: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let ttl = at(m["expires_at"].as_str().unwrap()) - at(m["created_at"].as_str().unwrap());
    assert_eq!(ttl, 90_000, "{m}");

    // A bad window is refused with its field named (exit 2).
    std::fs::write(
        &cfg,
        "classes:\n  players: { prefix: 'players:', ttl: 24h, windows: \
         [{ from: 2026-03-20, to: 2026-03-11, ttl: 1h }] }\n",
    )
    .unwrap();
    let o = run(&["--root", &r, "--config", &c, "stats"], None, &[]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("classes.players.windows[0].to"),
        "{}",
        o.stderr
    );
    std::fs::write(&cfg, "fetch: { quota_tz: Mars/Olympus }\n").unwrap();
    let o = run(&["--root", &r, "--config", &c, "stats"], None, &[]);
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("fetch.quota_tz"), "{}", o.stderr);
    // An IANA zone is accepted: the window follows its calendar.
    std::fs::write(
        &cfg,
        "fetch: { quota: 500/month, quota_tz: America/New_York }\n",
    )
    .unwrap();
    let o = run(
        &["--root", &r, "--config", &c, "stats", "--json"],
        None,
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let start = v["quota"]["window_start"].as_str().unwrap().to_owned();
    assert!(
        start.ends_with("T05:00:00.000Z") || start.ends_with("T04:00:00.000Z"),
        "midnight in New York: {start}"
    );
}

#[test]
fn the_global_quota_in_redis_uses_the_same_calendar_windows() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let tweak = |c: &mut Config| {
        c.fetch.quota = freshcache::config::Rate::parse("2/month").unwrap();
        c.fetch.rate_limit = freshcache::config::Rate::parse("100/s").unwrap();
    };
    let (a, clock_a, _da) = redis_server::instance_with(&server.url(), false, tweak);
    let (b, clock_b, _db) = redis_server::instance_with(&server.url(), false, tweak);
    let set = |t: &str| {
        clock_a.set(at(t));
        clock_b.set(at(t));
    };
    set("2026-01-31T22:00:00Z");
    assert!(a.redis().unwrap().acquire_quota("h").is_ok());
    assert!(b.redis().unwrap().acquire_quota("h").is_ok());
    // `stats` shows what the instances used together, on either instance.
    for c in [&a, &b] {
        let q = c.stats().unwrap().quota;
        assert_eq!((q.used, q.left, q.limit), (2, 0, 2), "{q:?}");
        assert_eq!(q.resets_at, at("2026-02-01T00:00:00Z"));
    }
    set("2026-01-31T23:59:59.999Z");
    assert!(matches!(
        a.redis().unwrap().acquire_quota("h"),
        Err(Error::QuotaExceeded {
            used: 2,
            limit: 2,
            ..
        })
    ));
    set("2026-02-01T00:00:00Z");
    assert!(b.redis().unwrap().acquire_quota("h").is_ok());
    assert!(a.redis().unwrap().acquire_quota("h").is_ok());
    assert!(a.redis().unwrap().acquire_quota("h").is_err());
    assert_eq!(b.stats().unwrap().quota.used, 2, "the new month's count");
}
