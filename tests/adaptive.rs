//! Measured and adaptive TTLs against a simulated origin: an in-process
//! axum server on 127.0.0.1 whose content changes every 10 s, then every
//! 2 min, by the same injected clock the cache uses (no sleeps).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use freshcache::{Cache, Clock, Config, FetchOptions, Fetcher, ManualClock};

struct Sim {
    clock: ManualClock,
    t0: i64,
    /// When the change rate shifts from every 10 s to every 2 min.
    shift: i64,
}

impl Sim {
    fn version(&self) -> i64 {
        let now = self.clock.now_ms();
        if now < self.shift {
            (now - self.t0) / 10_000
        } else {
            (self.shift - self.t0) / 10_000 + 1 + (now - self.shift) / 120_000
        }
    }
}

async fn serve(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let etag = format!("\"v{}\"", sim.version());
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let body = format!("{{\"odds\": {}}}", sim.version());
    (StatusCode::OK, [(header::ETAG, etag)], body).into_response()
}

async fn start(sim: Arc<Sim>) -> String {
    let app = axum::Router::new()
        .route("/odds", axum::routing::get(serve))
        .with_state(sim);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/odds")
}

fn open(dir: &std::path::Path, clock: &ManualClock, min: &str) -> Cache {
    let yaml = format!(
        "classes:\n  odds: {{ prefix: 'odds:', ttl: {{ adaptive: {{ min: {min}, max: 10m }} }} }}\n"
    );
    let mut config = Config::from_layers(Some(("t.yml".into(), &yaml)), Vec::new()).unwrap();
    config.cache.root = dir.to_path_buf();
    Cache::builder()
        .config(config)
        .clock(clock.clone())
        .open()
        .unwrap()
}

/// Polls like a reader that revalidates whenever the entry expires; returns
/// (time since t0 in s, TTL in s) per revalidation.
async fn follow(min: &str) -> (Vec<(i64, f64)>, Cache, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = ManualClock::new(t0);
    let sim = Arc::new(Sim {
        clock: clock.clone(),
        t0,
        shift: t0 + 10 * 60_000,
    });
    let url = start(sim).await;
    let cache = open(dir.path(), &clock, min);
    // The per-host rate limit runs on tokio's clock, not the injected one.
    let fetcher = Fetcher::builder(&cache)
        .rate_limit(freshcache::config::Rate::parse("10000/s").unwrap())
        .build()
        .unwrap();
    let mut trace = Vec::new();
    while clock.now_ms() < t0 + 40 * 60_000 {
        let out = fetcher
            .fetch(&url, "odds:g1", &FetchOptions::default())
            .await
            .unwrap();
        let now = clock.now_ms();
        let exp = out.expires_at.unwrap();
        trace.push(((now - t0) / 1000, (exp - now) as f64 / 1000.0));
        clock.set(exp);
    }
    (trace, cache, dir)
}

fn ttls_between(trace: &[(i64, f64)], from_s: i64, to_s: i64) -> Vec<f64> {
    trace
        .iter()
        .filter(|(t, _)| (from_s..to_s).contains(t))
        .map(|(_, ttl)| *ttl)
        .collect()
}

#[tokio::test]
async fn the_adaptive_ttl_follows_an_origin_that_changes_every_10s_then_every_2min() {
    let (trace, cache, _dir) = follow("1s").await;
    eprintln!("(t s, ttl s): {trace:?}");
    // Settled in the 10 s phase: about half the interval.
    let fast = ttls_between(&trace, 120, 600);
    assert!(!fast.is_empty());
    assert!(
        fast.iter().all(|t| (4.0..=8.0).contains(t)),
        "10 s phase: {fast:?}"
    );
    // Settled in the 2 min phase: about half of 2 min.
    let slow = ttls_between(&trace, 1500, 2400);
    assert!(!slow.is_empty());
    assert!(
        slow.iter().all(|t| (45.0..=100.0).contains(t)),
        "2 min phase: {slow:?}"
    );
    // The evidence is in stats: revalidations, unchanged ones, intervals.
    let s = cache.stats().unwrap();
    let e = &s.measured.classes["odds"];
    assert!(
        e.revalidations > 50 && e.unchanged > 0 && e.intervals > 50,
        "{e:?}"
    );
    let suggested = e.suggested_ttl_ms.unwrap();
    assert!((4_000..=60_000).contains(&suggested), "{e:?}");
    let m = cache.metrics().unwrap().finish();
    assert!(
        m.contains("freshcache_suggested_ttl_seconds{class=\"odds\"}"),
        "{m}"
    );
    assert!(
        m.contains("freshcache_revalidations_total{class=\"odds\",result=\"unchanged\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn the_adaptive_ttl_is_clamped_to_its_bounds() {
    let (trace, _cache, _dir) = follow("30s").await;
    let fast = ttls_between(&trace, 0, 600);
    assert!(fast.iter().all(|t| *t == 30.0), "min 30s: {fast:?}");
    let slow = ttls_between(&trace, 1500, 2400);
    assert!(
        slow.iter().all(|t| (45.0..=100.0).contains(t)),
        "2 min phase: {slow:?}"
    );
    assert!(trace.iter().all(|(_, t)| *t <= 600.0));
}

#[test]
fn the_estimator_halves_and_clamps() {
    use freshcache::fetch::measure::ttl_for_interval;
    let (min, max) = (Duration::from_secs(30), Duration::from_secs(600));
    assert_eq!(ttl_for_interval(120_000, min, max), Duration::from_secs(60));
    assert_eq!(ttl_for_interval(10_000, min, max), min);
    assert_eq!(ttl_for_interval(86_400_000, min, max), max);
    assert_eq!(ttl_for_interval(-5, min, max), min);
}

#[tokio::test]
async fn feed_documents_are_measured_per_feed_too() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = ManualClock::new(t0);
    let sim = Arc::new(Sim {
        clock: clock.clone(),
        t0,
        shift: t0 + 3_600_000,
    });
    let url = start(sim).await;
    let cache = open(dir.path(), &clock, "1s");
    let fetcher = Fetcher::new(&cache).unwrap();
    let opts = FetchOptions {
        revalidate: true,
        ..FetchOptions::default()
    };
    // Every 10 s changed, with an unchanged look 5 s in.
    for step in 0..7 {
        clock.set(t0 + step * 5_000);
        fetcher.fetch(&url, "feeds:wire", &opts).await.unwrap();
    }
    let s = cache.stats().unwrap();
    let e = &s.measured.feeds["wire"];
    assert_eq!((e.changed, e.unchanged), (3, 3), "{e:?}");
    assert_eq!(e.intervals, 3, "{e:?}"); // first seen at 0 s, changes at 10, 20, 30 s
    assert_eq!(e.mean_change_interval_ms, Some(10_000));
    assert_eq!(e.suggested_ttl_ms, Some(5_000));
    assert!(
        s.measured.classes.contains_key("default"),
        "{:?}",
        s.measured
    );
}
