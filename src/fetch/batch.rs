//! `get_or_fetch_many`: batch endpoints (seed 001's `POST /players/stats`)
//! behind the cache. All keys are looked up in one snapshot, the loader is
//! called once with only the missing ones, and what it returns is stored in
//! one transaction. Single-flight per key: a concurrent batch that needs
//! some of the same keys waits for them instead of asking again, and loads
//! only the rest.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::names;
use crate::cache::flight::wait_batch;
use crate::cache::{Cache, Put};

impl Cache {
    /// The fresh values of `keys` (in order), loading the missing ones with
    /// one call of `loader`, which gets only those keys and returns
    /// `(key, value)` pairs. Keys it does not return stay misses (`None`),
    /// never empty values; pairs for keys it was not asked for are ignored.
    /// Values are stored with the class and TTL of their key prefix, all in
    /// one transaction.
    ///
    /// # Errors
    /// The first invalid key; [`Error::Loader`] when the loader fails
    /// (nothing is stored; concurrent batches waiting on its keys get the
    /// error too, as [`Error::Shared`]); any error of [`Cache::get_many`]
    /// and [`Cache::put_many`].
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> freshcache::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = freshcache::Cache::open(dir.path())?;
    /// cache.put("players:1", b"a", Default::default())?;
    /// let got = cache
    ///     .get_or_fetch_many(&["players:1", "players:2"], |missing| async move {
    ///         assert_eq!(missing, ["players:2"]); // one batch request upstream
    ///         Ok::<_, std::io::Error>(vec![("players:2".to_string(), b"b".to_vec())])
    ///     })
    ///     .await?;
    /// assert_eq!(got, [Some("a".into()), Some("b".into())]);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_fetch_many<F, Fut, I, V, E>(
        &self,
        keys: &[&str],
        loader: F,
    ) -> Result<Vec<Option<Bytes>>>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<I, E>>,
        I: IntoIterator<Item = (String, V)>,
        V: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        for k in keys {
            Key::new(*k)?;
        }
        let mut found: HashMap<String, Option<Bytes>> = HashMap::new();
        let snapshot = self.get_many(keys)?;
        let mut missing: Vec<String> = Vec::new();
        for (k, v) in keys.iter().zip(snapshot) {
            match v {
                Some(b) => {
                    found.insert((*k).to_owned(), Some(b));
                }
                None if !found.contains_key(*k) && !missing.iter().any(|m| m == k) => {
                    missing.push((*k).to_owned())
                }
                None => {}
            }
        }
        let mut loader = Some(loader);
        // Rounds: normally one; another only for keys whose loading batch
        // was cancelled before it published them.
        while !missing.is_empty() {
            let (lead, waits) = self.flights().claim_batch(&missing);
            missing.clear();
            let mut to_load = lead.keys();
            if !to_load.is_empty() {
                // A batch that finished just before the claim filled these.
                let strs: Vec<&str> = to_load.iter().map(String::as_str).collect();
                for (k, v) in to_load.clone().iter().zip(self.get_many(&strs)?) {
                    if let Some(b) = v {
                        lead.publish(k, Ok(Some(b.clone())));
                        found.insert(k.clone(), Some(b));
                        to_load.retain(|x| x != k);
                    }
                }
            }
            if !to_load.is_empty() {
                match loader.take() {
                    Some(f) => {
                        let loaded = self.load_batch(f, to_load.clone()).await;
                        match loaded {
                            Ok(mut got) => {
                                for k in &to_load {
                                    let v = got.remove(k);
                                    lead.publish(k, Ok(v.clone()));
                                    found.insert(k.clone(), v);
                                }
                            }
                            Err(e) => {
                                let e = Arc::new(e);
                                for k in &to_load {
                                    lead.publish(k, Err(e.clone()));
                                }
                                drop(lead);
                                return Err(Arc::try_unwrap(e)
                                    .unwrap_or_else(|source| Error::Shared { source }));
                            }
                        }
                    }
                    // The loader was spent in an earlier round: these stay misses.
                    None => {
                        for k in &to_load {
                            lead.publish(k, Ok(None));
                            found.insert(k.clone(), None);
                        }
                    }
                }
            }
            drop(lead);
            for (k, rx) in waits {
                match wait_batch(rx).await {
                    Some(Ok(v)) => {
                        self.count(names::avoided("singleflight"), 1);
                        found.insert(k, v);
                    }
                    Some(Err(source)) => return Err(Error::Shared { source }),
                    None => missing.push(k),
                }
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(*k).cloned().flatten())
            .collect())
    }

    /// Calls the loader with `keys` and stores what it returns for them in
    /// one transaction (on the blocking pool).
    async fn load_batch<F, Fut, I, V, E>(
        &self,
        loader: F,
        keys: Vec<String>,
    ) -> Result<HashMap<String, Bytes>>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<I, E>>,
        I: IntoIterator<Item = (String, V)>,
        V: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let label = match keys.as_slice() {
            [one] => one.clone(),
            [first, ..] => format!("{first} (+{} more)", keys.len() - 1),
            [] => String::new(),
        };
        let wanted: std::collections::HashSet<String> = keys.iter().cloned().collect();
        let got = loader(keys).await.map_err(|e| Error::Loader {
            key: label.clone(),
            source: e.into(),
        })?;
        let mut out: HashMap<String, Bytes> = HashMap::new();
        for (k, v) in got {
            if wanted.contains(&k) {
                out.insert(k, Bytes::copy_from_slice(v.as_ref()));
            }
        }
        if out.is_empty() {
            return Ok(out);
        }
        let cache = self.clone();
        let items = out.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<(&str, &[u8], Put)> = items
                .iter()
                .map(|(k, v)| (k.as_str(), &v[..], Put::default()))
                .collect();
            cache.put_many(&refs)
        })
        .await
        .map_err(|e| Error::Loader {
            key: label,
            source: e.into(),
        })??;
        Ok(out)
    }
}
