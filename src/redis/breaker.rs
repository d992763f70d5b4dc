//! Circuit breaker in front of Redis: after consecutive failures it opens
//! and every call is skipped (costing an atomic load and a clock read) until
//! a backoff has passed; then one probe call goes through. The backoff
//! doubles per failed probe up to a maximum and resets on success.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
const THRESHOLD: u32 = 2;
/// First pause after opening.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct State {
    failures: u32,
    /// `Some` while open: calls are skipped until this instant.
    open_until: Option<Instant>,
    backoff: Duration,
    /// A probe is in flight (half-open); other calls keep skipping.
    probing: bool,
}

/// Shared by every call of one Redis tier.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Fast path: false while closed.
    open: AtomicBool,
    /// A call has succeeded since start or since the breaker last opened:
    /// what `freshcache_redis_up` reports. The breaker starts closed (calls
    /// are tried) but not reachable: nothing is known until Redis answers.
    reachable: AtomicBool,
    state: Mutex<State>,
    max_backoff: Duration,
}

impl Breaker {
    pub(crate) fn new(max_backoff: Duration) -> Breaker {
        Breaker {
            open: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
                backoff: MIN_BACKOFF,
                probing: false,
            }),
            max_backoff: max_backoff.max(MIN_BACKOFF),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether Redis is known to be reachable: a call succeeded and none
    /// has opened the breaker since. False before the first answer.
    pub(crate) fn is_up(&self) -> bool {
        self.reachable.load(Ordering::Relaxed) && !self.open.load(Ordering::Relaxed)
    }

    /// Whether [`Breaker::allow`] would let a call through, without
    /// claiming the probe (to skip preparing work that would be dropped).
    pub(crate) fn may_try(&self) -> bool {
        if !self.open.load(Ordering::Relaxed) {
            return true;
        }
        let s = self.lock();
        s.open_until.is_none_or(|u| Instant::now() >= u) && !s.probing
    }

    /// Whether a call may go to Redis now (closed, or the one probe).
    pub(crate) fn allow(&self) -> bool {
        if !self.open.load(Ordering::Relaxed) {
            return true;
        }
        let mut s = self.lock();
        match s.open_until {
            Some(until) if Instant::now() >= until && !s.probing => {
                s.probing = true;
                true
            }
            None => true,
            _ => false,
        }
    }

    /// A call succeeded: close.
    pub(crate) fn success(&self) {
        if !self.reachable.load(Ordering::Relaxed) {
            self.reachable.store(true, Ordering::Relaxed);
        }
        if !self.open.load(Ordering::Relaxed) {
            let mut s = self.lock();
            s.failures = 0;
            return;
        }
        let mut s = self.lock();
        if s.open_until.is_some() {
            tracing::info!("redis tier reachable again");
        }
        *s = State {
            failures: 0,
            open_until: None,
            backoff: MIN_BACKOFF,
            probing: false,
        };
        self.open.store(false, Ordering::Relaxed);
    }

    /// A call failed (error or timeout): count it, open or re-open.
    pub(crate) fn failure(&self, what: &str, error: &str) {
        let mut s = self.lock();
        s.failures += 1;
        if s.open_until.is_some() {
            // A failed probe: wait longer.
            s.backoff = (s.backoff * 2).min(self.max_backoff);
            s.open_until = Some(Instant::now() + s.backoff);
            s.probing = false;
            return;
        }
        if s.failures >= THRESHOLD {
            tracing::warn!(
                op = what,
                error,
                backoff_ms = s.backoff.as_millis() as u64,
                "redis tier unavailable; serving from the local tiers"
            );
            s.open_until = Some(Instant::now() + s.backoff);
            s.probing = false;
            self.open.store(true, Ordering::Relaxed);
            self.reachable.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_backoff() {
        let b = Breaker::new(Duration::from_secs(1));
        assert!(b.allow(), "calls are tried from the start");
        assert!(!b.is_up(), "but not reported up before Redis answered");
        b.success();
        assert!(b.is_up());
        b.failure("get", "refused");
        assert!(b.is_up());
        b.failure("get", "refused");
        assert!(!b.is_up());
        assert!(!b.allow(), "open: skipped");
        std::thread::sleep(MIN_BACKOFF + Duration::from_millis(20));
        assert!(b.allow(), "one probe");
        assert!(!b.allow(), "only one probe at a time");
        b.failure("get", "refused");
        assert!(!b.allow(), "backoff doubled");
        std::thread::sleep(MIN_BACKOFF * 2 + Duration::from_millis(20));
        assert!(b.allow());
        b.success();
        assert!(b.is_up() && b.allow());
    }
}
