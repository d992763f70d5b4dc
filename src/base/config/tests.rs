use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn embedded_default_has_the_seed_ttls() {
    let c = Config::default();
    let ttl = |n: &str| c.classes[n].ttl.0.as_secs();
    assert_eq!(ttl("teams"), 7 * 86_400);
    assert_eq!(ttl("odds"), 60);
    assert_eq!(ttl("player_props"), 300);
    assert_eq!(ttl("injuries"), 900);
    assert_eq!(ttl("llm_features"), 86_400);
    assert_eq!(ttl("news"), 3600);
    assert_eq!(c.cache.max_size.0, 10 << 30);
    assert_eq!(c.cleanup.interval, "0 2 * * *");
    assert_eq!(
        c.fetch.rate_limit,
        Rate {
            count: 2,
            per: Duration::from_secs(1),
            calendar: None,
            tz: TzOffset::Fixed(0),
        }
    );
}

#[test]
fn env_overrides_nested_fields_with_underscores() {
    let c = Config::from_layers(
        None,
        env(&[
            ("FRESHCACHE_CACHE_MAX_SIZE", "5GiB"),
            ("FRESHCACHE_CACHE_ROOT", "/tmp/x"),
            ("FRESHCACHE_CLASSES_LLM_FEATURES_TTL", "6h"),
            ("FRESHCACHE_MONITORING_TTL_VIOLATION_THRESHOLD", "0.05"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.cache.max_size.0, 5 << 30);
    assert_eq!(c.cache.root, PathBuf::from("/tmp/x"));
    assert_eq!(
        c.classes["llm_features"].ttl.0,
        Duration::from_secs(6 * 3600)
    );
    assert_eq!(c.monitoring.ttl_violation_threshold, 0.05);
}

#[test]
fn file_merges_over_default() {
    let yaml =
        "classes:\n  odds: { prefix: 'odds:', ttl: 30s }\n  custom: { prefix: 'x:', ttl: 2m }\n";
    let c = Config::from_layers(Some(("f.yml".into(), yaml)), env(&[])).unwrap();
    assert_eq!(c.classes["odds"].ttl.0.as_secs(), 30);
    assert_eq!(c.classes["custom"].ttl.0.as_secs(), 120);
    assert_eq!(c.classes["teams"].ttl.0.as_secs(), 7 * 86_400);
}

#[test]
fn bad_config_names_file_and_field() {
    let cases = [
        (
            "classes:\n  odds: { prefix: 'odds:', ttl: -5s }\n",
            "classes.odds.ttl",
            "negative",
        ),
        (
            "cache:\n  max_size: lots\n",
            "cache.max_size",
            "invalid size",
        ),
        ("cache:\n  bogus: 1\n", "cache", "unknown field"),
        (
            "classes:\n  odds: { prefix: 'odds:', ttl: 5s, color: red }\n",
            "classes.odds",
            "unknown field",
        ),
        (
            "feeds:\n  - { name: r, url: 'http://x', every: 5m, class: nope }\n",
            "feeds[0].class",
            "unknown class",
        ),
        (
            "monitoring:\n  ttl_violation_threshold: 3\n",
            "monitoring.ttl_violation_threshold",
            "ratio",
        ),
        ("cache: [\n", "line", ""),
        (
            "cleanup:\n  interval: 'every night'\n",
            "cleanup.interval",
            "cron",
        ),
        (
            "feeds:\n  - { name: r, url: 'http://x', every: 5m }\n  - { name: r, url: 'http://y', every: 5m }\n",
            "feeds[1].name",
            "duplicate",
        ),
        ("daemon:\n  listen: nowhere\n", "daemon.listen", ""),
        (
            "daemon:\n  warm: [{ key: 'a::b' }]\n",
            "daemon.warm[0].key",
            "",
        ),
        (
            "classes:\n  odds: { prefix: 'odds:', ttl: 3000000d }\n",
            "classes.odds.ttl",
            "100 years",
        ),
        (
            "classes:\n  odds: { prefix: 'odds:', ttl: 36526d }\n",
            "classes.odds.ttl",
            "100 years",
        ),
        ("cache:\n  default_ttl: 40000d\n", "cache.default_ttl", "100 years"),
    ];
    for (yaml, field, reason) in cases {
        let err = Config::from_layers(Some(("bad.yml".into(), yaml)), env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.yml"), "{msg}");
        assert!(msg.contains(field), "{yaml}: {msg}");
        assert!(msg.contains(reason), "{yaml}: {msg}");
    }
}

#[test]
fn bad_env_override_names_the_variable() {
    let err = Config::from_layers(None, env(&[("FRESHCACHE_CACHE_MAX_SIZE", "huge")])).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("FRESHCACHE_CACHE_MAX_SIZE") && msg.contains("cache.max_size"),
        "{msg}"
    );
}

#[test]
fn parses_units() {
    assert_eq!(Size::parse("64KiB").unwrap().0, 65_536);
    assert_eq!(Size::parse("10GiB").unwrap().0, 10 << 30);
    assert_eq!(Size::parse("1.5KB").unwrap().0, 1_500);
    assert!(Size::parse("10 parsecs").is_err());
    assert_eq!(Dur::parse("90s").unwrap().0.as_secs(), 90);
    assert_eq!(Dur::parse("7d").unwrap().0.as_secs(), 7 * 86_400);
    assert!(Dur::parse("-1m").is_err());
    assert_eq!(Rate::parse("10000/month").unwrap().count, 10_000);
}

#[test]
fn adaptive_ttls_windows_and_quota_tz_parse_validate_and_round_trip() {
    let yaml = "classes:\n  odds: { prefix: 'odds:', ttl: { adaptive: { min: 30s, max: 10m } } }\n  \
                players: { prefix: 'players:', ttl: 24h, windows: [{ from: 2026-03-11, to: '2026-03-20T12:00:00Z', ttl: 1h }] }\n\
                fetch: { quota: 10000/month, quota_tz: '-05:00' }\n";
    let c = Config::from_layers(Some(("f.yml".into(), yaml)), env(&[])).unwrap();
    let odds = &c.classes["odds"];
    assert_eq!(odds.ttl.0, Duration::from_secs(30), "base defaults to min");
    assert_eq!(
        odds.adaptive,
        Some(Adaptive {
            min: Dur(Duration::from_secs(30)),
            max: Dur(Duration::from_secs(600))
        })
    );
    assert_eq!(c.classes["players"].windows.len(), 1);
    assert_eq!(c.fetch.quota.tz, TzOffset::Fixed(-300));
    assert_eq!(c.fetch.quota.calendar, Some(Period::Month));
    // What /v1/config prints loads back to the same config.
    let printed = serde_norway::to_string(&c).unwrap();
    let again = Config::from_layers(Some(("printed".into(), &printed)), env(&[])).unwrap();
    assert_eq!(again, c);
    // An environment override of an adaptive class's ttl makes it fixed.
    let c = Config::from_layers(
        Some(("f.yml".into(), yaml)),
        env(&[("FRESHCACHE_CLASSES_ODDS_TTL", "45s")]),
    )
    .unwrap();
    assert_eq!(c.classes["odds"].adaptive, None);
    assert_eq!(c.classes["odds"].ttl.0, Duration::from_secs(45));

    let bad = |yaml: &str| {
        Config::from_layers(Some(("f.yml".into(), yaml)), env(&[]))
            .unwrap_err()
            .to_string()
    };
    let e =
        bad("classes:\n  odds: { prefix: 'odds:', ttl: { adaptive: { min: 10m, max: 30s } } }\n");
    assert!(e.contains("classes.odds.ttl.adaptive"), "{e}");
    let e = bad("classes:\n  odds: { prefix: 'odds:', ttl: { adaptiv: { min: 1s, max: 2s } } }\n");
    assert!(e.contains("classes.odds") && e.contains("adaptive"), "{e}");
    let e = bad("daemon: { refresh_ahead: { fraction: 1.5 } }\n");
    assert!(e.contains("daemon.refresh_ahead.fraction"), "{e}");
    let e = bad("fetch: { quota_tz: Mars/Olympus }\n");
    assert!(
        e.contains("fetch.quota_tz") && e.contains("IANA zone"),
        "{e}"
    );
}

#[test]
fn empty_config_file_is_refused_not_all_defaults() {
    let dir = tempfile::tempdir().unwrap();
    for text in ["", "\n  \n", "# all commented out\n# cache: {}\n"] {
        let path = dir.path().join("runtime.yml");
        std::fs::write(&path, text).unwrap();
        let err = Config::load(&path).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.exit_code(), 2, "{msg}");
        assert!(
            msg.contains("runtime.yml") && msg.contains("empty"),
            "{msg}"
        );
    }
    let path = dir.path().join("ok.yml");
    std::fs::write(&path, "cache: { max_size: 1GiB }\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().cache.max_size.0, 1 << 30);
    let c = Config::from_layers(
        Some((
            "x.yml".into(),
            "classes: { odds: { prefix: 'odds:', ttl: 36525d } }",
        )),
        env(&[]),
    )
    .unwrap();
    assert_eq!(c.classes["odds"].ttl.0, crate::base::policy::MAX_TTL);
}

#[test]
fn shown_redis_section_keeps_every_non_secret_field() {
    let yaml = "redis: { url: 'rediss://127.0.0.1:6380/0', consistency: strict, log_len: 5, \
                tls_ca_file: /etc/ca.pem, key_prefix: 'fc2:' }\n";
    let c = Config::from_layers(Some(("f.yml".into(), yaml)), env(&[])).unwrap();
    assert_eq!(c.redis.consistency, Consistency::Strict);
    // What /v1/config prints loads back to the same config: nothing but
    // secrets is dropped on the way out.
    let printed = serde_norway::to_string(&c).unwrap();
    assert!(printed.contains("consistency: strict"), "{printed}");
    let again = Config::from_layers(Some(("printed".into(), &printed)), env(&[])).unwrap();
    assert_eq!(again, c);
}
