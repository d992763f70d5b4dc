//! News feeds: each configured feed is revalidated into `feeds:<name>`; on
//! a 200 it is parsed (RSS 2.0, Atom, JSON Feed via `feed-rs`) and every
//! article stored as `news:<name>:<article_id>` (JSON). On a 304 nothing
//! is parsed. A malformed feed fails alone and its document is dropped, so
//! the next refresh downloads and parses it again.

use serde::Serialize;

use super::{FetchOptions, Fetcher, Outcome};
use crate::base::config::FeedConfig;
use crate::base::error::{Error, Result};
use crate::base::key::MAX_KEY_BYTES;
use crate::cache::{Cache, Put};

/// Key of the stored feed document (its validators live on this entry).
pub fn document_key(feed: &str) -> String {
    format!("feeds:{feed}")
}

/// What refreshing one feed did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FeedReport {
    /// The feed's name.
    pub name: String,
    /// The feed's URL.
    pub url: String,
    /// `None` when the feed failed.
    pub outcome: Option<Outcome>,
    /// HTTP status of the last response, if any.
    pub status: Option<u16>,
    /// Bytes of the body received.
    pub body_bytes: u64,
    /// Articles written (0 after a 304: nothing was re-parsed).
    pub articles: usize,
    /// Articles a 304 confirmed current (their expiry renewed, no parsing).
    #[serde(default)]
    pub confirmed: usize,
    /// Why the feed failed.
    pub error: Option<String>,
    /// The CLI exit code of the failure (5 for upstream and feed errors).
    #[serde(skip)]
    pub exit_code: Option<i32>,
}

/// One article as stored (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Article {
    /// The feed it came from.
    pub source: String,
    /// The article's id (its key segment).
    pub id: String,
    /// Title.
    pub title: Option<String>,
    /// Link to the article.
    pub link: Option<String>,
    /// RFC 3339; the updated time when the feed gives no published time.
    pub published: Option<String>,
    /// Summary.
    pub summary: Option<String>,
    /// Full content, when the feed carries it.
    pub content: Option<String>,
}

/// Turns an article id into a key segment: `%`, `:`, `*`, `?`, whitespace
/// and control characters are percent-encoded; an id that would make the
/// key longer than [`MAX_KEY_BYTES`] is cut and suffixed with a hash of the
/// whole id, so distinct ids stay distinct.
pub fn article_key(source: &str, id: &str) -> String {
    let prefix = format!("news:{source}:");
    let mut seg = String::with_capacity(id.len());
    for c in id.chars() {
        if matches!(c, '%' | ':' | '*' | '?') || c.is_control() || c.is_whitespace() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                seg.push_str(&format!("%{b:02X}"));
            }
        } else {
            seg.push(c);
        }
    }
    if seg.is_empty() {
        seg.push_str("%00");
    }
    if prefix.len() + seg.len() > MAX_KEY_BYTES {
        let hash = blake3::hash(id.as_bytes()).to_hex();
        let suffix = format!("~{}", &hash[..16]);
        let mut room = MAX_KEY_BYTES.saturating_sub(prefix.len() + suffix.len());
        while !seg.is_char_boundary(room) {
            room -= 1;
        }
        seg.truncate(room);
        seg.push_str(&suffix);
    }
    prefix + &seg
}

/// `h` + 32 hex of blake3 of the first link (or of the title): feed-rs
/// calls this for entries without a guid / id.
fn generated_id(links: &[feed_rs::model::Link], title: &Option<feed_rs::model::Text>) -> String {
    let basis = links
        .first()
        .map(|l| l.href.as_str())
        .or(title.as_ref().map(|t| t.content.as_str()))
        .unwrap_or("");
    format!("h{}", &blake3::hash(basis.as_bytes()).to_hex()[..32])
}

/// Parses a feed document into articles.
///
/// # Errors
/// [`Error::Feed`] naming the feed when the document is not a feed.
pub fn parse(source: &str, body: &[u8]) -> Result<Vec<Article>> {
    let parser = feed_rs::parser::Builder::new()
        .id_generator(|links, title, _uri| generated_id(links, title))
        .build();
    let feed = parser.parse(body).map_err(|e| Error::Feed {
        feed: source.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(feed
        .entries
        .into_iter()
        .map(|e| Article {
            source: source.to_owned(),
            title: e.title.map(|t| t.content),
            link: e.links.first().map(|l| l.href.clone()),
            published: e.published.or(e.updated).map(|t| t.to_rfc3339()),
            summary: e.summary.map(|t| t.content),
            content: e.content.and_then(|c| c.body),
            id: e.id,
        })
        .collect())
}

/// Stores articles under `news:<source>:<id>`, with the list of their keys
/// (`feeds:<source>:articles`), in one transaction; returns how many.
///
/// # Errors
/// Storage errors, [`Error::UnknownClass`]; nothing is stored then.
pub fn store(cache: &Cache, articles: &[Article], class: Option<&str>) -> Result<usize> {
    let keys: Vec<String> = articles
        .iter()
        .map(|a| article_key(&a.source, &a.id))
        .collect();
    let bodies = articles
        .iter()
        .map(|a| {
            serde_json::to_vec(a).map_err(|e| Error::Json {
                key: a.id.clone(),
                source: e,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let put = Put {
        class: class.map(str::to_owned),
        ..Put::default()
    };
    let mut items: Vec<(&str, &[u8], Put)> = keys
        .iter()
        .zip(&bodies)
        .map(|(k, b)| (k.as_str(), &b[..], put.clone()))
        .collect();
    let list_key = articles.first().map(|a| list_key(&a.source));
    let list = serde_json::to_vec(&keys).unwrap_or_default();
    if let Some(k) = &list_key {
        items.push((k.as_str(), &list[..], Put::default().ttl(LIST_TTL)));
    }
    cache.put_many(&items)?;
    Ok(articles.len())
}

/// How long the list of a feed's article keys is kept (it is only read,
/// stale or not, when a 304 confirms the feed).
const LIST_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Key of the list of a feed's article keys.
pub fn list_key(feed: &str) -> String {
    format!("feeds:{feed}:articles")
}

/// A 304 says the feed, and so every article in it, is unchanged: renew
/// the articles' expiry without parsing anything. Returns how many.
fn confirm(cache: &Cache, feed: &str, class: Option<&str>) -> Result<usize> {
    let Some(entry) = cache.get_entry(&list_key(feed))? else {
        return Ok(0);
    };
    let keys: Vec<String> = serde_json::from_slice(&entry.value).unwrap_or_default();
    let put = Put {
        class: class.map(str::to_owned),
        ..Put::default()
    };
    let mut n = 0;
    for k in keys {
        if cache.refresh(&k, None, &put)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Revalidates one feed and stores its articles when it changed.
///
/// # Errors
/// Upstream, quota, feed and storage errors.
pub async fn refresh(fetcher: &Fetcher, feed: &FeedConfig) -> Result<FeedReport> {
    let opts = FetchOptions {
        ttl: Some(feed.every.0),
        revalidate: true,
        max_body: feed.max_size.map(|s| s.0),
        ..FetchOptions::default()
    };
    let doc = document_key(&feed.name);
    let out = fetcher.fetch(&feed.url, &doc, &opts).await?;
    let cache = fetcher.cache();
    let (articles, confirmed) = match out.outcome {
        Outcome::Fetched if !out.shared => {
            // A feed that cannot be parsed or stored is dropped, so the next
            // refresh downloads it again instead of answering 304 to nothing.
            let stored = parse(&feed.name, &out.value)
                .and_then(|parsed| store(cache, &parsed, feed.class.as_deref()));
            if stored.is_err() {
                if let Err(e) = cache.delete(&doc) {
                    tracing::warn!(error = %e, feed = %feed.name, "could not drop the feed document");
                }
            }
            (stored?, 0)
        }
        Outcome::Revalidated if !out.shared => {
            (0, confirm(cache, &feed.name, feed.class.as_deref())?)
        }
        _ => (0, 0),
    };
    Ok(FeedReport {
        name: feed.name.clone(),
        url: feed.url.clone(),
        outcome: Some(out.outcome),
        status: out.status,
        body_bytes: out.body_bytes,
        articles,
        confirmed,
        error: None,
        exit_code: None,
    })
}

/// Refreshes every feed, one after another; a failing feed is reported
/// and the others go on.
pub async fn refresh_all(fetcher: &Fetcher, feeds: &[FeedConfig]) -> Vec<FeedReport> {
    let mut reports = Vec::with_capacity(feeds.len());
    for feed in feeds {
        reports.push(match refresh(fetcher, feed).await {
            Ok(r) => r,
            Err(e) => FeedReport {
                name: feed.name.clone(),
                url: feed.url.clone(),
                outcome: None,
                status: None,
                body_bytes: 0,
                articles: 0,
                confirmed: 0,
                error: Some(format!("{e}")),
                exit_code: Some(e.exit_code()),
            },
        });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::key::Key;

    #[test]
    fn article_ids_become_valid_key_segments() {
        let k = article_key("reuters", "https://example.test/a?b=1*2");
        assert_eq!(k, "news:reuters:https%3A//example.test/a%3Fb=1%2A2");
        assert!(Key::new(&k).is_ok());
        assert_ne!(article_key("r", "a:b"), article_key("r", "a_b"));
        assert!(Key::new(article_key("r", "tab\there\u{7}")).is_ok());
        assert!(Key::new(article_key("r", "")).is_ok());
    }

    #[test]
    fn long_ids_are_cut_with_a_hash_and_stay_distinct() {
        let a = "é".repeat(400);
        let b = format!("{}x", "é".repeat(399));
        let (ka, kb) = (article_key("ap", &a), article_key("ap", &b));
        assert!(ka.len() <= MAX_KEY_BYTES && Key::new(&ka).is_ok());
        assert_ne!(ka, kb);
    }

    #[test]
    fn entries_without_guid_get_a_hash_of_their_link() {
        let rss = br#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
            <item><title>A</title><link>https://example.test/a</link></item>
            <item><guid>g-2</guid><title>B</title></item></channel></rss>"#;
        let arts = parse("t", rss).unwrap();
        let want = format!(
            "h{}",
            &blake3::hash(b"https://example.test/a").to_hex()[..32]
        );
        assert_eq!(arts[0].id, want);
        assert_eq!(arts[1].id, "g-2");
    }

    #[test]
    fn garbage_is_a_feed_error() {
        assert!(matches!(
            parse("bad", b"<html>not a feed"),
            Err(Error::Feed { .. })
        ));
    }
}
