//! The Redis tier under the fetch path: cross-instance single-flight
//! (leases) through `get_or_fetch` and the `Fetcher`, lease takeover, and
//! the global quota and rate, against real redis-server processes and a
//! counting HTTP origin on 127.0.0.1.

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
use freshcache::{Error, LeaseOutcome, Put};
use origin::Origin;
use redis_server::{instance, instance_with, multi_thread_runtime, RedisServer};

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
    // A's lease expires 1 s after its last renewal. A waiter gives up after
    // 2 × its own lease_ttl without progress: B's 5 s make that 10 s, so
    // the expiry falls well inside B's wait however slowly a loaded
    // machine polls (with equal short TTLs the margin was one TTL).
    let (a, _ca, _da) = instance_with(&server.url(), false, |c| {
        c.redis.lease_ttl.0 = Duration::from_secs(1);
    });
    let (b, _cb, _db) = instance_with(&server.url(), false, |c| {
        c.redis.lease_ttl.0 = Duration::from_secs(5);
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
    assert_eq!(
        b.stats().unwrap().redis.leases_waited,
        1,
        "B found the dead lease held and waited for its expiry"
    );
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
    // Rate: any 6 consecutive arrivals span about a second (5/s). The
    // bound leaves half of it as slack for scheduling jitter between a slot
    // and its arrival (a loaded machine can delay one request and let the
    // next follow closely); without the shared limit they arrive within
    // milliseconds.
    let arrivals = origin.arrivals.lock().unwrap().clone();
    let shortest = arrivals.windows(6).map(|w| w[5] - w[0]).min().unwrap();
    eprintln!("shortest span of 6 consecutive arrivals: {shortest:?}");
    assert!(
        shortest >= Duration::from_millis(500),
        "6 requests within {shortest:?}"
    );
    // The library API counts against the same global quota.
    let r = instances[0].0.redis().unwrap();
    assert!(matches!(
        r.acquire_quota("origin"),
        Err(Error::QuotaExceeded { .. })
    ));
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
