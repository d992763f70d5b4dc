//! Prometheus exposition: the names fixed in DESIGN.md, values that move,
//! and promtool's verdict on the format.

mod common;

use std::time::Duration;

use common::open;
use freshcache::Put;

fn value_of(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn exposition_has_the_fixed_names_and_moving_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g1:1", b"{}", Put::default()).unwrap();
    cache.get("odds:g1:1").unwrap();
    cache.get("odds:g2:1").unwrap();
    clock.advance(Duration::from_secs(61));
    let _ = cache.guard().require(&["odds:g1:1"]);
    let text = cache.metrics().unwrap().finish();
    for name in [
        "freshcache_hits_total",
        "freshcache_misses_total",
        "freshcache_upstream_requests_total",
        "freshcache_ttl_violations_total",
        "freshcache_evicted_bytes_total",
        "freshcache_stored_bytes",
        "freshcache_entries",
        "freshcache_corrupt_blobs_total",
        "freshcache_get_duration_seconds",
        "freshcache_put_duration_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    assert_eq!(
        value_of(
            &text,
            "freshcache_hits_total{tier=\"memory\",class=\"odds\"}"
        ),
        1.0
    );
    assert_eq!(
        value_of(
            &text,
            "freshcache_misses_total{tier=\"disk\",class=\"odds\"}"
        ),
        1.0
    );
    assert_eq!(
        value_of(&text, "freshcache_ttl_violations_total{class=\"odds\"}"),
        1.0
    );
    assert_eq!(value_of(&text, "freshcache_entries"), 1.0);
    assert_eq!(
        value_of(&text, "freshcache_get_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        value_of(&text, "freshcache_put_duration_seconds_count"),
        1.0
    );
}

/// promtool (Debian package `prometheus`) must accept the exposition.
#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = common::tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    cache.put("news:r:1", b"x", Put::default()).unwrap();
    cache.get("news:r:1").unwrap();
    let text = cache.metrics().unwrap().finish();
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected the exposition:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The seeds' INF-003 names are served beside the `freshcache_*` families,
/// with the same figures; misses carry a tier; byte counters end in `_bytes_total`.
#[test]
fn inf003_names_mirror_the_freshcache_families() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = open(dir.path());
    cache.put("odds:g1:1", b"{}", Put::default()).unwrap();
    cache.get("odds:g1:1").unwrap(); // memory hit (the put filled L1)
    cache.get("odds:g2:1").unwrap(); // miss
    cache.get("odds:g3:1").unwrap(); // miss
    clock.advance(Duration::from_secs(61));
    let _ = cache.guard().require(&["odds:g1:1"]);
    let text = cache.metrics().unwrap().finish();
    assert_eq!(
        value_of(&text, "cache_hit_total{cache_type=\"memory\"}"),
        1.0
    );
    assert_eq!(value_of(&text, "cache_hit_total{cache_type=\"disk\"}"), 0.0);
    // Memory could not answer the two misses; disk (the last tier) neither.
    assert_eq!(
        value_of(&text, "cache_miss_total{cache_type=\"memory\"}"),
        2.0
    );
    assert_eq!(
        value_of(&text, "cache_miss_total{cache_type=\"disk\"}"),
        2.0
    );
    assert_eq!(
        value_of(
            &text,
            "freshcache_misses_total{tier=\"disk\",class=\"odds\"}"
        ),
        2.0
    );
    assert_eq!(
        value_of(&text, "ttl_violation_total{data_type=\"odds\"}"),
        1.0
    );
    assert_eq!(
        value_of(&text, "cache_size_bytes{cache_type=\"disk\"}"),
        value_of(&text, "freshcache_disk_bytes")
    );
    // moka counts its weights lazily; the one value put is at most in L1.
    let memory = value_of(&text, "cache_size_bytes{cache_type=\"memory\"}");
    assert!((0.0..=1024.0).contains(&memory), "{memory}");
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut f = l.split(' ').skip(2);
        let (name, kind) = (f.next().unwrap(), f.next().unwrap());
        if kind == "counter" && name.contains("bytes") {
            assert!(
                name.ends_with("_bytes_total"),
                "{name}: a byte counter ends in _bytes_total"
            );
        }
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
}

/// `promtool test rules`: every alert of config/freshcache-alerts.yml fires
/// on a bad window and clears on a clean one (config/freshcache-alerts.test.yml).
#[test]
fn promtool_unit_tests_fire_and_clear_every_alert() {
    let Some(promtool) = common::tool("promtool") else {
        return;
    };
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let rules = std::fs::read_to_string(format!("{config}/freshcache-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(format!("{config}/freshcache-alerts.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.matches(&format!("alertname: {alert}\n")).count() >= 3,
            "{alert}: the unit tests check it before, while and after it fires"
        );
        assert!(tests.contains(&format!(
            "alertname: {alert}\n        exp_alerts:\n          - "
        )));
    }
    for args in [
        vec!["check", "rules", "freshcache-alerts.yml"],
        vec!["test", "rules", "freshcache-alerts.test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(&args)
            .current_dir(config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
