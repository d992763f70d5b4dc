//! Range checks on instants (issue 15, item 1): an absurd TTL is refused at
//! the boundary (exit 2, nothing stored), and no stored instant, however
//! absurd, makes `ls`, `stat`, `get`, `guard` or `stats` panic.

#[path = "cli_support/mod.rs"]
mod support;

use std::time::Duration;

use freshcache::{Cache, Error, Put};
use support::{run, s};

#[test]
fn put_with_an_absurd_ttl_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    for ttl in [
        Duration::from_secs(3_000_000 * 86_400),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        let opts = Put {
            ttl: Some(ttl),
            ..Put::default()
        };
        let err = cache.put("odds:far:1", b"x", opts.clone()).unwrap_err();
        assert!(matches!(err, Error::InvalidTtl { .. }), "{err}");
        assert_eq!(err.exit_code(), 2);
        assert!(cache.get_entry("odds:far:1").unwrap().is_none());
        assert!(!cache.refresh("odds:far:1", None, &opts).unwrap_or(false));
    }
    // A TTL of exactly 100 years is accepted and its expiry prints.
    let stored = cache
        .put(
            "odds:far:2",
            b"x",
            Put {
                ttl: Some(Duration::from_secs(36_525 * 86_400)),
                ..Put::default()
            },
        )
        .unwrap();
    assert!(stored.expires_at > stored.created_at);
}

/// Rewrites the stored instants of `key` in `root`'s index behind the cache's back.
fn set_instants(root: &std::path::Path, key: &str, created: i64, expires: i64, access: i64) {
    let conn = rusqlite::Connection::open(root.join("index.sqlite")).unwrap();
    let n = conn
        .execute(
            "UPDATE entries SET created_at = ?1, expires_at = ?2, last_access = ?3 WHERE key = ?4",
            rusqlite::params![created, expires, access, key],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn no_command_panics_on_absurd_stored_instants() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("c");
    {
        let cache = Cache::open(&root).unwrap();
        for k in ["odds:g:max", "odds:g:neg", "odds:g:min", "odds:g:mixed"] {
            cache.put(k, b"{\"v\":1}", Put::default()).unwrap();
        }
    }
    set_instants(&root, "odds:g:max", i64::MAX, i64::MAX, i64::MAX);
    set_instants(&root, "odds:g:neg", -1, -86_400_000, -5);
    set_instants(&root, "odds:g:min", i64::MIN, i64::MIN, i64::MIN);
    set_instants(&root, "odds:g:mixed", i64::MIN, i64::MAX, 0);
    let r = s(&root);
    let cmds: Vec<Vec<&str>> = vec![
        vec!["ls", "--json"],
        vec!["ls"],
        vec!["stats", "--json"],
        vec!["stats", "--prometheus"],
        vec!["guard", "odds:g:*"],
        vec![
            "guard",
            "odds:g:max",
            "odds:g:neg",
            "odds:g:min",
            "odds:g:mixed",
            "--max-age",
            "1h",
            "--json",
        ],
        vec!["evict", "--max-size", "1GiB", "--json"],
        vec!["verify", "--json"],
    ];
    let mut all = cmds;
    for k in ["odds:g:max", "odds:g:neg", "odds:g:min", "odds:g:mixed"] {
        all.push(vec!["stat", k]);
        all.push(vec!["stat", k, "--json"]);
        all.push(vec!["get", k, "--allow-stale", "--json"]);
        all.push(vec!["get", k]);
    }
    for args in all {
        let mut full = vec!["--root", r.as_str()];
        full.extend(&args);
        let out = run(&full, None, &[]);
        assert!(
            matches!(out.code, Some(0..=4)),
            "{args:?}: exit {:?}\n{}",
            out.code,
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
    }
    // The library's readers too.
    let cache = Cache::open(&root).unwrap();
    for k in ["odds:g:max", "odds:g:neg", "odds:g:min", "odds:g:mixed"] {
        let e = cache.get_entry(k).unwrap().unwrap();
        let _ = format!("{:?}", e.meta);
        serde_json::to_string(&e.meta).unwrap();
    }
    let err = cache.guard().require(&["odds:g:*"]).unwrap_err();
    assert!(matches!(err, Error::Stale(_)), "{err}");
    let ls = run(&["--root", &r, "ls", "--json"], None, &[]);
    assert!(
        ls.stdout.contains("9999-12-31T23:59:59.999Z"),
        "{}",
        ls.stdout
    );
    assert!(
        ls.stdout.contains("1970-01-01T00:00:00.000Z"),
        "{}",
        ls.stdout
    );
}

#[test]
fn cli_put_with_an_absurd_ttl_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let r = s(&dir.path().join("c"));
    let out = run(
        &["--root", &r, "put", "odds:far:1", "-", "--ttl", "3000000d"],
        Some(b"x"),
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let out = run(&["--root", &r, "stat", "odds:far:1"], None, &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
}
