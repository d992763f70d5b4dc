use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::base::config::{FeedConfig, WarmItem};

/// A source that records calls and the most loads in flight at once.
#[derive(Debug, Default)]
struct Fake {
    now: AtomicUsize,
    max: AtomicUsize,
    refreshed: Mutex<Vec<String>>,
}

impl FeedSource for Fake {
    async fn refresh(&self, feed: FeedConfig) -> Result<Refresh> {
        self.refreshed.lock().unwrap().push(feed.name);
        Ok(Refresh {
            outcome: Outcome::NotModified,
            status: Some(304),
            body_bytes: 0,
            articles: 0,
        })
    }

    async fn warm(&self, item: WarmItem) -> Result<Outcome> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        if item.key.ends_with(":bad") {
            return Err(Error::Upstream {
                url: "u".into(),
                reason: "no".into(),
            });
        }
        Ok(Outcome::Fetched)
    }
}

fn shared(dir: &std::path::Path) -> Arc<Shared> {
    let mut c = Config::default();
    c.cache.root = dir.to_path_buf();
    Arc::new(Shared {
        cache: Cache::with_config(c).unwrap(),
        metrics: Default::default(),
    })
}

#[tokio::test]
async fn warm_up_is_bounded_in_concurrency_and_counts_failures() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    let fake = Arc::new(Fake::default());
    let items: Vec<WarmItem> = (0..20)
        .map(|i| WarmItem {
            key: format!("teams:{i}{}", if i % 5 == 0 { ":bad" } else { "" }),
            url: Some("http://127.0.0.1:1/x".into()),
            class: None,
        })
        .collect();
    let (ok, failed) = warm::warm(fake.clone(), items, 3, s.clone()).await;
    assert_eq!((ok, failed), (16, 4));
    assert!(fake.max.load(Ordering::SeqCst) <= 3);
    assert!(fake.max.load(Ordering::SeqCst) >= 2, "loads overlap");
    let warm = s.metrics.warm.lock().unwrap().clone();
    assert_eq!(warm.get("200"), Some(&16));
    assert_eq!(warm.get("error"), Some(&4));
}

#[tokio::test]
async fn a_config_with_a_bad_cron_is_rejected_and_the_old_stays() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    let mut schedule = Schedule::new(&s.cache.config(), s.cache.now()).unwrap();
    let mut bad = (*s.cache.config()).clone();
    bad.cleanup.interval = "not cron".into();
    bad.classes.get_mut("odds").unwrap().ttl.0 = Duration::from_secs(5);
    apply(&s, &mut schedule, bad);
    assert_eq!(s.metrics.reload_errors.load(Ordering::Relaxed), 1);
    assert_eq!(
        s.cache.config().classes["odds"].ttl.0,
        Duration::from_secs(60)
    );
    let mut good = (*s.cache.config()).clone();
    good.classes.get_mut("odds").unwrap().ttl.0 = Duration::from_secs(5);
    apply(&s, &mut schedule, good);
    assert_eq!(s.metrics.reloads.load(Ordering::Relaxed), 1);
    assert_eq!(
        s.cache.config().classes["odds"].ttl.0,
        Duration::from_secs(5)
    );
}

#[test]
fn thresholds_show_as_alerts() {
    let mut c = Config::default();
    c.monitoring.cache_hit_ratio_threshold = 0.8;
    c.monitoring.ttl_violation_threshold = 0.01;
    let quiet = crate::Stats::default();
    let a = http::alerts(&quiet, &c);
    assert!(
        !a.hit_ratio_low && !a.ttl_violations_high,
        "no traffic, no alert"
    );
    let busy = crate::Stats {
        hits: 7,
        misses: 3,
        hit_rate: 0.7,
        guard_checks: 100,
        ttl_violations: 2,
        ..Default::default()
    };
    let a = http::alerts(&busy, &c);
    assert!(a.hit_ratio_low && a.ttl_violations_high);
    assert!((a.ttl_violation_rate - 0.02).abs() < 1e-9);
}

#[tokio::test]
async fn run_with_refreshes_feeds_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.cache.root = dir.path().to_path_buf();
    c.feeds = vec![FeedConfig {
        name: "r".into(),
        url: "http://127.0.0.1:1/r.xml".into(),
        every: crate::base::config::Dur(Duration::from_millis(20)),
        class: None,
        max_size: None,
    }];
    let cache = Cache::with_config(c).unwrap();
    let options = Options {
        config_path: None,
        listen: Some("127.0.0.1:0".parse().unwrap()),
    };
    let daemon = Daemon::bind(cache, options).await.unwrap();
    assert_ne!(daemon.local_addr().unwrap().port(), 0);
    let fake = Arc::new(Fake::default());
    let seen = fake.clone();
    let stop = async move {
        while seen.refreshed.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    daemon.run_with(fake.clone(), stop).await.unwrap();
    assert!(fake.refreshed.lock().unwrap().iter().all(|n| n == "r"));
}
