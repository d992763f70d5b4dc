//! `fetch/freshness.rs` beside the `http-cache-semantics` crate (RFC 7234,
//! as a private cache) on the same responses. Where they agree the table
//! says so; where they differ the row records both answers and why
//! freshcache keeps its own (ARCHITECTURE.md, "Freshness from upstream").

use std::time::{Duration, SystemTime};

use freshcache::config::ServerTtl;
use freshcache::fetch::freshness::{self, Lifetime};
use http_cache_semantics::{CacheOptions, CachePolicy};

const CLASS_TTL: Duration = Duration::from_secs(3600);

type Headers<'a> = Vec<(&'a str, &'a str)>;

/// (headers, freshcache's stored lifetime with `server_ttl: server`,
/// the crate's time_to_live (None: not storable)).
fn case(headers: &[(&str, &str)], now: SystemTime) -> (Lifetime, Option<Duration>) {
    let mut res = http::Response::builder().status(200);
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        res = res.header(*k, *v);
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let res = res.body(()).unwrap();
    let req = http::Request::get("http://origin.test/odds")
        .body(())
        .unwrap();
    let opts = CacheOptions {
        shared: false,
        ..CacheOptions::default()
    };
    let policy = CachePolicy::new_options(&req, &res, now, opts);
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ours = freshness::lifetime(
        &freshness::from_response(&map),
        CLASS_TTL,
        ServerTtl::Server,
        now_ms,
    );
    let theirs = policy.is_storable().then(|| policy.time_to_live(now));
    (ours, theirs)
}

#[test]
fn freshness_agrees_with_http_cache_semantics_where_the_rfc_is_explicit() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let date = httpdate::fmt_http_date(now);
    let in_5m = httpdate::fmt_http_date(now + Duration::from_secs(300));
    let hour_ago = httpdate::fmt_http_date(now - Duration::from_secs(3600));
    let s = Duration::from_secs;
    let fresh = Lifetime::Fresh;
    // (headers, freshcache, http-cache-semantics)
    let agree: Vec<(Headers, Lifetime, Option<Duration>)> = vec![
        (
            vec![("cache-control", "max-age=60")],
            fresh(s(60)),
            Some(s(60)),
        ),
        (
            vec![("cache-control", "max-age=100"), ("age", "40")],
            fresh(s(60)),
            Some(s(60)),
        ),
        (
            vec![("date", &date), ("expires", &in_5m)],
            fresh(s(300)),
            Some(s(300)),
        ),
        (
            vec![
                ("date", &date),
                ("expires", &in_5m),
                ("cache-control", "max-age=10"),
            ],
            fresh(s(10)),
            Some(s(10)),
        ),
        (
            vec![("date", &date), ("expires", "0")],
            fresh(s(0)),
            Some(s(0)),
        ),
        (
            vec![("cache-control", "max-age=60, must-revalidate")],
            fresh(s(60)),
            Some(s(60)),
        ),
        (
            vec![("cache-control", "private, max-age=60")],
            fresh(s(60)),
            Some(s(60)),
        ),
        // A private cache ignores s-maxage.
        (
            vec![("cache-control", "s-maxage=10, max-age=60")],
            fresh(s(60)),
            Some(s(60)),
        ),
        (vec![("cache-control", "no-store")], Lifetime::NoStore, None),
        // An invalid max-age is stale (RFC 9111 §4.2.1).
        (
            vec![("cache-control", "max-age=abc")],
            fresh(s(0)),
            Some(s(0)),
        ),
        // no-cache: revalidate before every use.
        (
            vec![("cache-control", "no-cache, max-age=60")],
            fresh(s(0)),
            Some(s(0)),
        ),
    ];
    for (h, want_ours, want_theirs) in &agree {
        let (ours, theirs) = case(h, now);
        assert_eq!((&ours, &theirs), (want_ours, want_theirs), "{h:?}");
    }

    // Where they differ, and what freshcache does instead.
    let differ: Vec<(Headers, Lifetime, Option<Duration>, &str)> = vec![
        (
            // No explicit freshness: the crate applies the 10% Last-Modified
            // heuristic (RFC 9111 §4.2.2, "MAY"); freshcache uses the class
            // TTL, which is the contract for that data type.
            vec![("date", &date), ("last-modified", &hour_ago)],
            fresh(CLASS_TTL),
            Some(s(360)),
            "heuristic",
        ),
        (
            // Conflicting max-age: freshcache takes the shorter (the
            // conservative reading of §4.2.1); the crate one of them.
            vec![("cache-control", "max-age=90, max-age=30")],
            fresh(s(30)),
            Some(s(90)),
            "duplicate max-age",
        ),
        (
            // An absurd max-age: clamped to 100 years (policy::MAX_TTL),
            // so every expiry stays representable.
            vec![("cache-control", "max-age=99999999999")],
            fresh(s(36_525 * 86_400)),
            Some(s(99_999_999_999)),
            "absurd max-age",
        ),
    ];
    for (h, want_ours, want_theirs, why) in &differ {
        let (ours, theirs) = case(h, now);
        assert_eq!(&ours, want_ours, "{why}: {h:?}");
        assert_eq!(&theirs, want_theirs, "{why}: {h:?} (the crate changed?)");
    }
}
