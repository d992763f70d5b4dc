//! The work the daemon's loop starts: feed refreshes (tasks, one in flight
//! per feed), eviction passes (a blocking thread, one at a time), the size
//! check and the monitoring thresholds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::{JoinError, JoinSet};

use super::http::{self, Shared};
use super::schedule::Job;
use super::source::{FeedSource, Outcome, Refresh};
use crate::base::clock::Millis;
use crate::base::error::{Error, Result};
use crate::maint::EvictionReport;

pub(crate) type Fetched = (String, Result<Refresh>);
pub(crate) type Evicted = (&'static str, Result<EvictionReport>);

/// Work the loop has started and not yet seen finish.
pub(crate) struct Jobs<S> {
    shared: Arc<Shared>,
    source: Arc<S>,
    pub fetches: JoinSet<Fetched>,
    /// Feeds with a refresh in flight (one per feed at a time).
    in_flight: HashSet<String>,
    /// Feeds whose body was over their limit (`max_size`, at most
    /// `cache.max_value_size`): (refusals in a
    /// row, no refresh before). Such a body is refused once and the feed
    /// backed off (max(every, 1h), doubling to 24h), not downloaded again
    /// every period; a success or a config reload clears it.
    backoff: HashMap<String, (u32, Millis)>,
    /// At most one eviction pass.
    pub evictions: JoinSet<Evicted>,
    /// (hit ratio low, TTL violations high) at the last check; warn on change.
    alerts: Option<(bool, bool)>,
}

impl<S: FeedSource> Jobs<S> {
    pub fn new(shared: Arc<Shared>, source: Arc<S>) -> Jobs<S> {
        Jobs {
            shared,
            source,
            fetches: JoinSet::new(),
            in_flight: HashSet::new(),
            backoff: HashMap::new(),
            evictions: JoinSet::new(),
            alerts: None,
        }
    }

    pub fn start(&mut self, job: Job) {
        match job {
            Job::Feed(name) => self.refresh(name),
            Job::Cleanup => self.evict("cron"),
            Job::SizeCheck => {
                self.check_size();
                self.check_thresholds();
            }
        }
    }

    fn refresh(&mut self, name: String) {
        let config = self.shared.cache.config();
        let Some(feed) = config.feeds.iter().find(|f| f.name == name).cloned() else {
            return;
        };
        if let Some((_, until)) = self.backoff.get(&name) {
            if self.shared.cache.now() < *until {
                self.shared.metrics.feed(&name, "backoff");
                tracing::debug!(feed = %name, "body over the limit last time; backing off");
                return;
            }
        }
        if !self.in_flight.insert(name.clone()) {
            tracing::debug!(feed = %name, "previous refresh still running; skipped");
            return;
        }
        let source = self.source.clone();
        self.fetches
            .spawn(async move { (name, source.refresh(feed).await) });
    }

    pub fn fetched(&mut self, done: std::result::Result<Fetched, JoinError>) {
        let Ok((name, result)) = done else {
            return; // cancelled at shutdown
        };
        self.in_flight.remove(&name);
        match result {
            Ok(r) => {
                self.backoff.remove(&name);
                self.shared.metrics.feed(&name, r.outcome.label());
                tracing::info!(
                    feed = %name,
                    outcome = r.outcome.label(),
                    status = r.status,
                    bytes = r.body_bytes,
                    articles = r.articles,
                    "feed refresh"
                );
                if r.outcome == Outcome::Fetched {
                    self.check_size();
                }
            }
            Err(e) => {
                self.shared.metrics.feed(&name, "error");
                tracing::warn!(feed = %name, outcome = "error", error = %e, "feed refresh");
                self.back_off(&name, &e);
            }
        }
    }

    /// After a body over the limit: no refresh of `name` for max(every, 1h),
    /// doubling per refusal in a row up to 24h.
    fn back_off(&mut self, name: &str, e: &Error) {
        if !crate::fetch::body_too_large(e) {
            return;
        }
        let config = self.shared.cache.config();
        let every = config
            .feeds
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.every.0.as_millis() as Millis);
        let n = self.backoff.get(name).map_or(0, |b| b.0) + 1;
        const HOUR: Millis = 3_600_000;
        let delay = every
            .max(HOUR)
            .saturating_mul(1 << (n - 1).min(5))
            .min(24 * HOUR);
        let until = self.shared.cache.now().saturating_add(delay);
        tracing::warn!(
            feed = %name,
            refusals = n,
            backoff_s = delay / 1000,
            "feed body over its limit (max_size / cache.max_value_size): not downloading it again before the backoff ends"
        );
        self.backoff.insert(name.to_owned(), (n, until));
    }

    /// A reloaded config may have raised the limit or moved the feed.
    pub fn config_changed(&mut self) {
        self.backoff.clear();
    }

    /// Starts a watermark pass when stored bytes are above the high watermark.
    fn check_size(&mut self) {
        let c = self.shared.cache.config();
        let high = (c.cache.max_size.0 as f64 * c.cache.high_watermark) as u64;
        match self.shared.cache.disk_bytes() {
            Ok(bytes) if bytes > high => self.evict("watermark"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "size check failed"),
        }
    }

    fn evict(&mut self, trigger: &'static str) {
        if !self.evictions.is_empty() {
            return;
        }
        let cache = self.shared.cache.clone();
        self.evictions.spawn_blocking(move || {
            let _span = tracing::info_span!("evict", trigger).entered();
            let report = cache.evict();
            if trigger == "cron" {
                match cache.gc() {
                    Ok(gc) => tracing::info!(
                        orphans = gc.orphan_files_removed,
                        orphan_bytes = gc.orphan_bytes_removed,
                        temp_files = gc.temp_files_removed,
                        "gc pass"
                    ),
                    Err(e) => tracing::warn!(error = %e, "gc pass failed"),
                }
            }
            (trigger, report)
        });
    }

    pub fn evicted(&mut self, done: std::result::Result<Evicted, JoinError>) {
        match done {
            Ok((trigger, Ok(_))) => self.shared.metrics.eviction(trigger),
            Ok((trigger, Err(e))) => tracing::error!(trigger, error = %e, "eviction pass failed"),
            Err(e) => tracing::error!(error = %e, "eviction task failed"),
        }
    }

    /// Logs a warning when a monitoring threshold is crossed (once per crossing).
    fn check_thresholds(&mut self) {
        let stats = match self.shared.cache.stats() {
            Ok(s) => s,
            Err(e) => return tracing::warn!(error = %e, "stats failed"),
        };
        let config = self.shared.cache.config();
        let a = http::alerts(&stats, &config);
        let now = (a.hit_ratio_low, a.ttl_violations_high);
        let before = self.alerts.replace(now).unwrap_or((false, false));
        if a.hit_ratio_low && !before.0 {
            tracing::warn!(
                hit_ratio = a.hit_ratio,
                threshold = config.monitoring.cache_hit_ratio_threshold,
                "hit ratio below monitoring.cache_hit_ratio_threshold"
            );
        }
        if a.ttl_violations_high && !before.1 {
            tracing::warn!(
                rate = a.ttl_violation_rate,
                threshold = config.monitoring.ttl_violation_threshold,
                "TTL violation rate above monitoring.ttl_violation_threshold"
            );
        }
    }
}
