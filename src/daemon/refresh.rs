//! Refresh-ahead: the daemon revalidates hot entries before they expire,
//! so a key readers keep asking for never turns into a miss.
//!
//! A pass (every `daemon.refresh_ahead.every`) asks the cache for entries
//! in the last `fraction` of their effective TTL (TTL windows included)
//! that were read at least `min_reads` times in their current TTL: reads
//! are the index's `hits`, counted from the entry's (re)store, minus the
//! hits it had when this daemon last refreshed it ahead. Each is
//! revalidated through the fetcher when its stored headers name the URL it
//! came from (a conditional GET: rate limit, quota, single-flight and
//! retries apply), else through the loader registered for the longest
//! matching key prefix (counted against the persisted quota too); entries
//! with neither are left to expire.
//!
//! A miss avoided is counted when a refreshed entry is read after the
//! instant it would have expired (its `last_access` passes the old expiry
//! before the refreshed entry expires): without the refresh that read
//! would have been a miss and a synchronous upstream call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::base::clock::Millis;
use crate::base::error::{Error, Result};
use crate::cache::{Cache, Meta, Put};
use crate::fetch::{freshness, FetchOptions, Fetcher};

/// What a loader returns: the new value of the key.
pub type LoaderFuture =
    Pin<Box<dyn Future<Output = std::result::Result<Vec<u8>, BoxError>> + Send>>;
/// A loader's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type LoaderFn = Arc<dyn Fn(String) -> LoaderFuture + Send + Sync>;

/// Loaders for keys that are not URL-backed, by key prefix (longest wins).
#[derive(Clone, Default)]
pub struct Loaders {
    by_prefix: Vec<(String, LoaderFn)>,
}

impl std::fmt::Debug for Loaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&str> = self.by_prefix.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("Loaders")
            .field("prefixes", &prefixes)
            .finish()
    }
}

impl Loaders {
    /// Registers `loader` for keys starting with `prefix` (replacing one
    /// registered for the same prefix).
    pub fn register<F, Fut>(&mut self, prefix: impl Into<String>, loader: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Vec<u8>, BoxError>> + Send + 'static,
    {
        let prefix = prefix.into();
        self.by_prefix.retain(|(p, _)| *p != prefix);
        let f: LoaderFn = Arc::new(move |k| Box::pin(loader(k)));
        self.by_prefix.push((prefix, f));
        self.by_prefix
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    }

    /// The loader of the longest registered prefix of `key`, with it.
    fn find(&self, key: &str) -> Option<(&str, &LoaderFn)> {
        self.by_prefix
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(p, f)| (p.as_str(), f))
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PassReport {
    /// Keys refreshed ahead.
    pub refreshed: Vec<String>,
    /// Keys whose refresh failed.
    pub failed: Vec<String>,
    /// Hot keys with neither a URL nor a loader.
    pub no_source: Vec<String>,
    /// Misses avoided that this pass observed.
    pub misses_avoided: u64,
}

/// The refresher's state across passes.
#[derive(Debug)]
pub struct RefreshAhead {
    cache: Cache,
    fetcher: Fetcher,
    loaders: Loaders,
    /// key → hits when this daemon last refreshed it.
    baseline: HashMap<String, u64>,
    /// key → (expiry before the refresh, expiry after it), until a read
    /// after the old expiry is seen or the new one passes.
    watching: HashMap<String, (Millis, Millis)>,
}

impl RefreshAhead {
    /// A refresher over `cache` with its own fetcher (the cache's `fetch:` config).
    ///
    /// # Errors
    /// As [`Fetcher::new`].
    pub fn new(cache: &Cache, loaders: Loaders) -> Result<RefreshAhead> {
        Ok(RefreshAhead {
            cache: cache.clone(),
            fetcher: Fetcher::new(cache)?,
            loaders,
            baseline: HashMap::new(),
            watching: HashMap::new(),
        })
    }

    /// One pass at the cache's `now`: counts misses avoided, then refreshes
    /// what is hot and about to expire.
    ///
    /// # Errors
    /// A storage error while looking for candidates (a failed refresh is
    /// counted, not returned).
    pub async fn pass(&mut self) -> Result<PassReport> {
        let settings = self.cache.config().daemon.refresh_ahead.clone();
        let mut report = PassReport::default();
        let cache = self.cache.clone();
        let (candidates, watched) = {
            let watch_keys: Vec<String> = self.watching.keys().cloned().collect();
            tokio::task::spawn_blocking(move || -> Result<(Vec<Meta>, Vec<Option<Meta>>)> {
                cache.flush()?;
                let now = cache.now();
                let c = cache.expiring_hot(
                    now,
                    settings.min_reads,
                    settings.fraction,
                    // The next pass comes `every` later (plus jitter): an
                    // entry that expires before it is refreshed now.
                    (settings.every.0.as_millis() as Millis).saturating_mul(5) / 4,
                    settings.max_per_pass.saturating_mul(4).max(1),
                )?;
                let w = watch_keys
                    .iter()
                    .map(|k| cache.stat(k))
                    .collect::<Result<Vec<_>>>()?;
                Ok((c, w))
            })
            .await
            .map_err(|e| Error::Upstream {
                url: "refresh-ahead".into(),
                reason: e.to_string(),
            })??
        };
        let now = self.cache.now();
        // Misses avoided: reads of refreshed entries after their old expiry.
        for meta in watched.into_iter().flatten() {
            let Some(&(old, new)) = self.watching.get(&meta.key) else {
                continue;
            };
            if meta.last_access >= old {
                report.misses_avoided += 1;
                self.watching.remove(&meta.key);
            } else if now >= new {
                self.watching.remove(&meta.key);
            }
        }
        self.watching.retain(|_, (_, new)| now < *new);
        if report.misses_avoided > 0 {
            self.cache.count(
                names_refresh("misses_avoided"),
                report.misses_avoided as i64,
            );
        }
        if !settings.enabled {
            return Ok(report);
        }
        let mut started = 0;
        for meta in candidates {
            if started >= settings.max_per_pass {
                break;
            }
            let base = self.baseline.get(&meta.key).copied().unwrap_or(0);
            let reads = if meta.hits >= base {
                meta.hits - base
            } else {
                meta.hits
            };
            if reads < settings.min_reads {
                continue;
            }
            started += 1;
            match self.refresh(&meta).await {
                Ok(true) => {
                    let after = self.cache.stat(&meta.key)?;
                    let (hits, new_expiry) = after.map_or((0, now), |m| (m.hits, m.expires_at));
                    self.baseline.insert(meta.key.clone(), hits);
                    self.watching
                        .insert(meta.key.clone(), (meta.expires_at, new_expiry));
                    self.cache.count(names_refresh("refreshed"), 1);
                    report.refreshed.push(meta.key);
                }
                Ok(false) => report.no_source.push(meta.key),
                Err(e) => {
                    tracing::warn!(key = %meta.key, error = %e, "refresh ahead failed");
                    self.cache.count(names_refresh("failed"), 1);
                    report.failed.push(meta.key);
                }
            }
        }
        self.baseline
            .retain(|k, _| self.watching.contains_key(k) || report.refreshed.contains(k));
        Ok(report)
    }

    /// Revalidates one entry; `Ok(false)` when it has no source.
    async fn refresh(&self, meta: &Meta) -> Result<bool> {
        let headers = freshness::from_json(meta.headers.as_deref());
        if let Some(url) = headers.get(freshness::FROM_URL) {
            let opts = FetchOptions {
                class: Some(meta.class.clone()),
                revalidate: true,
                ..FetchOptions::default()
            };
            self.fetcher.fetch(url, &meta.key, &opts).await?;
            return Ok(true);
        }
        let Some((prefix, loader)) = self.loaders.find(&meta.key) else {
            return Ok(false);
        };
        // Within the quota and the rate limit, as a request would be.
        self.fetcher.admit_loader(prefix).await?;
        let cache = self.cache.clone();
        let value = loader(meta.key.clone()).await.map_err(|e| Error::Loader {
            key: meta.key.clone(),
            source: e,
        })?;
        let (key, class) = (meta.key.clone(), meta.class.clone());
        tokio::task::spawn_blocking(move || cache.put(&key, &value, Put::default().class(class)))
            .await
            .map_err(|e| Error::Loader {
                key: meta.key.clone(),
                source: e.into(),
            })??;
        Ok(true)
    }
}

/// The persisted counter `refresh_ahead|<what>` (read by `Stats`).
fn names_refresh(what: &str) -> String {
    format!("refresh_ahead|{what}")
}
