//! The shared Redis tier against real redis-server processes on loopback
//! ports: read/write-through between instances, pattern invalidation over
//! pub/sub (and its replay after a partition), a Redis that dies and comes
//! back, a 3-node Redis Cluster, metrics. The fetch path (leases, global
//! quota and rate) is in `redis_fetch.rs`.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::{open_with, tool};
use freshcache::{Admission, LeaseOutcome, Put};
use redis_server::{
    eventually, instance, instance_with, wait_subscribed, Partition, RedisCluster, RedisServer,
};

/// The read/write/invalidate contract, on one server or a cluster.
fn read_write_invalidate(url: &str, cluster: bool) {
    read_write_invalidate_with(url, cluster, |_| {});
}

fn read_write_invalidate_with(url: &str, cluster: bool, tweak: impl Fn(&mut freshcache::Config)) {
    let (a, _ca, _da) = instance_with(url, cluster, &tweak);
    let (b, cb, _db) = instance_with(url, cluster, &tweak);
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
    let (c, cc, _dc) = instance_with(url, cluster, &tweak);
    cc.advance(Duration::from_secs(61));
    assert!(
        c.get("odds:g1:1").unwrap().is_none(),
        "stale in redis = miss"
    );
    drop(c);

    // Pattern invalidation on A reaches B's local tiers (promptly: the
    // deadlines below only guard a hang on a loaded machine).
    for k in ["news:reuters:1", "news:reuters:2", "news:ap:1"] {
        a.put(k, k.as_bytes(), Put::default()).unwrap();
        assert!(b.get(k).unwrap().is_some());
    }
    assert!(b.stat("news:reuters:1").unwrap().is_some());
    assert_eq!(a.invalidate("news:reuters:*").unwrap(), 2);
    let gone = eventually(Duration::from_secs(30), || {
        b.stat("news:reuters:1").unwrap().is_none() && b.stat("news:reuters:2").unwrap().is_none()
    });
    assert!(gone, "B still holds invalidated keys after 30s");
    assert!(
        b.stat("news:ap:1").unwrap().is_some(),
        "non-matching key kept"
    );
    assert!(
        b.get("news:reuters:1").unwrap().is_none(),
        "gone from redis too"
    );
    assert!(b.get("news:ap:1").unwrap().is_some());
    assert!(eventually(Duration::from_secs(30), || b
        .stats()
        .unwrap()
        .redis
        .invalidations_received
        >= 1));

    // Segment wildcards, and a delete, travel the same way.
    a.put("news:g7:2026-11-21", b"x", Put::default()).unwrap();
    a.put("news:g8:2026-11-22", b"y", Put::default()).unwrap();
    b.get("news:g7:2026-11-21").unwrap().unwrap();
    b.get("news:g8:2026-11-22").unwrap().unwrap();
    a.invalidate("news:*:2026-11-21").unwrap();
    assert!(eventually(Duration::from_secs(30), || b
        .stat("news:g7:2026-11-21")
        .unwrap()
        .is_none()));
    assert!(b.stat("news:g8:2026-11-22").unwrap().is_some());
    assert!(a.delete("news:g8:2026-11-22").unwrap());
    assert!(eventually(Duration::from_secs(30), || b
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
fn tls_connection_passes_the_same_read_write_invalidate_contract() {
    let Some(server) = RedisServer::start_tls() else {
        return;
    };
    let ca = server.ca_file();
    read_write_invalidate_with(&server.tls_url(), false, |c| {
        c.redis.tls_ca_file = Some(ca.clone())
    });
    // Without the test's CA the server's certificate is not trusted: the
    // cache still opens and works locally, the tier is simply down.
    let (d, _cd, _dd) = instance(&server.tls_url(), false);
    d.put("odds:g1:1", b"local", Put::default()).unwrap();
    assert!(
        !d.redis().unwrap().is_confirmed(),
        "TLS handshake must fail"
    );
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
    // Counted just after the local delete commits.
    assert!(eventually(Duration::from_secs(30), || b
        .stats()
        .unwrap()
        .redis
        .invalidations_received
        == 1));
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
