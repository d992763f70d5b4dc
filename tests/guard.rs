//! The staleness guard: boundaries, max_age, mixed sets, patterns,
//! counters, and agreement with `get` (property tests).

mod common;

use std::time::Duration;

use common::{open, T0};
use freshcache::{Error, Put, StaleReason, StaleSignal};
use proptest::prelude::*;

fn refused(r: freshcache::Result<freshcache::FreshSet>) -> Vec<StaleSignal> {
    match r {
        Err(Error::Stale(s)) => s,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn fresh_one_millisecond_before_expiry_refused_at_and_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g1:1", b"{}", Put::default()).unwrap(); // 60 s
    clock.set(T0 + 59_999);
    let set = cache.guard().require(&["odds:g1:1"]).unwrap();
    assert_eq!(set.signals[0].meta.age_ms, 59_999);
    assert_eq!(&set.get("odds:g1:1").unwrap()[..], b"{}");
    clock.set(T0 + 60_000);
    let s = refused(cache.guard().require(&["odds:g1:1"]));
    assert_eq!(s[0].reason, StaleReason::Expired);
    assert_eq!(
        (s[0].age_ms, s[0].limit_ms, s[0].over_by_ms),
        (Some(60_000), Some(60_000), Some(0))
    );
    clock.set(T0 + 61_000);
    let s = refused(cache.guard().require(&["odds:g1:1"]));
    assert_eq!(s[0].over_by_ms, Some(1_000));
}

#[test]
fn max_age_is_stricter_than_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache
        .put("llm:features:c1:d", b"v", Put::default())
        .unwrap(); // 24 h
    clock.set(T0 + 6 * 3_600_000 - 1);
    assert!(cache
        .guard()
        .max_age(Duration::from_secs(6 * 3600))
        .require(&["llm:features:c1:d"])
        .is_ok());
    clock.set(T0 + 6 * 3_600_000);
    let s = refused(
        cache
            .guard()
            .max_age(Duration::from_secs(6 * 3600))
            .require(&["llm:features:c1:d"]),
    );
    assert_eq!(s[0].reason, StaleReason::TooOld);
    assert_eq!(s[0].limit_ms, Some(6 * 3_600_000));
    // A per-class limit applies to its class only.
    let g = cache.guard().class_max_age("odds", Duration::from_secs(1));
    assert!(g.require(&["llm:features:c1:d"]).is_ok());
    let g = cache
        .guard()
        .class_max_age("llm_features", Duration::from_secs(3600));
    assert_eq!(
        refused(g.require(&["llm:features:c1:d"]))[0].reason,
        StaleReason::TooOld
    );
}

#[test]
fn a_mixed_set_lists_exactly_the_bad_signals() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g1:1", b"1", Put::default()).unwrap(); // 60 s
    cache.put("odds:g2:1", b"2", Put::default()).unwrap();
    cache.put("news:r:1", b"3", Put::default()).unwrap(); // 1 h
    cache
        .put("llm:features:c1:d", b"4", Put::default())
        .unwrap(); // 24 h
    clock.advance(Duration::from_secs(120));
    let s = refused(cache.guard().require(&[
        "news:r:1",
        "odds:g1:1",
        "missing:key",
        "llm:features:c1:d",
        "odds:g2:1",
    ]));
    let bad: Vec<(&str, StaleReason)> = s
        .iter()
        .map(|s| (s.requirement.as_str(), s.reason))
        .collect();
    assert_eq!(
        bad,
        [
            ("odds:g1:1", StaleReason::Expired),
            ("missing:key", StaleReason::Missing),
            ("odds:g2:1", StaleReason::Expired)
        ]
    );
    let msg = Error::Stale(s).to_string();
    assert!(msg.starts_with("3 signal(s) stale or missing"), "{msg}");
    assert!(
        msg.contains("odds:g1:1 expired") && msg.contains("missing:key missing"),
        "{msg}"
    );
}

#[test]
fn a_pattern_requires_its_newest_match_to_be_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g123:100", b"old", Put::default()).unwrap();
    clock.advance(Duration::from_secs(50));
    cache.put("odds:g123:150", b"new", Put::default()).unwrap();
    clock.advance(Duration::from_secs(20)); // old expired, new fresh
    let set = cache.guard().require(&["odds:g123:*"]).unwrap();
    assert_eq!(set.signals[0].meta.key, "odds:g123:150");
    assert_eq!(&set.get("odds:g123:*").unwrap()[..], b"new");
    clock.advance(Duration::from_secs(60));
    let s = refused(cache.guard().require(&["odds:g123:*"]));
    assert_eq!(
        (s[0].key.as_deref(), s[0].reason),
        (Some("odds:g123:150"), StaleReason::Expired)
    );
    let s = refused(cache.guard().require(&["odds:nogame:*"]));
    assert_eq!(
        (s[0].key.as_deref(), s[0].reason),
        (None, StaleReason::Missing)
    );
}

#[test]
fn the_violation_counter_moves_by_exactly_the_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g1:1", b"1", Put::default()).unwrap();
    cache.put("news:r:1", b"2", Put::default()).unwrap();
    assert!(cache.guard().require(&["odds:g1:1", "news:r:1"]).is_ok());
    clock.advance(Duration::from_secs(61));
    for _ in 0..3 {
        refused(
            cache
                .guard()
                .require(&["odds:g1:1", "news:r:1", "odds:none:1"]),
        );
    }
    let s = cache.stats().unwrap();
    assert_eq!(s.by_class["odds"].guard_checks, 1 + 6);
    assert_eq!(s.by_class["odds"].ttl_violations, 6);
    assert_eq!(s.by_class["news"].guard_checks, 4);
    assert_eq!(s.by_class["news"].ttl_violations, 0);
    assert_eq!(s.ttl_violations, 6);
    assert!((s.by_class["odds"].ttl_violation_rate - 6.0 / 7.0).abs() < 1e-9);
}

#[test]
fn at_judges_as_of_the_inference_instant() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g1:1", b"1", Put::default()).unwrap();
    clock.advance(Duration::from_secs(300));
    assert!(cache
        .guard()
        .at(T0 + 30_000)
        .require(&["odds:g1:1"])
        .is_ok());
    let s = refused(cache.guard().at(T0 - 1).require(&["odds:g1:1"]));
    assert_eq!(s[0].reason, StaleReason::FromTheFuture);
}

#[test]
fn bad_requirements_are_input_errors_not_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    assert!(matches!(
        cache.guard().require(&["a::b"]),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        cache.guard().require(&["a:**"]),
        Err(Error::InvalidPattern { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For random entries and instants the guard accepts iff every requested
    /// signal is fresh under a model, and agrees with `get` entry by entry.
    #[test]
    fn guard_accepts_iff_every_signal_is_fresh_and_agrees_with_get(
        entries in proptest::collection::vec((0u8..6, 1u64..120_000, 0u64..60_000), 1..8),
        probe in 0u64..200_000,
        wanted in proptest::collection::vec(0u8..8, 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (cache, clock) = open(dir.path());
        let mut model = std::collections::HashMap::new();
        for (k, ttl_ms, step) in &entries {
            clock.advance(Duration::from_millis(*step));
            let key = format!("sig:{k}");
            cache.put(&key, key.as_bytes(), Put::default().ttl(Duration::from_millis(*ttl_ms))).unwrap();
            model.insert(key, cache.now() + *ttl_ms as i64);
        }
        clock.advance(Duration::from_millis(probe));
        let now = cache.now();
        let keys: Vec<String> = wanted.iter().map(|k| format!("sig:{k}")).collect();
        let all_fresh = keys.iter().all(|k| model.get(k).is_some_and(|exp| now < *exp));
        let result = cache.guard().require(&keys);
        prop_assert_eq!(result.is_ok(), all_fresh);
        if let Err(Error::Stale(bad)) = &result {
            let expected: Vec<&String> = keys.iter().filter(|k| model.get(*k).is_none_or(|exp| now >= *exp)).collect();
            prop_assert_eq!(bad.len(), expected.len());
        }
        for k in &keys {
            let single_ok = cache.guard().require(&[k]).is_ok();
            prop_assert_eq!(single_ok, cache.get(k).unwrap().is_some(), "guard and get disagree on {}", k);
        }
    }
}
