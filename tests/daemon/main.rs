//! `freshcache run` as a process against a local HTTP origin: conditional
//! feed refreshes, eviction past the cap, hot reload, SIGTERM, and
//! promtool's verdict on the scrape. Waits poll with generous deadlines;
//! nothing asserts on durations.

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod limits;
#[path = "../common/redis_server.rs"]
mod redis_server;
#[allow(unused_imports)]
use common::{open_with, tool};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::{cli, eventually, feed, read, value, write_config, Daemon, Origin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_feeds_with_conditional_gets_and_evicts_past_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, oaddr) = Origin::start().await;
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    let feeds = format!("feeds:\n{}", feed("wire", oaddr, "300ms", ""));
    write_config(&cfg, &root, "  max_size: 4MiB\n", &feeds);
    let d = Daemon::start(&cfg, &dir.path().join("daemon.log"));

    eventually("one 200 then 304s", &d, || async {
        origin.count("wire", 200) == 1 && origin.count("wire", 304) >= 3
    })
    .await;
    let m = d.scrape().await;
    assert!(
        value(
            &m,
            "freshcache_feed_refreshes_total{feed=\"wire\",outcome=\"200\"}"
        ) == Some(1.0),
        "{m}"
    );
    assert!(
        value(
            &m,
            "freshcache_feed_refreshes_total{feed=\"wire\",outcome=\"304\"}"
        ) >= Some(3.0)
    );
    assert!(value(&m, "freshcache_upstream_requests_total{outcome=\"304\"}") >= Some(3.0));
    assert!(value(&m, "freshcache_scheduler_lag_seconds{job=\"feed\"}").is_some());
    assert_eq!(d.get("/healthz").await.trim(), "ok");
    // The 200 was parsed: each article stored as news:<feed>:<id>.
    for key in ["news:wire:wire-1", "news:wire:wire-2"] {
        let out = cli(&cfg, &["get", key]);
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(read(&d.log).contains("articles=2"), "{}", read(&d.log));
    let stats: serde_json::Value = serde_json::from_str(&d.get("/v1/stats").await).unwrap();
    assert!(stats["entries"].as_u64() >= Some(1), "{stats}");

    // The CLI writes on the same root while the daemon runs: past the cap.
    let blob = dir.path().join("blob");
    for i in 0..6 {
        std::fs::write(&blob, common::noise(i, 1 << 20)).unwrap();
        let out = cli(
            &cfg,
            &[
                "put",
                &format!("llm:features:c{i}:2026-11-21"),
                blob.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Passes may start while puts still arrive; the daemon evicts until under the cap.
    let high = (4 << 20) as f64 * 0.95;
    eventually("watermark eviction under the cap", &d, || async {
        let m = d.scrape().await;
        value(
            &m,
            "freshcache_eviction_passes_total{trigger=\"watermark\"}",
        ) >= Some(1.0)
            && value(&m, "freshcache_evicted_bytes_total") > Some(0.0)
            && value(&m, "freshcache_disk_bytes") <= Some(high)
    })
    .await;
    assert!(read(&d.log).contains("eviction pass"), "{}", read(&d.log));
    assert!(read(&d.log).contains("feed refresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_a_changed_config_and_rejects_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, oaddr) = Origin::start().await;
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    let one = format!("feeds:\n{}", feed("wire", oaddr, "300ms", ""));
    write_config(&cfg, &root, "", &one);
    let d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    eventually("the first refresh", &d, || async {
        origin.count("wire", 200) == 1
    })
    .await;

    // A new TTL class and a new feed that uses it.
    let two = format!(
        "classes:\n  breaking: {{ prefix: \"news:flash:\", ttl: 7m }}\n  odds: {{ prefix: \"odds:\", ttl: 5s }}\nfeeds:\n{}{}",
        feed("wire", oaddr, "300ms", ""),
        feed("flash", oaddr, "300ms", ", class: breaking")
    );
    write_config(&cfg, &root, "", &two);
    eventually("the new feed", &d, || async {
        origin.count("flash", 304) >= 1
    })
    .await;
    let config: serde_json::Value = serde_json::from_str(&d.get("/v1/config").await).unwrap();
    assert_eq!(config["classes"]["odds"]["ttl"], "5s");
    assert_eq!(config["classes"]["breaking"]["ttl"], "7m");
    let m = d.scrape().await;
    assert_eq!(
        value(&m, "freshcache_config_reloads_total"),
        Some(1.0),
        "{m}"
    );
    // The new feed's articles carry the new class and its TTL.
    let out = cli(&cfg, &["stat", "news:flash:flash-1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(meta["class"], "breaking", "{meta}");
    let time = |f: &str| humantime::parse_rfc3339(meta[f].as_str().unwrap()).unwrap();
    let ttl = time("expires_at")
        .duration_since(time("created_at"))
        .unwrap();
    assert_eq!(ttl, Duration::from_secs(7 * 60), "{meta}");

    // A broken config: logged with its field, counted, the old one stays.
    let broken = two.replace("ttl: 5s", "ttl: soon");
    write_config(&cfg, &root, "", &broken);
    eventually("the rejection", &d, || async {
        value(&d.scrape().await, "freshcache_config_reload_errors_total") >= Some(1.0)
    })
    .await;
    let log = read(&d.log);
    assert!(
        log.contains("config change rejected") && log.contains("classes.odds.ttl"),
        "{log}"
    );
    let config: serde_json::Value = serde_json::from_str(&d.get("/v1/config").await).unwrap();
    assert_eq!(config["classes"]["odds"]["ttl"], "5s");
    // A truncating save: the empty file is rejected like any invalid one.
    std::fs::write(&cfg, "").unwrap();
    eventually("the empty file's rejection", &d, || async {
        value(&d.scrape().await, "freshcache_config_reload_errors_total") >= Some(2.0)
    })
    .await;
    assert!(read(&d.log).contains("empty"), "{}", read(&d.log));
    let config: serde_json::Value = serde_json::from_str(&d.get("/v1/config").await).unwrap();
    assert_eq!(
        config["feeds"].as_array().map(Vec::len),
        Some(2),
        "{config}"
    );
    let before = origin.count("flash", 304);
    eventually("feeds still refreshing", &d, || async {
        origin.count("flash", 304) > before
    })
    .await;

    // Removing a feed stops it.
    write_config(&cfg, &root, "", &one);
    eventually("the second reload", &d, || async {
        value(&d.scrape().await, "freshcache_config_reloads_total") >= Some(2.0)
    })
    .await;
    let stopped = origin.count("flash", 304) + origin.count("flash", 200);
    let wire = origin.count("wire", 304);
    eventually("more wire refreshes", &d, || async {
        origin.count("wire", 304) >= wire + 3
    })
    .await;
    // At most one refresh that was already in flight at the reload.
    assert!(origin.count("flash", 304) + origin.count("flash", 200) <= stopped + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, oaddr) = Origin::start().await;
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    let extra = format!(
        "  warm: [{{ key: \"teams:nfl\" }}, {{ key: \"schedules:wk1\", url: \"http://{oaddr}/sched.xml\" }}]\nfeeds:\n{}",
        feed("wire", oaddr, "200ms", "")
    );
    write_config(&cfg, &root, "", &extra);
    let out = cli(&cfg, &["put", "teams:nfl", "-"]);
    assert!(out.status.success());
    let mut d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    eventually("refreshes and warm-up", &d, || async {
        let m = d.scrape().await;
        origin.count("wire", 304) >= 2
            && value(&m, "freshcache_warm_total{outcome=\"loaded\"}") == Some(1.0)
            && value(&m, "freshcache_warm_total{outcome=\"200\"}") == Some(1.0)
    })
    .await;
    // The warm-up read of teams:nfl is a batched access record (access_flush 1h).
    let status = d.terminate();
    assert!(status.success(), "{status:?}\n{}", read(&d.log));
    assert!(read(&d.log).contains("daemon stopped"));

    let stats = cli(&cfg, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(
        stats["hits"].as_u64() >= Some(1),
        "access records flushed: {stats}"
    );
    // Stored, whether or not still fresh: feeds:wire lives one feed period
    // (200 ms), which a loaded machine can outlast before this runs.
    for key in ["feeds:wire", "schedules:wk1", "teams:nfl"] {
        let out = cli(&cfg, &["get", "--allow-stale", key]);
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let d2 = Daemon::start(&cfg, &dir.path().join("daemon2.log"));
    let s: serde_json::Value = serde_json::from_str(&d2.get("/v1/stats").await).unwrap();
    assert_eq!(s["entries"], stats["entries"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_a_stuck_fetch_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, oaddr) = Origin::start().await;
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    write_config(
        &cfg,
        &root,
        "",
        &format!("feeds:\n{}", feed("slow", oaddr, "1s", "")),
    );
    let mut d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    eventually("the stuck request", &d, || async {
        origin.count("slow", 0) == 1
    })
    .await;
    let status = d.terminate(); // shutdown_grace is 3s; terminate() waits up to 30s
    assert!(status.success(), "{status:?}\n{}", read(&d.log));
    let log = read(&d.log);
    assert!(
        log.contains("cancelling in-flight work") && log.contains("daemon stopped"),
        "{log}"
    );
}

/// promtool (Debian package `prometheus`) accepts the daemon's scrape, the
/// example alert rules and the example scrape config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_scrape_and_the_alert_rules() {
    let Some(promtool) = common::tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (origin, oaddr) = Origin::start().await;
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    write_config(
        &cfg,
        &root,
        "",
        &format!("feeds:\n{}", feed("wire", oaddr, "300ms", "")),
    );
    let d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    eventually("a refresh", &d, || async { origin.count("wire", 304) >= 1 }).await;
    let scrape = dir.path().join("scrape.txt");
    std::fs::write(&scrape, d.scrape().await).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&scrape).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for args in [
        ["check", "rules", "config/freshcache-alerts.yml"],
        ["check", "config", "config/prometheus.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(manifest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The daemon with Redis configured: its scrape shows the Redis tier up and
/// the feed's articles written through to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_configured_the_scrape_shows_the_redis_tier() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (origin, oaddr) = Origin::start().await;
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    let extra = format!(
        // A 5 s call deadline (default 250 ms): a slow loopback reply on a
        // loaded machine is not an outage.
        "redis:\n  url: \"{}\"\n  timeout: 5s\nfeeds:\n{}",
        server.url(),
        feed("wire", oaddr, "300ms", "")
    );
    write_config(&cfg, &root, "", &extra);
    let mut d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    eventually("a feed refresh", &d, || async {
        origin.count("wire", 200) >= 1
    })
    .await;
    eventually("write-through in the scrape", &d, || async {
        value(&d.scrape().await, "freshcache_redis_writes_total").unwrap_or(0.0) >= 1.0
    })
    .await;
    let scrape = d.scrape().await;
    assert_eq!(value(&scrape, "freshcache_redis_up"), Some(1.0), "{scrape}");
    assert!(d.terminate().success());
}
