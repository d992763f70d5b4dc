//! An entry remembers the URL it came from.

use freshcache::{Outcome, Put};

use crate::origin::{reply, Origin};
use crate::{cache, fetcher, opts};

#[tokio::test]
async fn fetching_another_url_into_a_key_is_a_miss_and_goes_upstream() {
    let o = Origin::start(|req, _| {
        let body = if req.path == "/one" {
            "from one"
        } else {
            "from two"
        };
        reply(
            200,
            &[("etag", "\"e1\""), ("cache-control", "max-age=600")],
            body,
        )
    })
    .await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    let first = f.fetch(&o.url("/one"), "api:k", &opts()).await.unwrap();
    assert_eq!(first.outcome, Outcome::Fetched);
    // Same URL again: fresh, no request.
    let again = f.fetch(&o.url("/one"), "api:k", &opts()).await.unwrap();
    assert_eq!((again.outcome, o.count()), (Outcome::Fresh, 1));
    // Another URL into the same key: a miss, unconditional (URL1's ETag
    // belongs to another resource), and the key now holds URL2's body.
    let other = f.fetch(&o.url("/two"), "api:k", &opts()).await.unwrap();
    assert_eq!(other.outcome, Outcome::Fetched);
    assert_eq!(other.value, "from two");
    assert_eq!(o.count(), 2);
    assert_eq!(o.last().path, "/two");
    assert_eq!(o.last().header("if-none-match"), None);
    assert_eq!(cache.get("api:k").unwrap().unwrap(), "from two");
    // And URL1 is now the other one.
    let back = f.fetch(&o.url("/one"), "api:k", &opts()).await.unwrap();
    assert_eq!((back.outcome, o.count()), (Outcome::Fetched, 3));
}

#[tokio::test]
async fn a_key_written_by_put_is_a_miss_for_a_fetch() {
    let o = Origin::start(|_, _| reply(200, &[("cache-control", "max-age=600")], "upstream")).await;
    let (_d, cache, _clock) = cache();
    cache.put("api:p", b"local", Put::default()).unwrap();
    let f = fetcher(&cache);
    let out = f.fetch(&o.url("/p"), "api:p", &opts()).await.unwrap();
    assert_eq!((out.outcome, o.count()), (Outcome::Fetched, 1));
    assert_eq!(cache.get("api:p").unwrap().unwrap(), "upstream");
}
