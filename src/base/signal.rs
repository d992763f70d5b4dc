//! What the staleness guard says about a signal it refused. Here, below
//! the cache, because [`crate::Error::Stale`] carries them.

use serde::Serialize;

use crate::base::clock::human_ms;

/// Why a signal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StaleReason {
    /// No entry (or none matching the pattern).
    Missing,
    /// Past its TTL.
    Expired,
    /// Within its TTL but older than the requested max_age.
    TooOld,
    /// Created after the instant the inference is for.
    FromTheFuture,
    /// Fresh locally, but not confirmed against the shared invalidation log
    /// (`redis.consistency: strict`): another instance may have withdrawn it.
    Unconfirmed,
}

impl StaleReason {
    /// The snake_case name, as in JSON (`too_old`).
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::Missing => "missing",
            StaleReason::Expired => "expired",
            StaleReason::TooOld => "too_old",
            StaleReason::FromTheFuture => "from_the_future",
            StaleReason::Unconfirmed => "unconfirmed",
        }
    }
}

/// One refused signal, with the figures that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StaleSignal {
    /// The requirement (key or pattern) as written.
    pub requirement: String,
    /// The entry found (for a pattern, the newest match).
    pub key: Option<String>,
    /// The signal's TTL class.
    pub class: String,
    /// Why it was refused.
    pub reason: StaleReason,
    /// Milliseconds since it was stored, at the guarded instant.
    pub age_ms: Option<i64>,
    /// The TTL, or the max_age when that was the stricter limit.
    pub limit_ms: Option<i64>,
    /// How far past the limit.
    pub over_by_ms: Option<i64>,
}

/// One line per refused signal, for error messages.
pub fn summarize(signals: &[StaleSignal]) -> String {
    signals
        .iter()
        .map(|s| {
            let what = s.key.as_deref().unwrap_or(&s.requirement);
            match (s.reason, s.age_ms, s.limit_ms, s.over_by_ms) {
                (StaleReason::Missing, ..) => format!("{what} missing"),
                (StaleReason::Unconfirmed, ..) => format!(
                    "{what} unconfirmed (not yet checked against the shared invalidation log)"
                ),
                (r, Some(age), Some(limit), Some(over)) => format!(
                    "{what} {} (age {}, limit {}, over by {})",
                    match r {
                        StaleReason::Expired => "expired",
                        StaleReason::TooOld => "older than max_age",
                        _ => "created after the requested instant",
                    },
                    human_ms(age),
                    human_ms(limit),
                    human_ms(over)
                ),
                _ => format!("{what} refused"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
