//! The shared Redis tier against real redis-server processes on loopback
//! ports: read/write-through between instances, pattern invalidation over
//! pub/sub, cross-instance single-flight, global quota and rate, a Redis
//! that dies and comes back, and a 3-node Redis Cluster.

mod common;
#[path = "common/origin.rs"]
mod origin;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open_with, tool};
use freshcache::config::Rate;
use freshcache::fetch::{FetchOptions, Fetcher};
use freshcache::{Admission, Cache, Error, LeaseOutcome, ManualClock, Put};
use origin::Origin;
use redis_server::{Partition, RedisCluster, RedisServer};

/// A cache at a fresh root using Redis at `url`.
fn instance(url: &str, cluster: bool) -> (Cache, ManualClock, tempfile::TempDir) {
    instance_with(url, cluster, |_| {})
}

fn instance_with(
    url: &str,
    cluster: bool,
    tweak: impl FnOnce(&mut freshcache::Config),
) -> (Cache, ManualClock, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open_with(dir.path(), |c| {
        c.redis.url = Some(url.to_string());
        c.redis.cluster = cluster;
        c.redis.timeout.0 = Duration::from_secs(1);
        tweak(c);
    });
    (cache, clock, dir)
}

/// Polls `f` until it holds or `within` passes; says whether it held.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_subscribed(caches: &[&Cache]) {
    for c in caches {
        assert!(
            eventually(Duration::from_secs(10), || c
                .redis()
                .unwrap()
                .is_subscribed()),
            "invalidation subscriber did not connect"
        );
    }
}

/// The read/write/invalidate contract, on one server or a cluster.
fn read_write_invalidate(url: &str, cluster: bool) {
    let (a, _ca, _da) = instance(url, cluster);
    let (b, cb, _db) = instance(url, cluster);
    wait_subscribed(&[&a, &b]);

    // A put on A is a hit on B, backfilled into B's local tiers.
    let big = common::noise(7, 100_000); // above inline_max: shared by hash
    a.put(
        "odds:g1:1",
        br#"{"home":-110}"#,
        Put::default().etag("\"v1\""),
    )
    .unwrap();
    a.put("llm:features:c1:2026-11-21", &big, Put::default())
        .unwrap();
    a.put("odds:{tagged}:1", b"braces", Put::default()).unwrap();
    assert!(b.stat("odds:g1:1").unwrap().is_none(), "not local on B yet");
    assert_eq!(
        b.get("odds:g1:1").unwrap().as_deref(),
        Some(&br#"{"home":-110}"#[..])
    );
    assert_eq!(b.get("llm:features:c1:2026-11-21").unwrap().unwrap(), big);
    assert_eq!(
        b.get("odds:{tagged}:1").unwrap().as_deref(),
        Some(&b"braces"[..])
    );
    let meta = b.stat("odds:g1:1").unwrap().expect("backfilled");
    let meta_a = a.stat("odds:g1:1").unwrap().unwrap();
    assert_eq!(
        meta.expires_at, meta_a.expires_at,
        "same freshness everywhere"
    );
    assert_eq!(meta.etag.as_deref(), Some("\"v1\""));
    let s = b.stats().unwrap();
    assert_eq!(s.redis.hits, 3);
    assert_eq!(s.redis.backfills, 3);
    assert!(s.redis.configured && s.redis.up);
    b.get("odds:g1:1").unwrap().unwrap();
    assert_eq!(b.stats().unwrap().redis.hits, 3, "second read is local");

    // A stale entry is never served as fresh, from any tier.
    cb.advance(Duration::from_secs(61));
    assert!(b.get("odds:g1:1").unwrap().is_none());
    let (c, cc, _dc) = instance(url, cluster);
    cc.advance(Duration::from_secs(61));
    assert!(
        c.get("odds:g1:1").unwrap().is_none(),
        "stale in redis = miss"
    );
    drop(c);

    // Pattern invalidation on A reaches B's local tiers within a second.
    for k in ["news:reuters:1", "news:reuters:2", "news:ap:1"] {
        a.put(k, k.as_bytes(), Put::default()).unwrap();
        assert!(b.get(k).unwrap().is_some());
    }
    assert!(b.stat("news:reuters:1").unwrap().is_some());
    assert_eq!(a.invalidate("news:reuters:*").unwrap(), 2);
    let gone = eventually(Duration::from_secs(1), || {
        b.stat("news:reuters:1").unwrap().is_none() && b.stat("news:reuters:2").unwrap().is_none()
    });
    assert!(gone, "B still holds invalidated keys after 1s");
    assert!(
        b.stat("news:ap:1").unwrap().is_some(),
        "non-matching key kept"
    );
    assert!(
        b.get("news:reuters:1").unwrap().is_none(),
        "gone from redis too"
    );
    assert!(b.get("news:ap:1").unwrap().is_some());
    assert!(b.stats().unwrap().redis.invalidations_received >= 1);

    // Segment wildcards, and a delete, travel the same way.
    a.put("news:g7:2026-11-21", b"x", Put::default()).unwrap();
    a.put("news:g8:2026-11-22", b"y", Put::default()).unwrap();
    b.get("news:g7:2026-11-21").unwrap().unwrap();
    b.get("news:g8:2026-11-22").unwrap().unwrap();
    a.invalidate("news:*:2026-11-21").unwrap();
    assert!(eventually(Duration::from_secs(1), || b
        .stat("news:g7:2026-11-21")
        .unwrap()
        .is_none()));
    assert!(b.stat("news:g8:2026-11-22").unwrap().is_some());
    assert!(a.delete("news:g8:2026-11-22").unwrap());
    assert!(eventually(Duration::from_secs(1), || b
        .stat("news:g8:2026-11-22")
        .unwrap()
        .is_none()));
}

#[test]
fn put_on_one_instance_is_a_hit_on_another_and_invalidation_reaches_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    read_write_invalidate(&server.url(), false);
}

#[test]
fn redis_cluster_passes_the_same_read_write_invalidate_contract() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    read_write_invalidate(&cluster.url(), true);
}

#[test]
fn an_instance_cut_off_from_redis_replays_missed_invalidations_on_reconnect() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let partition = Partition::new(server.port);
    let (a, _ca, _da) = instance(&server.url(), false);
    let (b, _cb, _db) = instance(&partition.url(), false);
    wait_subscribed(&[&a, &b]);
    for k in ["news:reuters:1", "news:ap:1"] {
        a.put(k, k.as_bytes(), Put::default()).unwrap();
        assert!(b.get(k).unwrap().is_some());
    }
    partition.cut();
    let rb = b.redis().unwrap();
    assert!(eventually(Duration::from_secs(10), || !rb.is_subscribed()));
    assert_eq!(a.invalidate("news:reuters:*").unwrap(), 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        b.stat("news:reuters:1").unwrap().is_some(),
        "cut off: B cannot have heard it yet"
    );
    partition.restore();
    assert!(
        eventually(Duration::from_secs(10), || b
            .stat("news:reuters:1")
            .unwrap()
            .is_none()),
        "B did not replay the invalidation it missed"
    );
    assert!(b.stat("news:ap:1").unwrap().is_some());
    assert_eq!(b.stats().unwrap().redis.invalidations_received, 1);
}

#[test]
fn dead_redis_degrades_to_local_tiers_and_the_tier_comes_back() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (a, _ca, _da) = instance(&server.url(), false);
    wait_subscribed(&[&a]);
    a.put("odds:g1:1", b"before", Put::default()).unwrap();
    let r = a.redis().unwrap();
    assert!(r.is_up());

    server.kill();
    // Reads and writes go on locally; never an error.
    let mut i = 0;
    let down = eventually(Duration::from_secs(10), || {
        i += 1;
        a.put(&format!("odds:down:{i}"), b"local", Put::default())
            .unwrap();
        assert!(a.get(&format!("odds:down:{i}")).unwrap().is_some());
        assert!(a.get(&format!("odds:missing:{i}")).unwrap().is_none());
        !r.is_up()
    });
    assert!(down, "breaker never opened");
    assert_eq!(a.get("odds:g1:1").unwrap().as_deref(), Some(&b"before"[..]));
    let text = a.metrics().unwrap().finish();
    assert!(text.contains("freshcache_redis_up 0\n"), "{text}");
    assert!(a.stats().unwrap().redis.errors >= 2);
    // With the breaker open a get costs no Redis round trip.
    let start = Instant::now();
    for _ in 0..100 {
        assert!(a.get("odds:missing:x").unwrap().is_none());
    }
    eprintln!("100 gets with redis down: {:?}", start.elapsed());

    server.restart();
    assert!(
        eventually(Duration::from_secs(15), || r.is_up() && r.is_subscribed()),
        "tier did not come back by itself"
    );
    a.put("odds:after:1", b"shared again", Put::default())
        .unwrap();
    let (b, _cb, _db) = instance(&server.url(), false);
    assert_eq!(
        b.get("odds:after:1").unwrap().as_deref(),
        Some(&b"shared again"[..])
    );
    let text = a.metrics().unwrap().finish();
    assert!(text.contains("freshcache_redis_up 1\n"), "{text}");
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_instances_with_200_callers_each_make_one_upstream_request() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let origin = Origin::start(Duration::from_millis(300));
    let url = format!("http://{}/odds", origin.addr);
    let (a, _ca, _da) = instance(&server.url(), false);
    let (b, _cb, _db) = instance(&server.url(), false);
    let rt = multi_thread_runtime();
    let values = rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(400));
        let mut tasks = Vec::new();
        for cache in [&a, &b] {
            for _ in 0..200 {
                let (cache, barrier, url) = (cache.clone(), barrier.clone(), url.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .get_or_fetch("odds:g9:1700000000", || async move {
                            reqwest::get(&url).await?.bytes().await
                        })
                        .await
                        .unwrap()
                }));
            }
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert_eq!(origin.count(), 1, "exactly one upstream request");
    assert!(values.iter().all(|v| v.as_ref() == b"{\"home\":-110}"));
    let (sa, sb) = (a.stats().unwrap(), b.stats().unwrap());
    assert_eq!(sa.redis.leases_won + sb.redis.leases_won, 1);
}

#[test]
fn fetchers_on_two_instances_make_one_request_for_one_url() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let origin = Origin::start(Duration::from_millis(300));
    let url = format!("http://{}/odds", origin.addr);
    let (a, _ca, _da) = instance(&server.url(), false);
    let (b, _cb, _db) = instance(&server.url(), false);
    let rt = multi_thread_runtime();
    let outcomes = rt.block_on(async {
        let mut tasks = Vec::new();
        for cache in [&a, &b] {
            let fetcher = Fetcher::new(cache).unwrap();
            for _ in 0..200 {
                let (fetcher, url) = (fetcher.clone(), url.clone());
                tasks.push(tokio::spawn(async move {
                    let opts = FetchOptions::default();
                    fetcher.fetch(&url, "odds:g10:1", &opts).await.unwrap()
                }));
            }
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert_eq!(origin.count(), 1, "exactly one upstream request");
    assert!(outcomes
        .iter()
        .all(|o| o.value.as_ref() == b"{\"home\":-110}"));
}

#[test]
fn a_dead_lease_holder_is_taken_over_after_expiry() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, _ca, _da) = instance_with(&server.url(), false, |c| {
        c.redis.lease_ttl.0 = Duration::from_millis(300);
    });
    let (b, _cb, _db) = instance_with(&server.url(), false, |c| {
        c.redis.lease_ttl.0 = Duration::from_millis(300);
    });
    let LeaseOutcome::Won(held) = a.redis().unwrap().lease("odds:g2:1") else {
        panic!("first lease must win")
    };
    // A "dies": its renewals stop, the lease is never released.
    std::mem::forget(held);
    drop(a);
    let start = Instant::now();
    match b.redis().unwrap().lease("odds:g2:1") {
        LeaseOutcome::Won(_) => {}
        other => panic!("expected a takeover, got {other:?}"),
    }
    eprintln!("takeover after {:?}", start.elapsed());
    assert_eq!(b.stats().unwrap().redis.leases_waited, 1);
}

#[test]
fn three_instances_share_one_global_quota_and_rate() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let origin = Origin::start(Duration::ZERO);
    let instances: Vec<_> = (0..3)
        .map(|_| {
            instance_with(&server.url(), false, |c| {
                c.fetch.rate_limit = Rate::parse("5/s").unwrap();
                c.fetch.quota = Rate::parse("12/month").unwrap();
            })
        })
        .collect();
    let rt = multi_thread_runtime();
    let refused = rt.block_on(async {
        let mut tasks = Vec::new();
        for (n, (cache, _, _)) in instances.iter().enumerate() {
            let fetcher = Fetcher::new(cache).unwrap();
            for t in 0..3 {
                let (fetcher, addr) = (fetcher.clone(), origin.addr);
                tasks.push(tokio::spawn(async move {
                    for i in 0.. {
                        let url = format!("http://{addr}/odds/{n}/{t}/{i}");
                        let key = format!("odds:q{n}x{t}:{i}");
                        match fetcher.fetch(&url, &key, &FetchOptions::default()).await {
                            Ok(_) => {}
                            Err(Error::QuotaExceeded { used, limit, .. }) => {
                                assert_eq!((used, limit), (12, 12));
                                return 1;
                            }
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                    0
                }));
            }
        }
        let mut refused = 0;
        for t in tasks {
            refused += t.await.unwrap();
        }
        refused
    });
    assert_eq!(
        origin.count(),
        12,
        "the instances together used the quota exactly"
    );
    assert_eq!(refused, 9);
    // Rate: any 6 consecutive arrivals span at least a second (5/s), less
    // a little slack for the loopback trip between slot and arrival.
    let arrivals = origin.arrivals.lock().unwrap().clone();
    let shortest = arrivals.windows(6).map(|w| w[5] - w[0]).min().unwrap();
    assert!(
        shortest >= Duration::from_millis(950),
        "6 requests within {shortest:?}"
    );
    // The library API counts against the same global quota.
    let r = instances[0].0.redis().unwrap();
    assert!(matches!(
        r.acquire_quota("origin"),
        Err(Error::QuotaExceeded { .. })
    ));
}

#[test]
fn metrics_show_the_redis_tier() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, _ca, _da) = instance(&server.url(), false);
    let (b, _cb, _db) = instance(&server.url(), false);
    a.put("odds:g1:1", b"{}", Put::default()).unwrap();
    b.get("odds:g1:1").unwrap().unwrap();
    b.get("odds:g404:1").unwrap();
    let text = b.metrics().unwrap().finish();
    for line in [
        "freshcache_redis_up 1\n",
        "freshcache_hits_total{tier=\"redis\",class=\"odds\"} 1\n",
        "freshcache_redis_misses_total 1\n",
        "freshcache_redis_backfills_total 1\n",
        "freshcache_redis_errors_total 0\n",
        "freshcache_redis_leases_total{outcome=\"won\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let text = a.metrics().unwrap().finish();
    assert!(text.contains("freshcache_redis_writes_total 1\n"), "{text}");
    // Without Redis, no Redis families.
    let dir = tempfile::tempdir().unwrap();
    let (plain, _) = common::open(dir.path());
    assert!(!plain
        .metrics()
        .unwrap()
        .finish()
        .contains("freshcache_redis_"));
}

#[test]
fn unreachable_redis_at_open_is_not_an_error() {
    // A port nothing listens on: the cache opens and works locally.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (a, _ca, _da) = instance(&format!("redis://127.0.0.1:{port}"), false);
    a.put("odds:g1:1", b"x", Put::default()).unwrap();
    assert!(a.get("odds:g1:1").unwrap().is_some());
    assert!(a.get("odds:g2:1").unwrap().is_none());
    assert_eq!(a.invalidate("odds:*").unwrap(), 1);
    assert!(matches!(
        a.redis().unwrap().lease("odds:g1:1"),
        LeaseOutcome::Unavailable
    ));
    assert_eq!(
        a.redis().unwrap().acquire_quota("h").unwrap(),
        Admission::Local
    );
}

/// Prints per-call figures (debug build; informational, nothing asserted).
#[test]
fn figures_for_the_report() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, _ca, _da) = instance(&server.url(), false);
    let (b, _cb, _db) = instance(&server.url(), false);
    let dir = tempfile::tempdir().unwrap();
    let (plain, _) = common::open(dir.path());
    let n = 200;
    let time = |label: &str, f: &mut dyn FnMut(usize)| {
        let start = Instant::now();
        for i in 0..n {
            f(i);
        }
        eprintln!(
            "{label:<34} {:>8.1} µs/op",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    };
    time("put, no redis", &mut |i| {
        plain
            .put(&format!("odds:p:{i}"), b"{\"x\":1}", Put::default())
            .unwrap();
    });
    time("put + write-through", &mut |i| {
        a.put(&format!("odds:p:{i}"), b"{\"x\":1}", Put::default())
            .unwrap();
    });
    time("get, redis read-through + backfill", &mut |i| {
        b.get(&format!("odds:p:{i}")).unwrap().unwrap();
    });
    time("get, local (L1) after backfill", &mut |i| {
        b.get(&format!("odds:p:{i}")).unwrap().unwrap();
    });
    time("get miss, redis up (1 round trip)", &mut |i| {
        assert!(b.get(&format!("odds:none:{i}")).unwrap().is_none());
    });
    time("get miss, no redis", &mut |i| {
        assert!(plain.get(&format!("odds:none:{i}")).unwrap().is_none());
    });
}
