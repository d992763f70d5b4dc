//! An instance that loses Redis never serves an invalidated entry: a
//! Redis restart that empties the data set, invalidations made while Redis
//! is stopped or partitioned (the outbox, published by whichever process
//! of the root connects first, a CLI call included), a silent partition.
//! Against real redis-server processes on loopback ports.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::{open_with, tool};
use freshcache::config::Consistency;
use freshcache::{Cache, Config, Error, Put, StaleReason};
use redis_server::{
    cli, eventually, instance, instance_with, reopen, wait_subscribed, RedisServer,
};

#[test]
fn entries_held_across_a_redis_restart_that_empties_it_are_not_served_as_fresh() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let (a, _ca, _da) = instance(&url, false);
    let strict = |c: &mut Config| c.redis.consistency = Consistency::Strict;
    let (b, _cb, _db) = instance_with(&url, false, strict);
    let (v, _cv, _dv) = instance(&url, false); // available (default)
    wait_subscribed(&[&a, &b, &v]);
    for k in ["news:r:1", "news:r:2"] {
        a.put(k, k.as_bytes(), Put::default()).unwrap();
        assert!(b.get(k).unwrap().is_some());
        assert!(v.get(k).unwrap().is_some());
    }
    assert!(b
        .guard()
        .require(&["news:r:1"])
        .unwrap()
        .unconfirmed
        .is_empty());

    server.kill();
    // Strict: as soon as B knows it lost Redis, its entries are misses and
    // the guard refuses them as unconfirmed.
    let rb = b.redis().unwrap();
    assert!(eventually(Duration::from_secs(10), || !rb.is_confirmed()));
    assert!(b.get("news:r:1").unwrap().is_none());
    match b.guard().require(&["news:r:1"]) {
        Err(Error::Stale(s)) => assert_eq!(s[0].reason, StaleReason::Unconfirmed),
        other => panic!("strict guard accepted an unconfirmed entry: {other:?}"),
    }
    // Available: served, counted, and listed by the guard.
    let rv = v.redis().unwrap();
    assert!(eventually(Duration::from_secs(10), || !rv.is_confirmed()));
    assert!(v.get("news:r:1").unwrap().is_some());
    let set = v.guard().require(&["news:r:1"]).unwrap();
    assert_eq!(set.unconfirmed, vec!["news:r:1".to_string()]);
    assert!(v.stats().unwrap().redis.unconfirmed_reads >= 2);
    let text = v.metrics().unwrap().finish();
    assert!(text.contains("freshcache_redis_confirmed 0\n"), "{text}");

    server.restart(); // empty: a new data set, a new epoch
    for (c, r) in [(&b, rb), (&v, rv)] {
        assert!(
            eventually(Duration::from_secs(15), || r.is_confirmed()),
            "did not reconcile after the restart"
        );
        for k in ["news:r:1", "news:r:2"] {
            assert!(
                c.get(k).unwrap().is_none(),
                "{k} served after the data set was replaced"
            );
        }
        assert!(c.stats().unwrap().redis.reconciles >= 1);
    }
}
#[test]
fn an_invalidation_made_while_redis_is_stopped_is_published_when_it_returns() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let strict = |c: &mut Config| c.redis.consistency = Consistency::Strict;
    let (a, _ca, a_dir) = instance(&url, false);
    let (b, _cb, _db) = instance_with(&url, false, strict);
    wait_subscribed(&[&a, &b]);
    a.put("injuries:p1:1", b"questionable", Put::default())
        .unwrap();
    a.put("injuries:p2:1", b"out", Put::default()).unwrap();
    assert!(b.get("injuries:p1:1").unwrap().is_some());
    assert!(b.get("injuries:p2:1").unwrap().is_some());

    server.kill();
    let ra = a.redis().unwrap();
    assert!(eventually(Duration::from_secs(10), || !ra.is_confirmed()));
    assert_eq!(a.invalidate("injuries:p1:*").unwrap(), 1);
    let s = a.stats().unwrap();
    assert_eq!(
        (s.redis.pending_unshared, s.redis.invalidations_not_shared),
        (1, 1)
    );
    let text = a.metrics().unwrap().finish();
    assert!(
        text.contains("freshcache_redis_pending_invalidations 1\n"),
        "{text}"
    );
    drop(a); // A's process ends with the invalidation in its outbox.

    // Redis comes back empty (a new epoch: B reconciles; the replay-only
    // path is the partition test below); A's invalidation must still be
    // published.
    server.restart();
    let served = |b: &Cache| b.get("injuries:p1:1").unwrap().is_some();
    assert!(
        !served(&b),
        "B served the key while it could not confirm it"
    );
    // A CLI call on A's root is the first to connect: it publishes the outbox.
    let (code, out) = cli(a_dir.path(), Some(&url), &["stats", "--json"], b"");
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["redis"]["pending_unshared"], 0, "{out}");
    let rb = b.redis().unwrap();
    assert!(eventually(Duration::from_secs(15), || rb.is_confirmed()));
    assert!(!served(&b));
    assert_eq!(b.stat("injuries:p1:1").unwrap(), None);
    let (a2, _) = reopen(a_dir.path(), &url, |_| {});
    assert_eq!(
        a2.stats().unwrap().redis.pending_unshared,
        0,
        "A's outbox is empty"
    );
    assert!(a2.get("injuries:p1:1").unwrap().is_none());
}
#[test]
fn outbox_is_published_in_order_when_redis_returns_with_its_data() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // A partition between A and Redis: Redis keeps its data and log, so
    // B catches up by replay only.
    let partition = redis_server::Partition::new(server.port);
    let (a, _ca, _da) = instance(&partition.url(), false);
    let (b, _cb, _db) = instance(&server.url(), false);
    wait_subscribed(&[&a, &b]);
    for i in 0..5 {
        let k = format!("odds:g{i}:1");
        a.put(&k, b"line", Put::default()).unwrap();
        assert!(b.get(&k).unwrap().is_some());
    }
    partition.cut();
    let ra = a.redis().unwrap();
    assert!(eventually(Duration::from_secs(10), || !ra.is_confirmed()));
    for i in 0..5 {
        a.invalidate(&format!("odds:g{i}:*")).unwrap();
    }
    assert_eq!(a.stats().unwrap().redis.pending_unshared, 5);
    assert!(b.get("odds:g0:1").unwrap().is_some(), "B cannot know yet");
    partition.restore();
    assert!(eventually(Duration::from_secs(15), || a
        .stats()
        .unwrap()
        .redis
        .pending_unshared
        == 0));
    assert!(eventually(Duration::from_secs(5), || (0..5)
        .all(|i| b.stat(&format!("odds:g{i}:1")).unwrap().is_none())));
    assert_eq!(
        b.stats().unwrap().redis.reconciles,
        1,
        "replayed, not reconciled"
    );
    let text = a.metrics().unwrap().finish();
    assert!(
        text.contains("freshcache_redis_pending_invalidations 0\n"),
        "{text}"
    );
}
#[test]
fn a_silent_partition_makes_entries_unconfirmed_within_seconds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let partition = redis_server::Partition::new(server.port);
    // B notices within its heartbeat (1 s) plus the ping's deadline (4 ×
    // redis.timeout): a shorter timeout than the harness's 5 s keeps that
    // under 10 s, still generous for a loaded machine before the freeze.
    let strict = |c: &mut Config| {
        c.redis.consistency = Consistency::Strict;
        c.redis.timeout.0 = Duration::from_secs(2);
    };
    let (a, _ca, _da) = instance(&server.url(), false);
    let (b, _cb, _db) = instance_with(&partition.url(), false, strict);
    wait_subscribed(&[&a, &b]);
    a.put("odds:g1:1", b"line", Put::default()).unwrap();
    assert!(b.get("odds:g1:1").unwrap().is_some());
    let rb = b.redis().unwrap();
    assert!(rb.is_confirmed());
    // No reset ever reaches B; only its heartbeat can tell.
    partition.freeze();
    let start = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || !rb.is_confirmed()),
        "B still confirmed 30 s behind a silent partition"
    );
    eprintln!("silent partition noticed after {:?}", start.elapsed());
    assert!(
        b.get("odds:g1:1").unwrap().is_none(),
        "strict: unconfirmed = miss"
    );
}
