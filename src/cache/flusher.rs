//! The background flusher. Batched access records and counter deltas are
//! written by this thread, never by a reader: a get that fills the batch
//! only wakes it, so no read ever takes the write lock or waits behind a
//! writer. The same thread runs the WAL's passive checkpoints, so no put
//! pays for one at commit. It holds the store and the recorder, never the
//! cache itself. The last caller handle writes what is batched on its own
//! thread when it drops (`impl Drop for Cache`; a shared tier's task may
//! hold the cache a moment longer), and the cache's own `Drop` stops and
//! joins this thread and writes what is left: a short-lived CLI process
//! loses no counter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Inner;
use crate::disk::index;
use crate::disk::stats::Recorder;
use crate::disk::store::Store;

/// How often the thread looks at the WAL.
const TICK: Duration = Duration::from_millis(200);

/// Wakes the flusher thread; stops it when the cache closes.
#[derive(Debug)]
pub(crate) struct Flusher {
    wake: SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    /// Asks for a flush soon (never blocks; one pending wake is enough).
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Ends the thread and waits for it, so a flush it is writing is done
    /// and its connection is closed before the cache's own: the last
    /// connection checkpoints and removes the WAL, as a cleanly closed root
    /// should.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// A flusher and the receiving end its thread needs.
pub(crate) fn channel() -> (Flusher, mpsc::Receiver<()>) {
    let (wake, rx) = mpsc::sync_channel(1);
    let f = Flusher {
        wake,
        stop: Arc::new(AtomicBool::new(false)),
        thread: Mutex::new(None),
    };
    (f, rx)
}

/// Starts the thread for `inner`. Without a checkpoint connection (it could
/// not be opened) the writer keeps SQLite's own checkpoints.
pub(crate) fn spawn(inner: &Arc<Inner>, rx: mpsc::Receiver<()>, window: Duration) {
    let checkpointer = match inner.store.index.checkpointer() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "no background checkpointer; commits checkpoint");
            None
        }
    };
    let (store, recorder) = (inner.store.clone(), inner.recorder.clone());
    let stop = inner.flusher.stop.clone();
    let spawned = std::thread::Builder::new()
        .name("freshcache-flush".into())
        .spawn(move || run(&store, &recorder, &rx, &stop, checkpointer, window));
    match spawned {
        Ok(h) => {
            *inner
                .flusher
                .thread
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(h)
        }
        Err(e) => tracing::warn!(error = %e, "could not start the flusher thread"),
    }
}

fn run(
    store: &Store,
    recorder: &Recorder,
    rx: &mpsc::Receiver<()>,
    stop: &AtomicBool,
    checkpointer: Option<rusqlite::Connection>,
    window: Duration,
) {
    let mut last_flush = Instant::now();
    loop {
        let woken = match rx.recv_timeout(TICK) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if woken || last_flush.elapsed() >= window {
            if let Err(e) = recorder.flush(&store.index, true) {
                tracing::warn!(error = %e, "could not flush access records");
            }
            last_flush = Instant::now();
        }
        if let Some(c) = &checkpointer {
            if let Err(e) = index::checkpoint(c) {
                tracing::debug!(error = %e, "passive checkpoint failed");
            }
        }
    }
}
