//! `get_or_fetch`: one loader call for many concurrent callers — in this
//! process through the cache's single-flight map, across instances through
//! its coordinator's lease.

use std::future::Future;

use bytes::Bytes;

use crate::base::error::{Error, Result};
use crate::base::names;
use crate::cache::flight::{wait_batch, Role};
use crate::cache::plug::Claim;
use crate::cache::{Cache, Put};

impl Cache {
    /// The fresh value of `key`, or the value `loader` produces, stored with
    /// the class and TTL its key prefix selects. Concurrent callers for one
    /// key in this process run `loader` once and share its result; the
    /// others count as upstream calls avoided.
    ///
    /// A loader must not itself ask for its own key (through `get_or_fetch`
    /// or `get_or_fetch_many`): it would wait for itself.
    ///
    /// # Errors
    /// [`Error::Loader`] when the loader fails (nothing is stored), or any
    /// error of [`Cache::get`] and [`Cache::put`].
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> freshcache::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = freshcache::Cache::open(dir.path())?;
    /// let v = cache
    ///     .get_or_fetch("llm:features:c1:2026-11-21", || async {
    ///         Ok::<_, std::io::Error>(vec![1u8, 2, 3]) // the expensive call
    ///     })
    ///     .await?;
    /// assert_eq!(&v[..], &[1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_fetch<F, Fut, V, E>(&self, key: &str, loader: F) -> Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        V: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.get_or_fetch_with(key, Put::default(), loader).await
    }

    /// [`Cache::get_or_fetch`] with put options (class, TTL).
    ///
    /// # Errors
    /// As [`Cache::get_or_fetch`].
    pub async fn get_or_fetch_with<F, Fut, V, E>(
        &self,
        key: &str,
        opts: Put,
        loader: F,
    ) -> Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        V: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(v) = self.get(key)? {
            return Ok(v);
        }
        let flight = || async {
            // A flight that finished just before this one started filled it.
            if let Some(v) = self.get(key)? {
                return Ok(v);
            }
            // One table of keys in flight with the batches
            // (`get_or_fetch_many`): a batch loading this key answers it, and
            // a batch that needs it while this loader runs waits for it.
            let owned = [key.to_owned()];
            let (lead, waits) = self.flights().claim_batch(&owned);
            if let Some((_, rx)) = waits.into_iter().next() {
                // Otherwise the batch's loader did not return it, failed, or
                // the batch went away: this caller loads it itself.
                if let Some(Ok(Some(v))) = wait_batch(rx).await {
                    return Ok(v);
                }
            }
            let load = async {
                // Across instances (Redis tier): one lease holder runs the loader.
                let _lease = match self.claim(key).await {
                    Claim::Won(lease) => Some(lease),
                    Claim::Filled => match self.get(key)? {
                        Some(v) => return Ok(v),
                        None => None,
                    },
                    Claim::Alone => None,
                };
                let value = loader().await.map_err(|e| Error::Loader {
                    key: key.to_owned(),
                    source: e.into(),
                })?;
                let bytes = Bytes::copy_from_slice(value.as_ref());
                // The write runs on the blocking pool: it may wait for another
                // process's transaction, and the callers here are async.
                let (cache, k, b) = (self.clone(), key.to_owned(), bytes.clone());
                tokio::task::spawn_blocking(move || cache.put(&k, &b, opts))
                    .await
                    .map_err(|e| Error::Loader {
                        key: key.to_owned(),
                        source: e.into(),
                    })??;
                Ok::<Bytes, Error>(bytes)
            };
            // Batches waiting for this key get the value or the error (never
            // a miss in place of a failure).
            match load.await {
                Ok(bytes) => {
                    lead.publish(key, Ok(Some(bytes.clone())));
                    Ok(bytes)
                }
                Err(e) => {
                    let e = std::sync::Arc::new(e);
                    lead.publish(key, Err(e.clone()));
                    drop(lead);
                    Err(std::sync::Arc::try_unwrap(e)
                        .unwrap_or_else(|source| Error::Shared { source }))
                }
            }
        };
        let (out, role) = self.flights().run(key, flight).await;
        if role == Role::Follower {
            self.count(names::avoided("singleflight"), 1);
        }
        out
    }
}
