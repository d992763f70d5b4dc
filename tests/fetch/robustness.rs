//! Retries, timeouts, redirects, broken bodies, stale-if-error, the quota
//! and single-flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use freshcache::config::Rate;
use freshcache::{Error, FetchOptions, Fetcher, Freshness, Outcome};

use crate::origin::{raw_origin, reply, Origin, Reply};
use crate::{cache, fetcher, fetcher_with_timeout, opts, revalidate};

fn stale_if_error() -> FetchOptions {
    FetchOptions {
        stale_if_error: true,
        ..FetchOptions::default()
    }
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let o = Origin::start(|_, n| match n {
        1 => reply(503, &[], "busy"),
        2 => reply(502, &[], "bad gateway"),
        _ => reply(200, &[("etag", "\"ok\"")], "ok"),
    })
    .await;
    let (_d, cache, _clock) = cache();
    let out = fetcher(&cache)
        .fetch(&o.url("/r"), "api:r", &opts())
        .await
        .unwrap();
    assert_eq!((out.outcome, out.requests), (Outcome::Fetched, 3));
    assert_eq!(o.count(), 3);
    assert!(o
        .requests()
        .iter()
        .all(|r| r.header("if-none-match").is_none()));
    let stats = cache.stats().unwrap();
    assert_eq!(stats.upstream_requests.get("error"), Some(&2));
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let o = Origin::start(|_, n| match n {
        1 => reply(429, &[("retry-after", "1")], ""),
        _ => reply(200, &[], "ok"),
    })
    .await;
    let (_d, cache, _clock) = cache();
    // A huge backoff base: only Retry-After (1 s) can make this finish in time.
    let f = Fetcher::builder(&cache)
        .rate_limit(Rate::parse("1000/s").unwrap())
        .retry_base(Duration::from_secs(600))
        .retry_max(Duration::from_secs(5))
        .build()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        f.fetch(&o.url("/t"), "api:t", &opts()),
    )
    .await
    .expect("Retry-After was not honoured")
    .unwrap();
    assert_eq!((out.status, out.requests), (Some(200), 2));
}

#[tokio::test]
async fn retry_after_beyond_the_limit_fails_instead_of_waiting() {
    let o = Origin::start(|_, _| reply(429, &[("retry-after", "3600")], "")).await;
    let (_d, cache, _clock) = cache();
    let err = fetcher(&cache)
        .fetch(&o.url("/t"), "api:t", &opts())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("retry after 3600"), "{err}");
    assert_eq!(o.count(), 1);
}

#[tokio::test]
async fn a_hanging_server_times_out_with_exit_code_5() {
    let o = Origin::start(|_, _| Reply::Hang).await;
    let (_d, cache, _clock) = cache();
    // A short timeout: the origin never answers, so it always expires.
    let err = fetcher_with_timeout(&cache, Duration::from_millis(1500))
        .fetch(&o.url("/h"), "api:h", &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Upstream { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(err.exit_code(), 5);
    assert_eq!(o.count(), 1, "a read timeout is not retried");
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    drop(listener);
    let (_d, cache, _clock) = cache();
    let err = fetcher(&cache)
        .fetch(&url, "api:x", &opts())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert_eq!(
        cache.stats().unwrap().upstream_requests.get("error"),
        Some(&3)
    );
}

#[tokio::test]
async fn a_redirect_loop_is_bounded() {
    let o = Origin::start(|req, _| {
        let next = if req.path == "/a" { "/b" } else { "/a" };
        reply(302, &[("location", next)], "")
    })
    .await;
    let (_d, cache, _clock) = cache();
    let f = Fetcher::builder(&cache).max_redirects(4).build().unwrap();
    let err = f
        .fetch(&o.url("/a"), "api:loop", &opts())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too many redirects"), "{err}");
    assert_eq!(o.count(), 5, "the first request and four redirects");
}

#[tokio::test]
async fn permanent_redirects_are_remembered_and_each_hop_keeps_its_validators() {
    let o = Origin::start(|req, _| match req.path.as_str() {
        "/old" => reply(301, &[("location", "/new"), ("etag", "\"redirect\"")], ""),
        _ if req.header("if-none-match").as_deref() == Some("\"new\"") => {
            reply(304, &[("etag", "\"new\"")], "")
        }
        _ => reply(200, &[("etag", "\"new\"")], "moved"),
    })
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    let first = f.fetch(&o.url("/old"), "api:mv", &opts()).await.unwrap();
    assert_eq!((first.requests, first.url.ends_with("/new")), (2, true));
    assert_eq!(
        cache.stat("api:mv").unwrap().unwrap().etag.as_deref(),
        Some("\"new\"")
    );
    let again = f
        .fetch(&o.url("/old"), "api:mv", &revalidate())
        .await
        .unwrap();
    assert_eq!((again.outcome, again.requests), (Outcome::Revalidated, 1));
    let seen = o.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].path, "/new", "the 301 was cached");
    assert_eq!(seen[2].header("if-none-match").as_deref(), Some("\"new\""));
}

#[tokio::test]
async fn temporary_redirects_send_validators_only_to_the_hop_they_came_from() {
    let o = Origin::start(|req, _| match req.path.as_str() {
        "/tmp" => reply(307, &[("location", "/target")], ""),
        _ if req.header("if-none-match").is_some() => reply(304, &[], ""),
        _ => reply(200, &[("etag", "\"t\"")], "target"),
    })
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/tmp"), "api:tmp", &opts()).await.unwrap();
    let again = f
        .fetch(&o.url("/tmp"), "api:tmp", &revalidate())
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Revalidated);
    let seen = o.requests();
    assert_eq!(
        seen.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/tmp", "/target", "/tmp", "/target"]
    );
    assert_eq!(seen[2].header("if-none-match"), None);
    assert_eq!(seen[3].header("if-none-match").as_deref(), Some("\"t\""));
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_keeps_the_old_copy() {
    let addr = raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nonly a part",
    )
    .await;
    let (_d, cache, _clock) = cache();
    cache
        .put("api:cut", b"previous", freshcache::Put::default())
        .unwrap();
    let url = format!("http://{addr}/cut");
    let err = fetcher(&cache)
        .fetch(&url, "api:cut", &revalidate())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("body"), "{err}");
    assert_eq!(cache.get("api:cut").unwrap().unwrap(), "previous");
}

#[tokio::test]
async fn a_body_larger_than_the_value_limit_is_refused_while_streaming() {
    // No Content-Length: the size is only known by reading.
    let mut response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    response.extend(std::iter::repeat_n(b'x', 5000));
    let addr = raw_origin(Box::leak(response.into_boxed_slice())).await;
    let (_d, cache, _clock) = cache();
    let mut config = (*cache.config()).clone();
    config.cache.max_value_size.0 = 1000;
    cache.set_config(config);
    cache
        .put("api:big", b"previous", freshcache::Put::default())
        .unwrap();
    let url = format!("http://{addr}/big");
    let err = fetcher(&cache)
        .fetch(&url, "api:big", &revalidate())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_value_size"), "{err}");
    assert_eq!(cache.get("api:big").unwrap().unwrap(), "previous");
}

#[tokio::test]
async fn stale_copy_only_when_asked_and_marked_stale() {
    let o = Origin::start(|_, n| match n {
        1 => reply(200, &[("cache-control", "max-age=5")], "v1"),
        _ => reply(500, &[], "down"),
    })
    .await;
    let (_d, cache, clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/s"), "api:s", &opts()).await.unwrap();
    clock.advance(Duration::from_secs(6));
    let err = f.fetch(&o.url("/s"), "api:s", &opts()).await.unwrap_err();
    assert_eq!(err.exit_code(), 5);
    let out = f
        .fetch(&o.url("/s"), "api:s", &stale_if_error())
        .await
        .unwrap();
    assert_eq!(
        (out.outcome, out.freshness),
        (Outcome::StaleIfError, Freshness::Stale)
    );
    assert_eq!(&out.value[..], b"v1");
    assert!(out.error.unwrap().contains("500"));
    assert!(
        cache.get("api:s").unwrap().is_none(),
        "still stale in the cache"
    );
}

#[tokio::test]
async fn concurrent_callers_with_different_options_do_not_share_a_flight() {
    let o = Origin::start(|_, n| match (n, reply(500, &[], "down")) {
        (1, _) => reply(200, &[("cache-control", "max-age=5")], "v1"),
        (_, Reply::Now(r)) => Reply::After(Duration::from_millis(200), r),
        (_, other) => other,
    })
    .await;
    let (_d, cache, clock) = cache();
    let f = fetcher(&cache);
    let url = o.url("/s");
    f.fetch(&url, "api:s", &opts()).await.unwrap();
    clock.advance(Duration::from_secs(6));
    let stale_ok = stale_if_error();
    let plain = opts();
    let (a, b) = tokio::join!(
        f.fetch(&url, "api:s", &plain),
        f.fetch(&url, "api:s", &stale_ok)
    );
    assert!(
        a.is_err(),
        "no stale copy for a caller that did not ask: {a:?}"
    );
    assert_eq!(b.unwrap().outcome, Outcome::StaleIfError);
}

#[tokio::test]
async fn must_revalidate_means_an_error_not_stale_content() {
    let o = Origin::start(|_, n| match n {
        1 => reply(
            200,
            &[("cache-control", "max-age=5, must-revalidate")],
            "v1",
        ),
        _ => reply(503, &[], ""),
    })
    .await;
    let (_d, cache, clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/m"), "api:m", &opts()).await.unwrap();
    clock.advance(Duration::from_secs(6));
    let err = f
        .fetch(&o.url("/m"), "api:m", &stale_if_error())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Upstream { .. }), "{err:?}");
}

#[tokio::test]
async fn the_quota_is_a_clear_error_and_survives_a_restart() {
    let o = Origin::start(|_, _| reply(200, &[("cache-control", "no-cache")], "x")).await;
    let (dir, cache, clock) = cache();
    let quota = Rate::parse("3/month").unwrap();
    let f = Fetcher::builder(&cache).quota(quota).build().unwrap();
    for _ in 0..3 {
        f.fetch(&o.url("/q"), "api:q", &opts()).await.unwrap();
    }
    assert_eq!(f.quota().unwrap(), (3, 3));
    drop((f, cache));
    let cache = freshcache::Cache::builder()
        .root(dir.path().join("c"))
        .clock(clock.clone())
        .open()
        .unwrap();
    let f = Fetcher::builder(&cache).quota(quota).build().unwrap();
    let err = f.fetch(&o.url("/q"), "api:q", &opts()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::QuotaExceeded {
                used: 3,
                limit: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 5);
    assert_eq!(o.count(), 3, "no request past the quota");
    clock.advance(Duration::from_secs(30 * 86_400));
    f.fetch(&o.url("/q"), "api:q", &opts()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_callers_make_one_request() {
    let o = Origin::start(|_, _| match reply(200, &[("etag", "\"one\"")], "shared") {
        Reply::Now(r) => Reply::After(Duration::from_millis(100), r), // keep the flight open
        other => other,
    })
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    let url = o.url("/one");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (f, url) = (f.clone(), url.clone());
            tokio::spawn(async move { f.fetch(&url, "odds:g1:one", &opts()).await })
        })
        .collect();
    let mut shared = 0;
    for t in tasks {
        let out = t.await.unwrap().unwrap();
        assert_eq!(&out.value[..], b"shared");
        shared += usize::from(out.shared);
    }
    assert_eq!(o.count(), 1);
    let stats = cache.stats().unwrap();
    assert_eq!(stats.upstream_requests.values().sum::<u64>(), 1);
    assert!(
        shared > 0 && stats.upstream_calls_avoided >= 999,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_or_fetch_runs_a_non_http_loader_once() {
    let (_d, cache, _clock) = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_fetch("llm:features:c9:2026-11-21", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>(vec![7u8; 64])
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 64);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let err = cache
        .get_or_fetch("llm:features:c9:other", || async {
            Err::<Vec<u8>, _>(std::io::Error::other("model offline"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Loader { .. }), "{err:?}");
    assert!(cache.stat("llm:features:c9:other").unwrap().is_none());
}
