//! The daemon's HTTP endpoints: `/metrics` (the cache's exposition plus the
//! daemon's own families), `/healthz`, `/v1/stats` and `/v1/config` (JSON).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::base::config::Config;
use crate::cache::metrics::Exposition;
use crate::cache::Cache;
use crate::disk::stats::Stats;

/// Counters and gauges of this daemon process. `std::sync::Mutex`: held
/// for a map update, never across an await.
#[derive(Debug, Default)]
pub(crate) struct DaemonMetrics {
    pub reloads: AtomicU64,
    pub reload_errors: AtomicU64,
    /// (feed, outcome) → refreshes.
    pub feed_refreshes: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// trigger → eviction passes.
    pub evictions: Mutex<BTreeMap<&'static str, u64>>,
    /// outcome → warm-up loads.
    pub warm: Mutex<BTreeMap<&'static str, u64>>,
    /// job kind → lag of its last run, ms.
    pub lag_ms: Mutex<BTreeMap<&'static str, i64>>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    *m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(k)
        .or_default() += 1;
}

impl DaemonMetrics {
    pub fn feed(&self, name: &str, outcome: &'static str) {
        bump(&self.feed_refreshes, (name.to_string(), outcome));
    }
    pub fn eviction(&self, trigger: &'static str) {
        bump(&self.evictions, trigger);
    }
    pub fn warmed(&self, outcome: &'static str) {
        bump(&self.warm, outcome);
    }
    pub fn lag(&self, kind: &'static str, ms: i64) {
        self.lag_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind, ms.max(0));
    }
}

/// What the endpoints read.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cache: Cache,
    pub metrics: DaemonMetrics,
}

/// The monitoring thresholds against the current figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Alerts {
    pub hit_ratio: f64,
    pub ttl_violation_rate: f64,
    /// Hit ratio below `cache_hit_ratio_threshold` (only once there was a lookup).
    pub hit_ratio_low: bool,
    /// TTL violation rate above `ttl_violation_threshold`.
    pub ttl_violations_high: bool,
}

pub(crate) fn alerts(stats: &Stats, config: &Config) -> Alerts {
    let m = &config.monitoring;
    let ttl_violation_rate = if stats.guard_checks == 0 {
        0.0
    } else {
        stats.ttl_violations as f64 / stats.guard_checks as f64
    };
    Alerts {
        hit_ratio: stats.hit_rate,
        ttl_violation_rate,
        hit_ratio_low: stats.hits + stats.misses > 0
            && stats.hit_rate < m.cache_hit_ratio_threshold,
        ttl_violations_high: ttl_violation_rate > m.ttl_violation_threshold,
    }
}

/// The full exposition: the cache's families, then the daemon's.
pub(crate) fn render(shared: &Shared) -> crate::Result<String> {
    let mut e = shared.cache.metrics()?;
    let config = shared.cache.config();
    let a = alerts(&shared.cache.stats()?, &config);
    let m = &shared.metrics;
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    e.single(
        "freshcache_hit_ratio_threshold",
        "gauge",
        "monitoring.cache_hit_ratio_threshold in force.",
        config.monitoring.cache_hit_ratio_threshold,
    )
    .single(
        "freshcache_hit_ratio_below_threshold",
        "gauge",
        "1 while the hit ratio is below monitoring.cache_hit_ratio_threshold.",
        flag(a.hit_ratio_low),
    )
    .single(
        "freshcache_ttl_violation_rate",
        "gauge",
        "TTL violations / guard checks since the root was created.",
        a.ttl_violation_rate,
    )
    .single(
        "freshcache_ttl_violation_threshold",
        "gauge",
        "monitoring.ttl_violation_threshold in force.",
        config.monitoring.ttl_violation_threshold,
    )
    .single(
        "freshcache_ttl_violation_rate_above_threshold",
        "gauge",
        "1 while the TTL violation rate is above monitoring.ttl_violation_threshold.",
        flag(a.ttl_violations_high),
    )
    .single(
        "freshcache_max_bytes",
        "gauge",
        "cache.max_size in force.",
        config.cache.max_size.0 as f64,
    )
    .single(
        "freshcache_config_reloads_total",
        "counter",
        "Config changes applied without restart.",
        m.reloads.load(Ordering::Relaxed) as f64,
    )
    .single(
        "freshcache_config_reload_errors_total",
        "counter",
        "Config changes rejected (parse or validation); the old config stayed.",
        m.reload_errors.load(Ordering::Relaxed) as f64,
    );
    e.family(
        "freshcache_feed_refreshes_total",
        "counter",
        "Feed refreshes by feed and outcome (200, 304, fresh, error).",
    );
    for ((feed, outcome), n) in lock(&m.feed_refreshes).iter() {
        e.sample(
            "freshcache_feed_refreshes_total",
            &[("feed", feed), ("outcome", outcome)],
            *n as f64,
        );
    }
    labelled(
        &mut e,
        "freshcache_eviction_passes_total",
        "counter",
        "Eviction passes by trigger (cron, watermark).",
        "trigger",
        &lock(&m.evictions),
    );
    labelled(
        &mut e,
        "freshcache_warm_total",
        "counter",
        "Warm-up loads on start by outcome.",
        "outcome",
        &lock(&m.warm),
    );
    let lag = lock(&m.lag_ms);
    e.family(
        "freshcache_scheduler_lag_seconds",
        "gauge",
        "How late the last run of each job kind started.",
    );
    for (kind, ms) in lag.iter() {
        e.sample(
            "freshcache_scheduler_lag_seconds",
            &[("job", kind)],
            *ms as f64 / 1e3,
        );
    }
    Ok(e.finish())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn labelled(
    e: &mut Exposition,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<&'static str, u64>,
) {
    e.family(name, kind, help);
    for (v, n) in values {
        e.sample(name, &[(label, v)], *n as f64);
    }
}

fn internal(e: crate::Error) -> Response {
    tracing::warn!(error = %e, "endpoint failed");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
}

/// Runs `f` on the blocking pool: the statistics read the index and, with
/// Redis, the shared quota counter (a round trip), never on a worker.
async fn off_worker<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(crate::Error::io(
            "stats",
            std::io::Error::other(e.to_string()),
        ))
    })
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match off_worker(move || render(&s)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    match off_worker(move || s.cache.stats()).await {
        Ok(st) => Json(st).into_response(),
        Err(e) => internal(e),
    }
}

async fn config(State(s): State<Arc<Shared>>) -> Response {
    Json(s.cache.config().as_ref().clone()).into_response()
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    match s.cache.disk_bytes() {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// The router of the endpoints.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/v1/stats", get(stats))
        .route("/v1/config", get(config))
        .with_state(shared)
}
