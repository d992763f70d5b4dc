//! News feeds from `data/feeds/` served by the scripted origin.

use std::time::Duration;

use freshcache::config::{Dur, FeedConfig};
use freshcache::fetch::feeds::{self, article_key, Article};
use freshcache::Outcome;

use crate::origin::{reply, Origin};
use crate::{cache, fetcher};

/// Serves `data/feeds/<file>` with a strong ETag of its content; 304 on a match.
pub async fn feed_origin() -> Origin {
    Origin::start(|req, _| {
        let path = format!("{}/data/feeds{}", env!("CARGO_MANIFEST_DIR"), req.path);
        let Ok(body) = std::fs::read_to_string(path) else {
            return reply(404, &[], "");
        };
        let etag = format!("\"{}\"", &blake3::hash(body.as_bytes()).to_hex()[..16]);
        if req.header("if-none-match").as_deref() == Some(etag.as_str()) {
            reply(304, &[("etag", etag.as_str())], "")
        } else {
            reply(200, &[("etag", etag.as_str())], &body)
        }
    })
    .await
}

pub fn feed(name: &str, url: String) -> FeedConfig {
    FeedConfig {
        name: name.into(),
        url,
        every: Dur(Duration::from_secs(300)),
        class: None,
        max_size: None,
    }
}

#[tokio::test]
async fn rss_atom_and_json_feed_articles_are_stored_and_a_malformed_feed_fails_alone() {
    let o = feed_origin().await;
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    let list = [
        feed("wire", o.url("/wire.xml")),
        feed("broken", o.url("/malformed.xml")),
        feed("boxscore", o.url("/boxscore.atom")),
        feed("oddsdesk", o.url("/oddsdesk.json")),
    ];
    let reports = feeds::refresh_all(&f, &list).await;
    let articles: Vec<usize> = reports.iter().map(|r| r.articles).collect();
    assert_eq!(articles, [3, 0, 2, 2]);
    assert!(
        reports[1].error.as_deref().unwrap().contains("malformed"),
        "{reports:?}"
    );
    assert_eq!(reports[1].exit_code, Some(5));
    assert!(reports
        .iter()
        .enumerate()
        .all(|(i, r)| (i == 1) == r.error.is_some()));

    let a: Article = cache
        .get_json(&article_key("wire", "sw-4471"))
        .unwrap()
        .unwrap();
    assert_eq!(
        a.title.as_deref(),
        Some("Injury report: starting QB questionable")
    );
    assert_eq!(a.published.as_deref(), Some("2026-11-21T11:30:00+00:00"));
    let guid = "https://sideline-wire.example/2026/11/21/chiefs-safety";
    assert!(cache.get(&article_key("wire", guid)).unwrap().is_some());
    let atom: Article = cache
        .get_json(&article_key(
            "boxscore",
            "tag:boxscore-daily.example,2026-11-21:ot-thriller",
        ))
        .unwrap()
        .unwrap();
    assert!(atom.content.unwrap().contains("drive chart"));
    let json: Article = cache
        .get_json("news:oddsdesk:od-2026-11-21-001")
        .unwrap()
        .unwrap();
    assert_eq!(json.summary.as_deref(), Some("Total down 3.5 points"));
    assert_eq!(cache.list(Some("news:wire:*")).unwrap().len(), 3);
    assert!(cache.list(Some("news:broken:*")).unwrap().is_empty());

    // Second refresh: 304s, nothing re-parsed; the broken feed is fetched again.
    let again = feeds::refresh_all(&f, &list).await;
    for i in [0, 2, 3] {
        assert_eq!(
            again[i].outcome,
            Some(Outcome::Revalidated),
            "{:?}",
            again[i]
        );
        assert_eq!((again[i].articles, again[i].body_bytes), (0, 0));
    }
    assert!(again[1].error.is_some());
    let broken: Vec<_> = o
        .requests()
        .into_iter()
        .filter(|r| r.path == "/malformed.xml")
        .collect();
    assert_eq!(broken.len(), 2);
    assert_eq!(
        broken[1].header("if-none-match"),
        None,
        "a malformed feed is not kept"
    );
}

#[tokio::test]
async fn a_304_keeps_the_feeds_articles_fresh_without_parsing() {
    let o = feed_origin().await;
    let (_d, cache, clock) = cache();
    let f = fetcher(&cache);
    let wire = feed("wire", o.url("/wire.xml"));
    let first = feeds::refresh(&f, &wire).await.unwrap();
    assert_eq!((first.articles, first.confirmed), (3, 0));
    let key = article_key("wire", "sw-4471");
    clock.advance(Duration::from_secs(3601)); // past the news TTL (1h)
    assert!(cache.get(&key).unwrap().is_none(), "expired");
    let again = feeds::refresh(&f, &wire).await.unwrap();
    assert_eq!(again.outcome, Some(Outcome::Revalidated));
    assert_eq!(
        (again.articles, again.confirmed, again.body_bytes),
        (0, 3, 0)
    );
    assert!(
        cache.get(&key).unwrap().is_some(),
        "the 304 confirmed it current"
    );
}
