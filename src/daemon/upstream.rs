//! The built-in [`FeedSource`], over the fetcher (issue 4): a feed is
//! revalidated with a conditional GET into `feeds:<name>` (TTL `every`) and,
//! when it changed, each article stored as `news:<name>:<id>`; a warm-up URL
//! is fetched into its key (no request while the entry is fresh).

use super::source::{warm_key, FeedSource, Outcome, Refresh};
use crate::base::config::{FeedConfig, WarmItem};
use crate::base::error::{Error, Result};
use crate::cache::Cache;
use crate::fetch::{self, feeds, FetchOptions, Fetcher};

/// Feed refresh and warm-up through a [`Fetcher`] (rate limit, quota,
/// retries and single-flight included).
#[derive(Debug, Clone)]
pub struct FetcherSource {
    fetcher: Fetcher,
}

impl FetcherSource {
    /// A source over a fetcher with the cache's `fetch:` config.
    ///
    /// # Errors
    /// As [`Fetcher::new`].
    pub fn new(cache: &Cache) -> Result<FetcherSource> {
        Ok(FetcherSource {
            fetcher: Fetcher::new(cache)?,
        })
    }
}

fn outcome(o: fetch::Outcome, url: &str, error: Option<String>) -> Result<Outcome> {
    match o {
        fetch::Outcome::Fetched => Ok(Outcome::Fetched),
        fetch::Outcome::Revalidated => Ok(Outcome::NotModified),
        fetch::Outcome::Fresh => Ok(Outcome::Fresh),
        fetch::Outcome::StaleIfError => Err(Error::Upstream {
            url: url.to_owned(),
            reason: error.unwrap_or_else(|| "served stale".into()),
        }),
    }
}

impl FeedSource for FetcherSource {
    async fn refresh(&self, feed: FeedConfig) -> Result<Refresh> {
        let r = feeds::refresh(&self.fetcher, &feed).await?;
        let o = match r.outcome {
            Some(o) => outcome(o, &r.url, r.error.clone())?,
            None => {
                return Err(Error::Upstream {
                    url: r.url,
                    reason: r.error.unwrap_or_default(),
                })
            }
        };
        Ok(Refresh {
            outcome: o,
            status: r.status,
            body_bytes: r.body_bytes,
            articles: r.articles,
        })
    }

    async fn warm(&self, item: WarmItem) -> Result<Outcome> {
        match &item.url {
            Some(url) => {
                let opts = FetchOptions {
                    class: item.class.clone(),
                    ..FetchOptions::default()
                };
                let out = self.fetcher.fetch(url, &item.key, &opts).await?;
                outcome(out.outcome, url, out.error)
            }
            None => warm_key(self.fetcher.cache(), &item.key),
        }
    }
}
