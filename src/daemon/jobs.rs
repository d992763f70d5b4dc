//! The work the daemon's loop starts: feed refreshes (tasks, one in flight
//! per feed), eviction passes (a blocking thread, one at a time), the size
//! check and the monitoring thresholds.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::{JoinError, JoinSet};

use super::http::{self, Shared};
use super::schedule::Job;
use super::source::{FeedSource, Outcome, Refresh};
use crate::base::error::Result;
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
            }
        }
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
