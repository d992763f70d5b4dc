//! The built-in [`FeedSource`]: a conditional GET (If-None-Match /
//! If-Modified-Since from the stored validators) into the cache. A feed's
//! document is stored as `feeds:<name>` with TTL `every`; a 304 refreshes
//! it without a body. Stand-in until the fetcher (issue 4) is merged, whose
//! feed API also parses articles.

use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;

use super::source::{warm_key, FeedSource, Outcome, Refresh};
use crate::cache::{Cache, Put};
use crate::config::{FeedConfig, WarmItem};
use crate::error::{Error, Result};
use crate::stats::names;

/// Conditional GETs with reqwest.
#[derive(Debug, Clone)]
pub struct HttpSource {
    cache: Cache,
    client: reqwest::Client,
}

impl HttpSource {
    /// A source storing into `cache`, with its `fetch:` timeouts.
    ///
    /// # Errors
    /// [`Error::Upstream`] if the HTTP client cannot be built.
    pub fn new(cache: &Cache) -> Result<HttpSource> {
        let f = &cache.config().fetch;
        let client = reqwest::Client::builder()
            .timeout(f.timeout.0)
            .connect_timeout(f.connect_timeout.0)
            .redirect(reqwest::redirect::Policy::limited(f.max_redirects as usize))
            .build()
            .map_err(|e| Error::Upstream {
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(HttpSource {
            cache: cache.clone(),
            client,
        })
    }

    async fn get_into(
        &self,
        url: &str,
        key: &str,
        ttl: Option<Duration>,
        class: Option<String>,
        revalidate: bool,
    ) -> Result<Refresh> {
        let stored = self.cache.get_entry(key)?.map(|e| e.meta);
        if !revalidate && stored.as_ref().is_some_and(|m| m.freshness.is_fresh()) {
            return Ok(Refresh {
                outcome: Outcome::Fresh,
                status: None,
                body_bytes: 0,
                articles: 0,
            });
        }
        let mut req = self.client.get(url);
        if let Some(m) = &stored {
            if let Some(etag) = &m.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &m.last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
        }
        let fail = |reason: String| {
            self.cache.count(names::upstream("error"), 1);
            Error::Upstream {
                url: url.to_string(),
                reason,
            }
        };
        let resp = req.send().await.map_err(|e| fail(chain(&e)))?;
        let status = resp.status();
        let header = |n| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut put = Put {
            class,
            ttl,
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
            headers: None,
        };
        if let (StatusCode::NOT_MODIFIED, Some(m)) = (status, &stored) {
            // A 304 need not repeat the validators (RFC 9110 §15.4.5): keep ours.
            put.etag = put.etag.or_else(|| m.etag.clone());
            put.last_modified = put.last_modified.or_else(|| m.last_modified.clone());
            self.cache.count(names::upstream("304"), 1);
            self.cache.refresh(key, ttl, &put)?;
            return Ok(Refresh {
                outcome: Outcome::NotModified,
                status: Some(304),
                body_bytes: 0,
                articles: 0,
            });
        }
        if !status.is_success() {
            return Err(fail(format!("status {status}")));
        }
        let body = resp.bytes().await.map_err(|e| fail(chain(&e)))?;
        self.cache.count(names::upstream("200"), 1);
        self.cache.put(key, &body, put)?;
        Ok(Refresh {
            outcome: Outcome::Fetched,
            status: Some(status.as_u16()),
            body_bytes: body.len() as u64,
            articles: 0,
        })
    }
}

/// An error and its causes, `: `-separated (reqwest hides the cause otherwise).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl FeedSource for HttpSource {
    async fn refresh(&self, feed: FeedConfig) -> Result<Refresh> {
        let key = format!("feeds:{}", feed.name);
        self.get_into(&feed.url, &key, Some(feed.every.0), None, true)
            .await
    }

    async fn warm(&self, item: WarmItem) -> Result<Outcome> {
        match &item.url {
            Some(url) => Ok(self
                .get_into(url, &item.key, None, item.class.clone(), false)
                .await?
                .outcome),
            None => warm_key(&self.cache, &item.key),
        }
    }
}
