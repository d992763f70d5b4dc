//! The endpoints' accept loop, in place of `axum::serve`, for two limits a
//! loopback monitoring port still needs (an idle client must not starve
//! `/healthz`, nor hold descriptors):
//! - a connection that has not sent a complete first request head within
//!   `daemon.header_timeout` is closed (hyper's header-read timeout covers
//!   later requests on a kept-alive connection);
//! - at most `daemon.max_connections` connections are open; a new one beyond
//!   the cap closes the oldest connection that is not serving a request
//!   (an idle or half-open one), or is itself closed when every connection
//!   is busy. So a flood of idle connections costs at most the cap in
//!   descriptors and never keeps a health check waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower_service::Service;

/// The limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// On shutdown, open connections get this long to finish.
    pub grace: Duration,
}

/// One open connection, as the cap sees it.
#[derive(Debug)]
struct Slot {
    id: u64,
    /// Requests being served right now.
    busy: Arc<AtomicUsize>,
    /// Told to close when evicted.
    close: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Slots {
    open: Mutex<VecDeque<Slot>>,
    next: AtomicU64,
    /// Connections closed to make room or refused at the cap.
    shed: AtomicU64,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Slot>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for one more: evicts the oldest idle connection at the cap.
    /// `None` when every open connection is serving a request.
    fn admit(&self, max: usize) -> Option<(u64, Arc<AtomicUsize>, Arc<Notify>)> {
        let mut open = self.lock();
        if open.len() >= max {
            let idle = open
                .iter()
                .position(|s| s.busy.load(Ordering::Acquire) == 0)?;
            let evicted = open.remove(idle).expect("position is in range");
            evicted.close.notify_one();
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (busy, close) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        open.push_back(Slot {
            id,
            busy: busy.clone(),
            close: close.clone(),
        });
        Some((id, busy, close))
    }

    fn release(&self, id: u64) {
        let mut open = self.lock();
        if let Some(i) = open.iter().position(|s| s.id == id) {
            open.remove(i);
        }
    }
}

/// Serves `router` on `listener` until `stop` turns true, then gives open
/// connections `limits.grace` to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Slots::default());
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((id, busy, close)) = slots.admit(limits.max_connections.max(1)) else {
            slots.shed.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let (router, slots, stop) = (router.clone(), slots.clone(), stop.clone());
        tasks.spawn(async move {
            connection(stream, router, limits, busy, close, stop).await;
            slots.release(id);
        });
    }
    let grace = tokio::time::sleep(limits.grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            _ = &mut grace => break,
            next = tasks.join_next() => if next.is_none() { break },
        }
    }
    tasks.abort_all();
}

async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    limits: Limits,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let started = Arc::new(AtomicBool::new(false));
    let (b, s) = (busy.clone(), started.clone());
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        s.store(true, Ordering::Release);
        b.fetch_add(1, Ordering::AcqRel);
        let mut router = router.clone();
        let b = b.clone();
        async move {
            let res = router.call(req.map(axum::body::Body::new)).await;
            b.fetch_sub(1, Ordering::AcqRel);
            res
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let first_request = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(first_request);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = close.notified() => return,
            _ = &mut first_request, if !started.load(Ordering::Acquire) => {
                if !started.load(Ordering::Acquire) {
                    return;
                }
            }
            _ = async { drop(stop.wait_for(|s| *s).await) } => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_evicts_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let slots = Slots::default();
        let a = slots.admit(2).unwrap();
        let b = slots.admit(2).unwrap();
        a.1.store(1, Ordering::Release); // a is serving a request
        let c = slots.admit(2).unwrap();
        assert_eq!(slots.lock().len(), 2);
        let ids: Vec<u64> = slots.lock().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![a.0, c.0], "b (idle) was evicted, not a (busy)");
        drop(b);
        c.1.store(1, Ordering::Release);
        assert!(slots.admit(2).is_none(), "every connection busy: refused");
        slots.release(a.0);
        assert!(slots.admit(2).is_some());
        assert_eq!(slots.shed.load(Ordering::Relaxed), 1);
    }
}
