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
        value_of(&text, "freshcache_misses_total{class=\"odds\"}"),
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
