//! Time source. Everything that asks "what time is it" goes through [`Clock`],
//! so TTL and staleness tests move time by hand instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start_ms`.
    pub fn new(start_ms: Millis) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as Millis, Ordering::SeqCst);
    }

    /// Sets the time to `ms`.
    pub fn set(&self, ms: Millis) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2026-11-21T10:00:00.000Z`).
///
/// Never panics: instants before the epoch print as the epoch, instants
/// after the year 9999 (a stored expiry computed from an absurd TTL) as
/// `9999-12-31T23:59:59.999Z`.
pub fn rfc3339(ms: Millis) -> String {
    /// The last instant RFC 3339 can write: `9999-12-31T23:59:59.999Z`.
    const RFC3339_MAX_MS: Millis = 253_402_300_799_999;
    let t = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, RFC3339_MAX_MS) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Formats a duration in milliseconds for humans (`1h 2m 3s`).
pub fn human_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let d = Duration::from_secs(ms.unsigned_abs() / 1000);
    let d = if d.is_zero() {
        Duration::from_millis(ms.unsigned_abs())
    } else {
        d
    };
    format!("{sign}{}", humantime::format_duration(d))
}

/// Serialises an instant as RFC 3339 (serde `serialize_with`).
pub(crate) fn ser_rfc3339<S: serde::Serializer>(
    t: &Millis,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}
