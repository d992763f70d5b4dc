use super::*;
use crate::base::config::{Dur, FeedConfig};
use std::time::Duration;

/// 2027-01-15T08:00:00Z.
const T0: Millis = 1_800_000_000_000;
const MIN: Millis = 60_000;
const HOUR: Millis = 60 * MIN;

fn feed(name: &str, every: Duration) -> FeedConfig {
    FeedConfig {
        name: name.into(),
        url: format!("http://127.0.0.1:1/{name}.xml"),
        every: Dur(every),
        class: None,
        max_size: None,
    }
}

fn config(feeds: Vec<FeedConfig>) -> Config {
    let mut c = Config {
        feeds,
        ..Config::default()
    };
    c.daemon.size_check = Dur(Duration::from_secs(10));
    c
}

fn feed_runs(s: &mut Schedule, from: Millis, to: Millis, step: Millis) -> Vec<(String, Millis)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        for d in s.take_due(now) {
            if let Job::Feed(name) = d.job {
                out.push((name, d.at));
            }
        }
        now += step;
    }
    out
}

#[test]
fn jitter_is_repeatable_bounded_and_differs_by_feed() {
    for every in [1_000, 5 * MIN, 24 * HOUR] {
        for round in 0..50 {
            let j = jitter("reuters", round, every);
            assert_eq!(j, jitter("reuters", round, every));
            assert!((0..=(every / 10).min(MAX_JITTER_MS)).contains(&j), "{j}");
        }
    }
    let a: Vec<_> = (0..20).map(|r| jitter("reuters", r, 5 * MIN)).collect();
    let b: Vec<_> = (0..20).map(|r| jitter("ap", r, 5 * MIN)).collect();
    assert_ne!(a, b);
    assert_eq!(jitter("x", 3, 5), 0, "no jitter below 10 ms periods");
}

#[test]
fn feeds_with_one_interval_do_not_fire_together() {
    let c = config(vec![
        feed("reuters", Duration::from_secs(300)),
        feed("ap", Duration::from_secs(300)),
    ]);
    let s = Schedule::new(&c, T0).unwrap();
    assert_ne!(s.feed_due("reuters"), s.feed_due("ap"));
}

#[test]
fn a_feed_runs_soon_after_start_then_every_interval_plus_jitter() {
    let every = 5 * MIN;
    let mut s = Schedule::new(&config(vec![feed("r", Duration::from_secs(300))]), T0).unwrap();
    let first = s.feed_due("r").unwrap();
    assert!(first >= T0 && first <= T0 + every / 10);
    let runs = feed_runs(&mut s, T0, T0 + 10 * every + every / 2, 1_000);
    assert_eq!(runs.len(), 11, "{runs:?}");
    for (k, (_, at)) in runs.iter().enumerate() {
        let anchor = T0 + k as Millis * every;
        assert_eq!(*at, anchor + jitter("r", k as u64, every));
    }
}

#[test]
fn a_daemon_that_fell_behind_runs_a_feed_once_not_per_missed_period() {
    let mut s = Schedule::new(&config(vec![feed("r", Duration::from_secs(60))]), T0).unwrap();
    assert_eq!(feed_runs(&mut s, T0 + 9_000, T0 + 9_000, 1).len(), 1);
    let late = T0 + 3 * HOUR;
    let due: Vec<_> = s
        .take_due(late)
        .into_iter()
        .filter(|d| d.job == Job::Feed("r".into()))
        .collect();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].lag_ms, late - due[0].at);
    assert!(due[0].lag_ms > 2 * HOUR);
    assert!(s.take_due(late).is_empty());
    let next = s.feed_due("r").unwrap();
    assert!(next > late && next <= late + MIN + 6_000, "{next}");
    assert_eq!((next - jitter("r", 2, MIN) - T0) % MIN, 0, "phase kept");
}

#[test]
fn cleanup_follows_the_cron_expression_in_utc() {
    let mut s = Schedule::new(&config(vec![]), T0).unwrap();
    let two_am = T0 + 18 * HOUR; // 2027-01-16T02:00:00Z
    assert_eq!(s.next_cleanup(), Some(two_am));
    assert!(!s.take_due(two_am - 1).iter().any(|d| d.job == Job::Cleanup));
    let due = s.take_due(two_am + 1_500);
    let cleanup = due.iter().find(|d| d.job == Job::Cleanup).unwrap();
    assert_eq!((cleanup.at, cleanup.lag_ms), (two_am, 1_500));
    assert_eq!(s.next_cleanup(), Some(two_am + 24 * HOUR));
}

#[test]
fn size_check_runs_on_its_interval() {
    let mut s = Schedule::new(&config(vec![]), T0).unwrap();
    assert_eq!(s.next_wake(), T0 + 10_000);
    assert!(s.take_due(T0 + 9_999).is_empty());
    assert_eq!(s.take_due(T0 + 10_000)[0].job, Job::SizeCheck);
    assert_eq!(s.next_wake(), T0 + 20_000);
}

#[test]
fn next_wake_is_the_earliest_due_job() {
    let s = Schedule::new(&config(vec![feed("r", Duration::from_secs(1))]), T0).unwrap();
    assert_eq!(s.next_wake(), s.feed_due("r").unwrap());
    assert!(s.next_wake() <= T0 + 100);
}

#[test]
fn reload_adds_removes_and_retimes_feeds() {
    let mut c = config(vec![
        feed("keep", Duration::from_secs(600)),
        feed("drop", Duration::from_secs(600)),
        feed("slow", Duration::from_secs(600)),
    ]);
    let mut s = Schedule::new(&c, T0).unwrap();
    let _ = s.take_due(T0 + 60_000); // every feed ran once
    let keep_due = s.feed_due("keep").unwrap();
    let now = T0 + 2 * MIN;
    c.feeds = vec![
        feed("keep", Duration::from_secs(600)),
        feed("slow", Duration::from_secs(1800)),
        feed("new", Duration::from_secs(60)),
    ];
    let ch = s.apply(&c, now).unwrap();
    assert_eq!(ch.feeds_added, vec!["new".to_string()]);
    assert_eq!(ch.feeds_removed, vec!["drop".to_string()]);
    assert_eq!(ch.feeds_changed, vec!["slow".to_string()]);
    assert!(!ch.cron_changed);
    assert_eq!(
        s.feed_due("keep"),
        Some(keep_due),
        "unchanged feed keeps its time"
    );
    assert_eq!(s.feed_due("drop"), None);
    let new_due = s.feed_due("new").unwrap();
    assert!(new_due >= now && new_due <= now + 6_000);
    let slow = s.feed_due("slow").unwrap();
    assert_eq!(slow, T0 + 30 * MIN + jitter("slow", 1, 30 * MIN));
    assert!(feed_runs(&mut s, now, now + HOUR, 1_000)
        .iter()
        .all(|(n, _)| n != "drop"));
}

#[test]
fn a_changed_url_refreshes_the_feed_soon() {
    let mut c = config(vec![feed("r", Duration::from_secs(3600))]);
    let mut s = Schedule::new(&c, T0).unwrap();
    let _ = s.take_due(T0 + 400_000);
    let now = T0 + 10 * MIN;
    c.feeds[0].url = "http://127.0.0.1:2/moved.xml".into();
    assert_eq!(
        s.apply(&c, now).unwrap().feeds_changed,
        vec!["r".to_string()]
    );
    assert!(s.feed_due("r").unwrap() <= now + MAX_JITTER_MS);
}

#[test]
fn reload_changes_the_cron_and_rejects_a_bad_one() {
    let mut c = config(vec![]);
    let mut s = Schedule::new(&c, T0).unwrap();
    c.cleanup.interval = "*/15 * * * *".into();
    assert!(s.apply(&c, T0 + 1).unwrap().cron_changed);
    assert_eq!(s.next_cleanup(), Some(T0 + 15 * MIN));
    c.cleanup.interval = "61 * * * *".into();
    let err = s.apply(&c, T0 + 2).unwrap_err();
    assert!(err.contains("cleanup.interval"), "{err}");
    assert_eq!(s.next_cleanup(), Some(T0 + 15 * MIN), "old schedule stays");
}
