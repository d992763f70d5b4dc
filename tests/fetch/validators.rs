//! Conditional requests, 304 handling and freshness from response headers.

use std::time::Duration;

use freshcache::{Freshness, Outcome};

use crate::origin::{reply, Origin};
use crate::{cache, fetcher, opts, revalidate};

const BODY: &str = "{\"home\":-110,\"away\":100}";

/// Answers 200 with `validators` the first time, then 304 when the request
/// carries `expect` in `header`, 200 otherwise.
async fn validating_origin(
    validators: &'static [(&'static str, &'static str)],
    header: &'static str,
    expect: &'static str,
) -> Origin {
    Origin::start(move |req, n| {
        if n > 1 && req.header(header).as_deref() == Some(expect) {
            reply(304, validators, "")
        } else {
            reply(200, validators, BODY)
        }
    })
    .await
}

#[tokio::test]
async fn strong_etag_is_echoed_and_304_moves_no_body() {
    let o = validating_origin(&[("etag", "\"v1\"")], "if-none-match", "\"v1\"").await;
    let (_d, cache, clock) = cache();
    let f = fetcher(&cache);
    let first = f.fetch(&o.url("/odds"), "api:odds", &opts()).await.unwrap();
    assert_eq!(first.outcome, Outcome::Fetched);
    assert_eq!(
        (first.status, first.body_bytes),
        (Some(200), BODY.len() as u64)
    );
    assert_eq!(o.last().header("if-none-match"), None);

    let hit = f.fetch(&o.url("/odds"), "api:odds", &opts()).await.unwrap();
    assert_eq!(hit.outcome, Outcome::Fresh);
    assert_eq!(o.count(), 1, "a fresh entry makes no request");

    clock.advance(Duration::from_secs(3601));
    let hash_before = cache.stat("api:odds").unwrap().unwrap().hash;
    let again = f.fetch(&o.url("/odds"), "api:odds", &opts()).await.unwrap();
    assert_eq!(again.outcome, Outcome::Revalidated);
    assert_eq!((again.status, again.body_bytes), (Some(304), 0));
    assert_eq!(&again.value[..], BODY.as_bytes());
    assert_eq!(again.freshness, Freshness::Fresh);
    assert_eq!(o.last().header("if-none-match").as_deref(), Some("\"v1\""));
    assert_eq!(o.last().header("if-modified-since"), None);
    let meta = cache.stat("api:odds").unwrap().unwrap();
    assert_eq!(meta.hash, hash_before, "the blob is untouched");
    assert!(meta.freshness.is_fresh());
    let stats = cache.stats().unwrap();
    assert_eq!(stats.upstream_requests.get("200"), Some(&1));
    assert_eq!(stats.upstream_requests.get("304"), Some(&1));
    assert_eq!(stats.bytes_saved_by_304, BODY.len() as u64);
}

#[tokio::test]
async fn weak_etag_is_echoed_byte_for_byte() {
    let o = validating_origin(&[("etag", "W/\"5f-a b\"")], "if-none-match", "W/\"5f-a b\"").await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/w"), "api:w", &opts()).await.unwrap();
    let again = f.fetch(&o.url("/w"), "api:w", &revalidate()).await.unwrap();
    assert_eq!(again.outcome, Outcome::Revalidated);
    assert_eq!(
        o.last().header("if-none-match").as_deref(),
        Some("W/\"5f-a b\"")
    );
}

#[tokio::test]
async fn last_modified_only_is_sent_verbatim_as_if_modified_since() {
    const LM: &str = "Sat, 21 Nov 2026 09:00:00 GMT";
    let o = validating_origin(&[("last-modified", LM)], "if-modified-since", LM).await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/lm"), "api:lm", &opts()).await.unwrap();
    let again = f
        .fetch(&o.url("/lm"), "api:lm", &revalidate())
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Revalidated);
    assert_eq!(o.last().header("if-modified-since").as_deref(), Some(LM));
    assert_eq!(o.last().header("if-none-match"), None);
}

#[tokio::test]
async fn with_both_validators_if_none_match_is_sent() {
    const LM: &str = "Sat, 21 Nov 2026 09:00:00 GMT";
    let o = validating_origin(
        &[("etag", "\"b\""), ("last-modified", LM)],
        "if-none-match",
        "\"b\"",
    )
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/both"), "api:both", &opts()).await.unwrap();
    let again = f
        .fetch(&o.url("/both"), "api:both", &revalidate())
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Revalidated);
    assert_eq!(o.last().header("if-none-match").as_deref(), Some("\"b\""));
    let meta = cache.stat("api:both").unwrap().unwrap();
    assert_eq!(
        meta.last_modified.as_deref(),
        Some(LM),
        "both validators kept"
    );
}

#[tokio::test]
async fn without_validators_the_request_is_unconditional_and_content_deduplicates() {
    let o = Origin::start(|_, _| reply(200, &[], BODY)).await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/n"), "api:n", &opts()).await.unwrap();
    let again = f.fetch(&o.url("/n"), "api:n", &revalidate()).await.unwrap();
    assert_eq!((again.outcome, again.status), (Outcome::Fetched, Some(200)));
    assert!(again.deduplicated, "unchanged content is stored once");
    let last = o.last();
    assert_eq!(
        (
            last.header("if-none-match"),
            last.header("if-modified-since")
        ),
        (None, None)
    );
}

#[tokio::test]
async fn changed_resource_gives_new_bytes_and_new_validators() {
    let o = Origin::start(|req, n| match (n, req.header("if-none-match")) {
        (1, _) => reply(200, &[("etag", "\"v1\"")], "old"),
        (_, Some(e)) if e == "\"v1\"" => reply(200, &[("etag", "\"v2\"")], "new!"),
        _ => reply(500, &[], ""),
    })
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/c"), "api:c", &opts()).await.unwrap();
    let out = f.fetch(&o.url("/c"), "api:c", &revalidate()).await.unwrap();
    assert_eq!((out.outcome, out.body_bytes), (Outcome::Fetched, 4));
    assert_eq!(cache.get("api:c").unwrap().unwrap(), "new!");
    assert_eq!(
        cache.stat("api:c").unwrap().unwrap().etag.as_deref(),
        Some("\"v2\"")
    );
}

#[tokio::test]
async fn max_age_shortens_the_class_ttl_and_may_lengthen_it_when_configured() {
    let o = Origin::start(|_, _| reply(200, &[("cache-control", "max-age=30")], BODY)).await;
    let (_d, cache, clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/m"), "api:m", &opts()).await.unwrap(); // class default: 1h
    let m = cache.stat("api:m").unwrap().unwrap();
    assert_eq!(m.expires_at - m.created_at, 30_000);
    clock.advance(Duration::from_secs(31));
    assert!(cache.get("api:m").unwrap().is_none());

    let long = Origin::start(|_, _| reply(200, &[("cache-control", "max-age=7200")], BODY)).await;
    f.fetch(&long.url("/l"), "api:l", &opts()).await.unwrap();
    let m = cache.stat("api:l").unwrap().unwrap();
    assert_eq!(
        m.expires_at - m.created_at,
        3_600_000,
        "the shorter (class) wins"
    );
    let server = freshcache::Fetcher::builder(&cache)
        .server_ttl(freshcache::config::ServerTtl::Server)
        .build()
        .unwrap();
    server
        .fetch(&long.url("/l"), "api:l2", &opts())
        .await
        .unwrap();
    let m = cache.stat("api:l2").unwrap().unwrap();
    assert_eq!(m.expires_at - m.created_at, 7_200_000);
}

#[tokio::test]
async fn expires_sets_the_lifetime_from_date() {
    let o = Origin::start(|_, _| {
        reply(
            200,
            &[
                ("date", "Sat, 21 Nov 2026 09:00:00 GMT"),
                ("expires", "Sat, 21 Nov 2026 09:02:00 GMT"),
            ],
            BODY,
        )
    })
    .await;
    let (_d, cache, _clock) = cache();
    fetcher(&cache)
        .fetch(&o.url("/e"), "api:e", &opts())
        .await
        .unwrap();
    let m = cache.stat("api:e").unwrap().unwrap();
    assert_eq!(m.expires_at - m.created_at, 120_000);
}

#[tokio::test]
async fn no_store_is_returned_but_not_stored() {
    let o = Origin::start(|_, _| reply(200, &[("cache-control", "no-store")], BODY)).await;
    let (_d, cache, _clock) = cache();
    let out = fetcher(&cache)
        .fetch(&o.url("/s"), "api:s", &opts())
        .await
        .unwrap();
    assert_eq!((out.outcome, out.stored), (Outcome::Fetched, false));
    assert_eq!(&out.value[..], BODY.as_bytes());
    assert!(cache.stat("api:s").unwrap().is_none());
}

#[tokio::test]
async fn no_cache_is_stored_but_revalidated_on_every_fetch() {
    let o = validating_origin(
        &[("etag", "\"nc\""), ("cache-control", "no-cache")],
        "if-none-match",
        "\"nc\"",
    )
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/nc"), "api:nc", &opts()).await.unwrap();
    assert!(cache.stat("api:nc").unwrap().is_some());
    for _ in 0..2 {
        let out = f.fetch(&o.url("/nc"), "api:nc", &opts()).await.unwrap();
        assert_eq!(out.outcome, Outcome::Revalidated);
    }
    assert_eq!(o.count(), 3);
    assert_eq!(o.last().header("if-none-match").as_deref(), Some("\"nc\""));
}

#[tokio::test]
async fn a_304_merges_headers_and_recomputes_freshness() {
    let o = Origin::start(|req, n| match n {
        1 => reply(
            200,
            &[
                ("etag", "\"x\""),
                ("cache-control", "max-age=10"),
                ("x-shard", "a"),
            ],
            BODY,
        ),
        _ if req.header("if-none-match").as_deref() == Some("\"x\"") => reply(
            304,
            &[
                ("cache-control", "max-age=600"),
                ("x-shard", "b"),
                ("connection", "keep-alive"),
            ],
            "",
        ),
        _ => reply(500, &[], ""),
    })
    .await;
    let (_d, cache, clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/r"), "api:r", &opts()).await.unwrap();
    clock.advance(Duration::from_secs(11));
    let out = f.fetch(&o.url("/r"), "api:r", &opts()).await.unwrap();
    assert_eq!(out.outcome, Outcome::Revalidated);
    let m = cache.stat("api:r").unwrap().unwrap();
    assert_eq!(
        m.expires_at - m.created_at,
        600_000,
        "the 304's max-age applies"
    );
    assert_eq!(
        m.etag.as_deref(),
        Some("\"x\""),
        "a 304 without ETag keeps the old one"
    );
    let h: serde_json::Value = serde_json::from_str(m.headers.as_deref().unwrap()).unwrap();
    assert_eq!(h["x-shard"], "b");
    assert_eq!(
        h["content-length"],
        BODY.len().to_string(),
        "not taken from the 304"
    );
    assert!(h.get("connection").is_none());
}

#[tokio::test]
async fn a_304_without_validators_does_not_empty_the_entry() {
    let o = Origin::start(|_, n| match n {
        1 => reply(200, &[("etag", "\"feed\"")], BODY),
        _ => reply(304, &[], ""),
    })
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    f.fetch(&o.url("/f"), "api:f", &opts()).await.unwrap();
    let out = f.fetch(&o.url("/f"), "api:f", &revalidate()).await.unwrap();
    assert_eq!(&out.value[..], BODY.as_bytes());
    assert_eq!(cache.get("api:f").unwrap().unwrap(), BODY.as_bytes());
    assert_eq!(
        cache.stat("api:f").unwrap().unwrap().etag.as_deref(),
        Some("\"feed\"")
    );
}

#[tokio::test]
async fn an_unsolicited_304_is_never_stored_as_a_body() {
    let o = Origin::start(|_, _| reply(304, &[("etag", "\"z\"")], "")).await;
    let (_d, cache, _clock) = cache();
    let err = fetcher(&cache)
        .fetch(&o.url("/z"), "api:z", &opts())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 5);
    assert!(cache.stat("api:z").unwrap().is_none());
}
