//! The fetcher: conditional GETs into the cache (RFC 9110 §13, RFC 9111),
//! single-flight per key, per-host rate limit, persisted quota, retries,
//! and news feeds on top.
//!
//! A fetch reads top to bottom: fresh entry? → done. Otherwise one
//! conditional GET with the stored validators → 304 refreshes the entry
//! (no body moves) or 200 stores the new body → failure returns a stale copy
//! only when the caller asked for stale-if-error and the entry allows it.
//!
//! Decisions (for ARCHITECTURE.md):
//! - Validators are bound to the URL whose response carried them
//!   (`x-freshcache-url` in the stored headers): after a redirect chain the
//!   conditional headers go only to that hop. A chain of 301/308 only is
//!   remembered, and the next fetch of the same URL starts at its target.
//! - Every HTTP request (retries and redirect hops included) counts against
//!   the quota; a refused quota is an error even with stale-if-error.
//! - stale-if-error covers transient failures (network, timeout, 5xx, 429),
//!   never a 4xx, and never an entry stored with `must-revalidate`.
//! - Read timeouts and cut-short bodies are not retried (connect errors,
//!   5xx and 429 are). A `Retry-After` longer than `retry_max` fails at once.
//! - A 304 that now says `no-store` removes the entry.
//! - An entry remembers the URL it was fetched from: fetching another URL
//!   (or into a key a plain `put` wrote) is a miss and goes upstream.

mod batch;
mod builder;
pub mod feeds;
pub mod freshness;
mod http;
pub mod measure;
pub(crate) mod singleflight;

use crate::base::config::Rate;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{StatusCode, Url};
use serde::Serialize;

use crate::base::clock::Millis;
use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::names;
use crate::base::policy::{self, Freshness};
use crate::cache::flight::Role;
use crate::cache::plug::Claim;
use crate::cache::{Cache, Entry, Put};
pub use builder::FetcherBuilder;
use builder::Settings;
use freshness::{CacheControl, Headers, Lifetime};
pub use http::body_too_large;
use http::{Exchange, Validators};

/// Options of one fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Store under this class instead of the one the key prefix selects.
    pub class: Option<String>,
    /// Use this TTL instead of the class TTL (the server may still shorten it).
    pub ttl: Option<Duration>,
    /// On upstream failure return the stored copy, marked stale.
    pub stale_if_error: bool,
    /// Revalidate even if the entry is still fresh.
    pub revalidate: bool,
    /// Refuse a body larger than this (`cache.max_value_size` is the
    /// ceiling and the default).
    pub max_body: Option<u64>,
}

/// What a fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The entry was fresh: no request.
    Fresh,
    /// 304: the entry is fresh again; no body moved.
    Revalidated,
    /// 200: a new body was received (and stored unless `no-store`).
    Fetched,
    /// The upstream failed and the caller asked for stale-if-error.
    StaleIfError,
}

/// The result of [`Fetcher::fetch`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FetchOutcome {
    /// What the fetch did.
    pub outcome: Outcome,
    /// Status of the final HTTP response; `None` when no request was made.
    pub status: Option<u16>,
    /// Body bytes received from the upstream (0 for a 304 or a cache hit).
    pub body_bytes: u64,
    /// HTTP requests made, counting redirects and retries.
    pub requests: u32,
    /// `Fresh` unless the value is a stale-if-error copy (or `no-cache`).
    pub freshness: Freshness,
    /// Whether the value is in the cache now (`no-store` responses are not).
    pub stored: bool,
    /// The content was already in the store under some key.
    pub deduplicated: bool,
    /// When the entry stops being fresh.
    #[serde(serialize_with = "ser_opt_time")]
    pub expires_at: Option<Millis>,
    /// The URL that answered (after redirects).
    pub url: String,
    /// This caller waited on another caller's request (single-flight).
    pub shared: bool,
    /// Why the upstream failed, for a stale-if-error copy.
    pub error: Option<String>,
    #[serde(skip)]
    /// The body now stored (empty on failure).
    pub value: Bytes,
}

fn ser_opt_time<S: serde::Serializer>(
    t: &Option<Millis>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::base::clock::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// Conditional GETs into a [`Cache`]. Cheap to clone (clones share the
/// connection pool and the rate limiter).
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache: Cache,
    client: reqwest::Client,
    /// Requests per host (`fetch.rate_limit` or the builder's), admitted by
    /// the cache's coordinators together with the quota.
    rate: Rate,
    settings: Settings,
}

impl Fetcher {
    /// The cache this fetcher fills.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Admits one call of a registered loader (the daemon's refresh-ahead)
    /// under the same politeness as a request: the quota, and the rate
    /// limit of a pseudo-host named after the loader's key prefix
    /// (`loader:<prefix>`), global through the coordinator when there is
    /// one, else this process's limiter and the root's quota.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`]; a storage error of the local quota.
    pub async fn admit_loader(&self, prefix: &str) -> Result<()> {
        let host = format!("loader:{prefix}");
        self.cache
            .admit_upstream(&host, self.settings.quota, self.rate)
            .await
            .map(|_| ())
    }

    /// `(used, limit)` of the request quota in the current period.
    ///
    /// # Errors
    /// A storage error.
    pub fn quota(&self) -> Result<(u64, u64)> {
        let q = self.settings.quota;
        Ok((self.cache.quota_used(q)?, q.count))
    }

    /// Makes `key` hold the current content of `url`: no request while the
    /// entry is fresh, else a conditional GET with its stored validators.
    /// Concurrent fetches of one key in this process make one request.
    ///
    /// # Errors
    /// [`Error::InvalidKey`]; [`Error::Upstream`] when the upstream fails and
    /// no usable copy exists (`must-revalidate` entries are never served
    /// stale); [`Error::QuotaExceeded`]; storage errors.
    pub async fn fetch(&self, url: &str, key: &str, opts: &FetchOptions) -> Result<FetchOutcome> {
        Key::new(key)?;
        let parsed = Url::parse(url).map_err(|e| Error::Upstream {
            url: url.to_owned(),
            reason: format!("invalid URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Upstream {
                url: url.to_owned(),
                reason: "only http and https URLs can be fetched".into(),
            });
        }
        // Callers share a flight only when they ask the same thing: same key,
        // URL and options (a caller that did not ask for stale-if-error must
        // never receive a stale copy someone else asked for).
        let id = format!(
            "fetch\n{key}\n{parsed}\n{}{}{:?}{:?}{:?}",
            u8::from(opts.stale_if_error),
            u8::from(opts.revalidate),
            opts.ttl,
            opts.class,
            opts.max_body
        );
        let flight = || self.fetch_now(parsed, key, opts);
        let (out, role) = self.cache.flights().run(&id, flight).await;
        if role == Role::Follower {
            self.cache.count(names::avoided("singleflight"), 1);
        }
        out.map(|mut o| {
            o.shared = role == Role::Follower;
            o
        })
    }

    async fn fetch_now(&self, url: Url, key: &str, opts: &FetchOptions) -> Result<FetchOutcome> {
        let entry = self.entry_from(key, &url)?;
        // Across instances (Redis tier): one lease holder goes upstream; the
        // others wait and read its result through Redis.
        let (_lease, entry) = match &entry {
            Some(e) if e.meta.freshness.is_fresh() => (None, entry),
            _ => match self.cache.claim(key).await {
                Claim::Won(lease) => (Some(lease), entry),
                Claim::Filled => (None, self.entry_from(key, &url)?),
                Claim::Alone => (None, entry),
            },
        };
        let base = FetchOutcome {
            outcome: Outcome::Fresh,
            status: None,
            body_bytes: 0,
            requests: 0,
            freshness: Freshness::Fresh,
            stored: true,
            deduplicated: false,
            expires_at: None,
            url: url.to_string(),
            shared: false,
            error: None,
            value: Bytes::new(),
        };
        let stored = entry
            .as_ref()
            .map(|e| freshness::from_json(e.meta.headers.as_deref()))
            .unwrap_or_default();
        if let Some(e) = &entry {
            if e.meta.freshness.is_fresh() && !opts.revalidate {
                return Ok(FetchOutcome {
                    expires_at: Some(e.meta.expires_at),
                    value: e.value.clone(),
                    ..base
                });
            }
        }
        // A remembered permanent redirect skips the hops that led to it.
        let start = match (
            stored.get(freshness::FROM_URL),
            stored.get(freshness::VALIDATED_URL),
        ) {
            (Some(from), Some(to))
                if from == url.as_str() && stored.contains_key(freshness::PERMANENT) =>
            {
                Url::parse(to).unwrap_or_else(|_| url.clone())
            }
            _ => url.clone(),
        };
        let validators = match &entry {
            Some(e) => Validators {
                etag: e.meta.etag.as_deref(),
                last_modified: e.meta.last_modified.as_deref(),
                url: Some(
                    stored
                        .get(freshness::VALIDATED_URL)
                        .map_or(url.as_str(), |u| u),
                ),
            },
            None => Validators::default(),
        };
        match self.exchange(start, &validators, opts.max_body).await {
            Err(f) => match entry {
                Some(e)
                    if opts.stale_if_error
                        && f.transient
                        && !CacheControl::of(&stored).must_revalidate =>
                {
                    Ok(FetchOutcome {
                        outcome: Outcome::StaleIfError,
                        freshness: Freshness::Stale,
                        expires_at: Some(e.meta.expires_at),
                        error: Some(f.error.to_string()),
                        value: e.value,
                        ..base
                    })
                }
                _ => Err(f.error),
            },
            Ok(x) if x.status == StatusCode::NOT_MODIFIED => match entry {
                Some(e) if x.conditional => {
                    let (this, key, opts, u) =
                        (self.clone(), key.to_owned(), opts.clone(), url.clone());
                    off_runtime(&url, move || {
                        this.revalidated(&key, &opts, &u, e, stored, x, base)
                    })
                    .await
                }
                _ => Err(Error::Upstream {
                    url: x.url.to_string(),
                    reason: "304 Not Modified to an unconditional request".into(),
                }),
            },
            Ok(x) => {
                let (this, key, opts, u) =
                    (self.clone(), key.to_owned(), opts.clone(), url.clone());
                let prev = entry.map(|e| (e.meta.hash, stored));
                off_runtime(&url, move || this.fetched(&key, &opts, &u, x, base, prev)).await
            }
        }
    }

    /// The entry of `key` if it holds what `url` answered: the entry
    /// remembers the URL it was fetched from (`x-freshcache-from` in its
    /// stored headers). An entry from another URL, or one stored by a plain
    /// `put`, is a miss for this URL: it is neither served as fresh nor
    /// revalidated with its validators (they belong to another resource);
    /// the response replaces it.
    fn entry_from(&self, key: &str, url: &Url) -> Result<Option<Entry>> {
        Ok(self.cache.get_entry(key)?.filter(|e| {
            freshness::from_json(e.meta.headers.as_deref())
                .get(freshness::FROM_URL)
                .is_some_and(|from| from == url.as_str())
        }))
    }

    fn ttl_for(&self, key: &str, opts: &FetchOptions, h: &Headers) -> Result<(String, Lifetime)> {
        let classes = self.cache.classes();
        let (class, ttl) = classes.resolve(&Key::new(key)?, opts.class.as_deref(), opts.ttl)?;
        let ttl = match (opts.ttl, classes.adaptive(&class)) {
            (None, Some((min, max))) => measure::adaptive_ttl(h, min, max).unwrap_or(ttl),
            _ => ttl,
        };
        let life = freshness::lifetime(h, ttl, self.settings.server_ttl, self.cache.now());
        Ok((class, life))
    }

    fn bookkeeping(h: &mut Headers, requested: &Url, x: &Exchange) {
        h.insert(freshness::FROM_URL.into(), requested.to_string());
        h.insert(freshness::VALIDATED_URL.into(), x.url.to_string());
        if x.redirected && x.permanent {
            h.insert(freshness::PERMANENT.into(), "1".into());
        } else {
            h.remove(freshness::PERMANENT);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn revalidated(
        &self,
        key: &str,
        opts: &FetchOptions,
        requested: &Url,
        entry: Entry,
        mut headers: Headers,
        x: Exchange,
        base: FetchOutcome,
    ) -> Result<FetchOutcome> {
        let old = headers.clone();
        freshness::merge_304(&mut headers, &x.headers);
        Self::bookkeeping(&mut headers, requested, &x);
        let class = self.ttl_for(key, opts, &headers)?.0;
        let now = self.cache.now();
        measure::observe(
            &self.cache,
            &class,
            key,
            &old,
            &mut headers,
            Some(false),
            now,
        );
        let (class, life) = self.ttl_for(key, opts, &headers)?;
        self.cache
            .count(names::BYTES_SAVED_304.into(), entry.meta.size as i64);
        let out = FetchOutcome {
            outcome: Outcome::Revalidated,
            status: Some(304),
            requests: x.requests,
            url: x.url.to_string(),
            ..base
        };
        let Lifetime::Fresh(ttl) = life else {
            // The 304 now says no-store: drop the entry, hand out the body once.
            self.cache.delete(key)?;
            return Ok(FetchOutcome {
                stored: false,
                value: entry.value,
                ..out
            });
        };
        let put = Put {
            class: Some(class),
            ttl: Some(ttl),
            etag: headers.get("etag").cloned().or(entry.meta.etag),
            last_modified: headers
                .get("last-modified")
                .cloned()
                .or(entry.meta.last_modified),
            headers: Some(freshness::to_json(&headers)),
        };
        let now = self.cache.now();
        if !self
            .cache
            .refresh_if(key, Some(&entry.meta.hash), Some(ttl), &put)?
        {
            // Removed or replaced while we asked: the 304 vouches for the
            // bytes we asked about, so those are stored as current.
            self.cache.put(key, &entry.value, put)?;
        }
        Ok(FetchOutcome {
            freshness: Freshness::at(policy::expiry(now, ttl), now),
            expires_at: Some(policy::expiry(now, ttl)),
            value: entry.value,
            ..out
        })
    }

    fn fetched(
        &self,
        key: &str,
        opts: &FetchOptions,
        requested: &Url,
        x: Exchange,
        base: FetchOutcome,
        prev: Option<(crate::disk::blob::Digest, Headers)>,
    ) -> Result<FetchOutcome> {
        let mut headers = freshness::from_response(&x.headers);
        Self::bookkeeping(&mut headers, requested, &x);
        let class = self.ttl_for(key, opts, &headers)?.0;
        let (old, changed) = match prev {
            Some((hash, old)) => {
                let changed = hash != crate::disk::blob::Digest::of(&x.body);
                (old, Some(changed))
            }
            None => (Headers::default(), None),
        };
        let now = self.cache.now();
        measure::observe(&self.cache, &class, key, &old, &mut headers, changed, now);
        let (class, life) = self.ttl_for(key, opts, &headers)?;
        let out = FetchOutcome {
            outcome: Outcome::Fetched,
            status: Some(x.status.as_u16()),
            body_bytes: x.body.len() as u64,
            requests: x.requests,
            url: x.url.to_string(),
            ..base
        };
        let Lifetime::Fresh(ttl) = life else {
            return Ok(FetchOutcome {
                stored: false,
                value: x.body,
                ..out
            });
        };
        let put = Put {
            class: Some(class),
            ttl: Some(ttl),
            etag: headers.get("etag").cloned(),
            last_modified: headers.get("last-modified").cloned(),
            headers: Some(freshness::to_json(&headers)),
        };
        let stored = self.cache.put(key, &x.body, put)?;
        let now = self.cache.now();
        Ok(FetchOutcome {
            freshness: Freshness::at(stored.expires_at, now),
            expires_at: Some(stored.expires_at),
            deduplicated: stored.deduplicated,
            value: x.body,
            ..out
        })
    }
}

/// Runs the storing half of a fetch (a write transaction, which may wait for
/// another process's eviction transaction) on tokio's blocking pool, so the
/// async worker threads keep serving (the daemon's /healthz, other feeds).
pub(crate) async fn off_runtime<T: Send + 'static>(
    url: &Url,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::Upstream {
            url: url.to_string(),
            reason: format!("storing the response failed: {e}"),
        })
    })
}
