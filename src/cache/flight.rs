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
