//! Single-flight: concurrent calls for one key in a process share one
//! upstream call. The first caller runs the loader; the others wait on the
//! same cell and get a clone of its result.
//!
//! Invariant: a key's cell is in the map only while its flight is running
//! (or was abandoned by a cancelled leader, in which case the next caller
//! runs it). Callers that arrive after a flight finished start a new one,
//! which first looks at the cache the finished flight just filled.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::base::error::{Error, Result};

type Shared<T> = OnceCell<std::result::Result<T, Arc<Error>>>;

/// Flights in progress, keyed by result type and cache key. A plain mutex:
/// it is held only to look up or remove a cell, never across an await.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>>,
    /// Keys being loaded by a batch ([`Flights::claim_batch`]).
    batch: Mutex<HashMap<String, BatchSlot>>,
}

/// What a batch flight publishes for one key: the value, `None` when the
/// loader did not return the key (a miss), or the loader's error.
pub(crate) type BatchResult = std::result::Result<Option<bytes::Bytes>, Arc<Error>>;
type BatchSlot = tokio::sync::watch::Receiver<Option<BatchResult>>;

/// The keys a batch leads: publishes their results, and on drop (also
/// when the leader is cancelled) removes them from the map, so waiters
/// whose leader vanished see a closed channel and load the keys themselves.
pub(crate) struct BatchLead<'a> {
    flights: &'a Flights,
    senders: Vec<(String, tokio::sync::watch::Sender<Option<BatchResult>>)>,
}

impl BatchLead<'_> {
    /// The keys this batch leads, in claim order.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.senders.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Publishes `result` for `key` to its waiters.
    pub(crate) fn publish(&self, key: &str, result: BatchResult) {
        if let Some((_, tx)) = self.senders.iter().find(|(k, _)| k == key) {
            tx.send_replace(Some(result));
        }
    }
}

impl Drop for BatchLead<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.batch.lock().unwrap_or_else(|p| p.into_inner());
        for (key, tx) in &self.senders {
            if map
                .get(key)
                .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
            {
                map.remove(key);
            }
        }
    }
}

/// Waits for a key another batch is loading: its result, or `None` when
/// that batch went away without publishing (the caller loads it then).
pub(crate) async fn wait_batch(mut rx: BatchSlot) -> Option<BatchResult> {
    let got = rx.wait_for(Option::is_some).await.map(|v| v.clone());
    match got {
        Ok(v) => v,
        Err(_) => rx.borrow().clone(),
    }
}

impl Flights {
    /// Splits `keys` into those this caller now leads (no batch is loading
    /// them) and those another batch is loading (with a handle to wait on).
    pub(crate) fn claim_batch(&self, keys: &[String]) -> (BatchLead<'_>, Vec<(String, BatchSlot)>) {
        let mut map = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        let mut lead = BatchLead {
            flights: self,
            senders: Vec::new(),
        };
        let mut waits = Vec::new();
        for key in keys {
            match map.get(key) {
                Some(rx) if rx.has_changed().is_ok() => waits.push((key.clone(), rx.clone())),
                _ => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    map.insert(key.clone(), rx);
                    lead.senders.push((key.clone(), tx));
                }
            }
        }
        (lead, waits)
    }
}

/// Whether this caller ran the flight or waited on someone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Leader,
    Follower,
}

impl Flights {
    fn cell<T: Send + Sync + 'static>(&self, id: &(TypeId, String)) -> Arc<Shared<T>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let any = map
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Shared::<T>::new()))
            .clone();
        // The TypeId in the map key makes the downcast infallible; a fresh
        // cell is a correct (if unshared) fallback all the same.
        any.downcast::<Shared<T>>()
            .unwrap_or_else(|_| Arc::new(Shared::<T>::new()))
    }

    /// Runs `f` for `key` unless a flight for it is already running, in
    /// which case waits for that one and shares its result.
    pub(crate) async fn run<T, F, Fut>(&self, key: &str, f: F) -> (Result<T>, Role)
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let id = (TypeId::of::<T>(), key.to_owned());
        let cell = self.cell::<T>(&id);
        let mut led = false;
        let out = cell
            .get_or_init(|| {
                led = true;
                async { f().await.map_err(Arc::new) }
            })
            .await
            .clone();
        if !led {
            return (out.map_err(unshare), Role::Follower);
        }
        {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map
                .get(&id)
                .is_some_and(|c| Arc::ptr_eq(c, &(cell.clone() as Arc<dyn Any + Send + Sync>)))
            {
                map.remove(&id);
            }
        }
        drop(out);
        // With no follower left holding the cell, hand back the original error.
        let out = match Arc::try_unwrap(cell) {
            Ok(c) => c.into_inner(),
            Err(c) => c.get().cloned(),
        };
        let out = out.unwrap_or_else(|| {
            Err(Arc::new(Error::Upstream {
                url: key.to_owned(),
                reason: "single-flight result missing".into(),
            }))
        });
        (out.map_err(unshare), Role::Leader)
    }
}

fn unshare(e: Arc<Error>) -> Error {
    Arc::try_unwrap(e).unwrap_or_else(|source| Error::Shared { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_flight() {
        let flights = Arc::new(Flights::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, calls) = (flights.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok(7u32)
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, role) = t.await.unwrap();
            assert_eq!(v.unwrap(), 7);
            leaders += usize::from(role == Role::Leader);
        }
        assert!(leaders >= 1);
        assert_eq!(leaders, calls.load(Ordering::SeqCst));
        assert!(flights.map.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_lone_leader_gets_its_own_error_back() {
        let flights = Flights::default();
        let (out, role) = flights
            .run::<u8, _, _>("k", || async {
                Err(Error::UnknownClass { class: "x".into() })
            })
            .await;
        assert_eq!(role, Role::Leader);
        assert!(matches!(out, Err(Error::UnknownClass { .. })));
    }
}
