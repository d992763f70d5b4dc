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
