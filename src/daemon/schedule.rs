//! What the daemon does when: a pure function of the config, the time now
//! and what has already run. No I/O and no sleeping, so every rule here is
//! unit-tested with made-up instants.
//!
//! - A feed runs every `every`, first right after start (or after it is
//!   added), each run moved later by a jitter of up to 10% of `every`
//!   (at most [`MAX_JITTER_MS`]) derived from the feed's name and round, so
//!   feeds with one interval do not fire together and runs are repeatable.
//! - A daemon that falls more than a period behind (a suspended machine)
//!   runs a job once, not once per missed period, and keeps its phase.
//! - The eviction pass follows the `cleanup.interval` cron expression,
//!   evaluated in UTC; the size check runs every `daemon.size_check`.

use std::collections::BTreeMap;

use croner::Cron;

use crate::base::clock::Millis;
use crate::base::config::Config;

/// The largest jitter added to a feed run.
pub const MAX_JITTER_MS: Millis = 30_000;

/// A job that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Refresh the feed with this name.
    Feed(String),
    /// The cron eviction pass (`cleanup.interval`).
    Cleanup,
    /// Compare stored bytes with the high watermark; check monitoring thresholds.
    SizeCheck,
}

impl Job {
    /// The `job` label of the scheduler lag metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Feed(_) => "feed",
            Job::Cleanup => "cleanup",
            Job::SizeCheck => "size_check",
        }
    }
}

/// A due job and how late it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// What to run.
    pub job: Job,
    /// When it was due.
    pub at: Millis,
    /// `now - at`: how late the scheduler picked it up.
    pub lag_ms: Millis,
}

/// What applying a new config changed, for the reload log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Feeds new in the reloaded config.
    pub feeds_added: Vec<String>,
    /// Feeds no longer configured.
    pub feeds_removed: Vec<String>,
    /// Feeds whose URL, period or class changed.
    pub feeds_changed: Vec<String>,
    /// The cleanup schedule changed.
    pub cron_changed: bool,
}

#[derive(Debug, Clone)]
struct FeedSlot {
    url: String,
    class: Option<String>,
    every_ms: Millis,
    /// Runs so far.
    round: u64,
    /// Un-jittered time of the next run.
    anchor: Millis,
    /// `anchor` plus this round's jitter.
    due: Millis,
}

/// The daemon's timetable.
#[derive(Debug, Clone)]
pub struct Schedule {
    feeds: BTreeMap<String, FeedSlot>,
    cron_expr: String,
    cron: Cron,
    next_cleanup: Option<Millis>,
    size_every_ms: Millis,
    next_size_check: Millis,
}

/// Deterministic jitter for run `round` of feed `name`: in
/// `0..=min(every / 10, MAX_JITTER_MS)`.
pub fn jitter(name: &str, round: u64, every_ms: Millis) -> Millis {
    let span = (every_ms / 10).clamp(0, MAX_JITTER_MS);
    if span == 0 {
        return 0;
    }
    let mut h = blake3::Hasher::new();
    h.update(name.as_bytes());
    h.update(&round.to_le_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    (u64::from_le_bytes(b) % (span as u64 + 1)) as Millis
}

/// The first instant strictly after `after` that matches `cron`, in UTC.
pub fn next_cron(cron: &Cron, after: Millis) -> Option<Millis> {
    let t = chrono::DateTime::from_timestamp_millis(after)?;
    cron.find_next_occurrence(&t, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn parse_cron(expr: &str) -> Result<Cron, String> {
    expr.parse::<Cron>()
        .map_err(|e| format!("cleanup.interval: invalid cron expression `{expr}`: {e}"))
}

fn ms(d: std::time::Duration) -> Millis {
    d.as_millis().min(i64::MAX as u128) as Millis
}

impl Schedule {
    /// The timetable of `config` for a daemon starting at `now`.
    ///
    /// # Errors
    /// A message naming `cleanup.interval` if the cron expression is invalid.
    pub fn new(config: &Config, now: Millis) -> Result<Schedule, String> {
        let cron = parse_cron(&config.cleanup.interval)?;
        let size_every_ms = ms(config.daemon.size_check.0).max(1);
        let mut s = Schedule {
            feeds: BTreeMap::new(),
            cron_expr: config.cleanup.interval.clone(),
            next_cleanup: next_cron(&cron, now),
            cron,
            size_every_ms,
            next_size_check: now + size_every_ms,
        };
        s.apply(config, now)?;
        Ok(s)
    }

    /// Brings the timetable in line with `config` (hot reload). Removed
    /// feeds stop; added feeds and feeds whose URL or class changed run
    /// soon; a feed whose interval changed keeps its last run and moves its
    /// next one to `last run + new interval` (not before `now`).
    ///
    /// # Errors
    /// A message naming `cleanup.interval`; the timetable is then unchanged.
    pub fn apply(&mut self, config: &Config, now: Millis) -> Result<Changes, String> {
        let mut changes = Changes::default();
        if config.cleanup.interval != self.cron_expr {
            let cron = parse_cron(&config.cleanup.interval)?;
            self.next_cleanup = next_cron(&cron, now);
            self.cron = cron;
            self.cron_expr = config.cleanup.interval.clone();
            changes.cron_changed = true;
        }
        let size_every_ms = ms(config.daemon.size_check.0).max(1);
        if size_every_ms != self.size_every_ms {
            self.size_every_ms = size_every_ms;
            self.next_size_check = self.next_size_check.min(now + size_every_ms);
        }
        let before: Vec<String> = self.feeds.keys().cloned().collect();
        for name in before {
            if !config.feeds.iter().any(|f| f.name == name) {
                self.feeds.remove(&name);
                changes.feeds_removed.push(name);
            }
        }
        for feed in &config.feeds {
            let every_ms = ms(feed.every.0).max(1);
            match self.feeds.get_mut(&feed.name) {
                None => {
                    let due = now + jitter(&feed.name, 0, every_ms);
                    self.feeds.insert(
                        feed.name.clone(),
                        FeedSlot {
                            url: feed.url.clone(),
                            class: feed.class.clone(),
                            every_ms,
                            round: 0,
                            anchor: now,
                            due,
                        },
                    );
                    changes.feeds_added.push(feed.name.clone());
                }
                Some(slot) => {
                    let moved = slot.url != feed.url || slot.class != feed.class;
                    if moved {
                        slot.url = feed.url.clone();
                        slot.class = feed.class.clone();
                        slot.anchor = now;
                    } else if slot.every_ms != every_ms {
                        if slot.round > 0 {
                            let last = slot.anchor - slot.every_ms;
                            slot.anchor = (last + every_ms).max(now);
                        }
                    } else {
                        continue;
                    }
                    slot.every_ms = every_ms;
                    slot.due = slot.anchor + jitter(&feed.name, slot.round, every_ms);
                    changes.feeds_changed.push(feed.name.clone());
                }
            }
        }
        Ok(changes)
    }

    /// The earliest instant something is due.
    pub fn next_wake(&self) -> Millis {
        self.feeds
            .values()
            .map(|f| f.due)
            .chain(self.next_cleanup)
            .fold(self.next_size_check, Millis::min)
    }

    /// Every job due at `now`, earliest first; each is rescheduled.
    pub fn take_due(&mut self, now: Millis) -> Vec<Due> {
        let mut out = Vec::new();
        for (name, slot) in &mut self.feeds {
            if slot.due <= now {
                out.push(Due {
                    job: Job::Feed(name.clone()),
                    at: slot.due,
                    lag_ms: now - slot.due,
                });
                slot.round += 1;
                slot.anchor += slot.every_ms;
                if slot.anchor <= now {
                    // Fell a period behind: skip the missed runs, keep the phase.
                    let missed = (now - slot.anchor) / slot.every_ms + 1;
                    slot.anchor += missed * slot.every_ms;
                }
                slot.due = slot.anchor + jitter(name, slot.round, slot.every_ms);
            }
        }
        if let Some(at) = self.next_cleanup.filter(|t| *t <= now) {
            out.push(Due {
                job: Job::Cleanup,
                at,
                lag_ms: now - at,
            });
            self.next_cleanup = next_cron(&self.cron, now);
        }
        if self.next_size_check <= now {
            let at = self.next_size_check;
            out.push(Due {
                job: Job::SizeCheck,
                at,
                lag_ms: now - at,
            });
            self.next_size_check = now + self.size_every_ms;
        }
        out.sort_by_key(|d| d.at);
        out
    }

    /// When feed `name` runs next.
    pub fn feed_due(&self, name: &str) -> Option<Millis> {
        self.feeds.get(name).map(|f| f.due)
    }

    /// When the next cron eviction pass runs.
    pub fn next_cleanup(&self) -> Option<Millis> {
        self.next_cleanup
    }

    /// Names of the scheduled feeds.
    pub fn feed_names(&self) -> impl Iterator<Item = &str> {
        self.feeds.keys().map(String::as_str)
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
