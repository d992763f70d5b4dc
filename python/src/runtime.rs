//! The extension's tokio runtime, a re-entrant `block_on`, and fork
//! detection.
//!
//! Fork safety rests on two facts: every lock here is taken only while the
//! caller holds the GIL, and `os.fork()` holds the GIL while it forks, so no
//! lock of ours is ever held in a forked child. After a fork (reported by
//! the `os.register_at_fork(after_in_child=...)` hook the module installs)
//! the generation moves on, and the parent's runtime and caches are leaked,
//! never used or dropped: their threads do not exist in the child and their
//! SQLite handles belong to the parent.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::runtime::Runtime;

/// Moves on in every forked child.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The runtime of the current generation.
static RUNTIME: Mutex<Option<(u64, Arc<Runtime>)>> = Mutex::new(None);

/// The process generation: 0 in the process that imported the module,
/// incremented in each child after a fork.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Called in a child right after `fork`.
pub fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The runtime for this process, created on first use (and again in a
/// forked child). Call with the GIL held.
pub fn runtime() -> std::io::Result<Arc<Runtime>> {
    let gen = generation();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((g, rt)) = slot.as_ref() {
        if *g == gen {
            return Ok(rt.clone());
        }
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("freshcache-py")
            .enable_all()
            .build()?,
    );
    if let Some(old) = slot.replace((gen, rt.clone())) {
        // The parent's runtime: its threads are gone; dropping it would
        // wait for them.
        std::mem::forget(old);
    }
    Ok(rt)
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `f` to completion on the calling thread, inside `rt`'s context
/// (so tokio timers, sockets and `spawn_blocking` work; the runtime's
/// workers drive the I/O and timer drivers).
///
/// Unlike `Runtime::block_on` this may be nested: a Python loader running
/// inside one `get_or_fetch` may call `fetch` or another `get_or_fetch`.
pub fn block_on<F: Future>(rt: &Runtime, f: F) -> F::Output {
    let _enter = rt.enter();
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
