//! Unit tests of the tier's construction and config (no server needed).

use super::*;

fn config(url: &str) -> Config {
    let mut c = Config::default();
    c.redis.url = Some(url.into());
    c
}

#[test]
fn builds_without_connecting_and_accepts_tls_urls() {
    for url in [
        "redis://127.0.0.1:1",
        "rediss://cache.example:6380/2",
        "redis://:secret@127.0.0.1:1",
    ] {
        let tier = RedisTier::from_config(&config(url)).unwrap().unwrap();
        assert!(!tier.is_up(), "{url}: not up before Redis has answered");
    }
    assert!(RedisTier::from_config(&Config::default())
        .unwrap()
        .is_none());
}

#[test]
fn bad_urls_are_config_errors_without_the_password() {
    let err = RedisTier::from_config(&config("redis://:hunter2@[::1")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("redis.url") && !msg.contains("hunter2"),
        "{msg}"
    );
    let err = Config::from_layers(
        Some(("f.yml".into(), "redis: { url: 'http://x' }")),
        std::iter::empty(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("redis.url"), "{err}");
    let err = Config::from_layers(
        Some((
            "f.yml".into(),
            "redis: { url: 'redis://x', key_prefix: 'a{b}' }",
        )),
        std::iter::empty(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("redis.key_prefix"), "{err}");
}

#[test]
fn env_sets_url_and_password_and_debug_hides_them() {
    let env = [
        ("FRESHCACHE_REDIS_URL", "redis://u:pw1@127.0.0.1:6379"),
        ("FRESHCACHE_REDIS_PASSWORD", "pw2"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()));
    let c = Config::from_layers(None, env).unwrap();
    assert_eq!(c.redis.password.as_deref(), Some("pw2"));
    let shown = format!("{:?}", c.redis);
    assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
    assert!(shown.contains("redis://u:***@127.0.0.1:6379"), "{shown}");
}

#[test]
fn consistency_log_len_and_tls_ca_are_configurable() {
    use crate::base::config::Consistency;
    let env = [
        ("FRESHCACHE_REDIS_CONSISTENCY", "strict"),
        ("FRESHCACHE_REDIS_LOG_LEN", "5"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()));
    let c = Config::from_layers(None, env).unwrap();
    assert_eq!(c.redis.consistency, Consistency::Strict);
    assert_eq!(c.redis.log_len, 5);
    assert_eq!(Config::default().redis.consistency, Consistency::Available);
    for bad in ["redis: { log_len: 0 }", "redis: { consistency: eventual }"] {
        let err = Config::from_layers(Some(("f.yml".into(), bad)), std::iter::empty()).unwrap_err();
        assert!(err.to_string().contains("redis."), "{bad}: {err}");
    }
    let mut c = config("rediss://127.0.0.1:1");
    c.redis.tls_ca_file = Some("/nonexistent/ca.pem".into());
    let err = RedisTier::from_config(&c).unwrap_err();
    assert!(err.to_string().contains("redis.tls_ca_file"), "{err}");
}
