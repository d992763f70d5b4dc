//! The CLI's output: a closed pipe ends it quietly, no stored value makes
//! a command panic, guard reasons, `get`/`rm --json`, `--help` text.

mod cli_support;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_support::{run, s, BIN};

/// Spawns `args` with stdout a pipe whose reader goes away after `keep`
/// bytes; the command must end quietly, without a panic.
fn into_closed_pipe(args: &[&str], keep: usize) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("FRESHCACHE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    if keep > 0 {
        let mut first = Vec::new();
        let _ = out.read_until(b'\n', &mut first);
        assert!(!first.is_empty(), "{args:?} printed nothing");
    }
    drop(out); // like `head -1` exiting
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    {
        // More output than a pipe buffers (64 KiB), so the writes must meet EPIPE.
        let cache = freshcache::Cache::open(dir.path()).unwrap();
        let keys: Vec<String> = (0..2000).map(|i| format!("news:wire:{i:06}")).collect();
        let items: Vec<(&str, &[u8], freshcache::Put)> = keys
            .iter()
            .map(|k| (k.as_str(), k.as_bytes(), freshcache::Put::default()))
            .collect();
        cache.put_many(&items).unwrap();
        let big = common::noise(3, 1 << 20);
        cache
            .put("llm:features:big:1", &big, freshcache::Put::default())
            .unwrap();
        cache.flush().unwrap();
    }
    let r = s(dir.path());
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["ls", "news:*"],
        &["get", "llm:features:big:1"],
        &["guard", "news:wire:*"],
        &["guard", "news:wire:*", "--json"],
        &["stats"],
        &["stats", "--prometheus"],
        &["demo"],
    ] {
        let mut a = vec!["--root", &r];
        a.extend_from_slice(args);
        for keep in [1, 0] {
            let (code, stderr) = into_closed_pipe(&a, keep);
            assert_eq!(code, Some(0), "{args:?} (keep {keep}): {stderr}");
            assert!(
                !stderr.contains("panicked") && !stderr.to_lowercase().contains("broken pipe"),
                "{args:?}: {stderr}"
            );
        }
    }
    // Exit codes survive a closed pipe: a refusal is still a refusal.
    let (code, stderr) = into_closed_pipe(&["--root", &r, "guard", "news:none:*"], 0);
    assert_eq!(code, Some(3), "{stderr}");
}

#[test]
fn absurd_ttls_are_refused_and_stored_far_expiries_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let r = s(&dir.path().join("root"));
    let o = run(
        &["--root", &r, "put", "odds:far:1", "-", "--ttl", "3000000d"],
        Some(b"1"),
        &[],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("100 years"), "{}", o.stderr);
    let o = run(&["--root", &r, "ls", "--json"], None, &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        !o.stdout.contains("odds:far:1"),
        "stored anyway: {}",
        o.stdout
    );

    // A class TTL far past the year 9999: refused by config validation
    // (exit 2), or stored; then every command that prints it must not panic.
    let cfg = dir.path().join("far.yml");
    std::fs::write(&cfg, "classes:\n  far: { prefix: 'far:', ttl: 3000000d }\n").unwrap();
    let c = s(&cfg);
    let o = run(
        &["--root", &r, "--config", &c, "put", "far:1", "-"],
        Some(b"1"),
        &[],
    );
    assert!(
        matches!(o.code, Some(0 | 2)),
        "exit {:?}: {}",
        o.code,
        o.stderr
    );
    if o.code == Some(0) {
        for args in [
            &["ls"][..],
            &["ls", "--json"],
            &["stat", "far:1"],
            &["stat", "far:1", "--json"],
            &["get", "far:1", "--json"],
            &["guard", "far:1"],
            &["guard", "far:1", "--json"],
            &["guard", "far:*", "--max-age", "1ms"],
            &["verify"],
        ] {
            let mut a = vec!["--root", r.as_str(), "--config", c.as_str()];
            a.extend_from_slice(args);
            let o = run(&a, None, &[]);
            assert!(
                matches!(o.code, Some(0 | 3)) && !o.stderr.contains("panicked"),
                "{args:?}: exit {:?}: {}",
                o.code,
                o.stderr
            );
        }
    }
}

#[test]
fn guard_names_reasons_as_the_json_does() {
    let dir = tempfile::tempdir().unwrap();
    let r = s(dir.path());
    assert_eq!(
        run(&["--root", &r, "put", "news:r:1", "-"], Some(b"x"), &[]).code,
        Some(0)
    );
    std::thread::sleep(Duration::from_millis(5));
    let o = run(
        &["--root", &r, "guard", "news:r:1", "--max-age", "1ms"],
        None,
        &[],
    );
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(
        o.stdout.contains("too_old") && !o.stdout.contains("tooold"),
        "{}",
        o.stdout
    );
    let o = run(
        &[
            "--root",
            &r,
            "guard",
            "news:r:1",
            "--max-age",
            "1ms",
            "--json",
        ],
        None,
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["refused"][0]["reason"], "too_old");
}

#[test]
fn get_and_rm_json() {
    let dir = tempfile::tempdir().unwrap();
    let r = s(dir.path());
    let bin = dir.path().join("v.bin");
    std::fs::write(&bin, [0xffu8, 0, 1]).unwrap();
    assert_eq!(
        run(&["--root", &r, "put", "odds:b:1", &s(&bin)], None, &[]).code,
        Some(0)
    );
    assert_eq!(
        run(
            &["--root", &r, "put", "odds:t:1", "-"],
            Some(b"{\"a\":1}"),
            &[]
        )
        .code,
        Some(0)
    );

    let o = run(&["--root", &r, "get", "odds:t:1", "--json"], None, &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["key"], "odds:t:1");
    assert_eq!(v["encoding"], "utf8");
    assert_eq!(v["value"], "{\"a\":1}");
    assert_eq!(v["class"], "odds");
    assert_eq!(v["freshness"], "fresh");
    assert_eq!(v["hash"], blake3::hash(b"{\"a\":1}").to_hex().as_str());

    let o = run(&["--root", &r, "get", "odds:b:1", "--json"], None, &[]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (v["encoding"].as_str(), v["value"].as_str()),
        (Some("base64"), Some("/wAB"))
    );

    let o = run(&["--root", &r, "rm", "odds:b:1", "--json"], None, &[]);
    assert_eq!(o.code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({ "key": "odds:b:1", "removed": true }));
    let o = run(&["--root", &r, "rm", "odds:b:1", "--json"], None, &[]);
    assert_eq!(o.code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["removed"], false);
}

#[test]
fn help_describes_every_argument() {
    for sub in [
        "put",
        "get",
        "stat",
        "rm",
        "ls",
        "invalidate",
        "stats",
        "guard",
        "evict",
        "gc",
        "verify",
        "run",
        "fetch",
        "demo",
        "recover",
        "feeds refresh",
    ] {
        let args: Vec<&str> = sub.split(' ').chain(["--help"]).collect();
        let o = run(&args, None, &[]);
        assert_eq!(o.code, Some(0), "{sub}: {}", o.stderr);
        // Each entry line of Arguments:/Options: has text after its name.
        for line in o.stdout.lines() {
            let t = line.trim_start();
            if line.starts_with("  ")
                && (t.starts_with('<') || t.starts_with('[') || t.starts_with('-'))
            {
                let after_name = t.split_once("  ").map(|(_, d)| d.trim());
                assert!(
                    after_name.is_some_and(|d| !d.is_empty()),
                    "{sub} --help: no description on {line:?}"
                );
            }
        }
    }
}

/// With Redis configured but not answering, the human `guard` output does
/// not say "all fresh": it names the unconfirmed signals; `stats` shows the
/// sync state and the refresh-ahead counters.
#[test]
fn guard_and_stats_say_when_entries_are_unconfirmed() {
    let dir = tempfile::tempdir().unwrap();
    let r = s(&dir.path().join("root"));
    // Bound and never answered: connects queue, every Redis call times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/0", silent.local_addr().unwrap());
    let env = [("FRESHCACHE_REDIS_URL", url.as_str())];
    let o = run(&["--root", &r, "put", "odds:u:1", "-"], Some(b"v"), &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let o = run(&["--root", &r, "guard", "odds:u:1"], None, &env);
    assert_eq!(o.code, Some(0), "available: accepted\n{}", o.stderr);
    assert!(
        o.stdout.contains("1 UNCONFIRMED") && o.stdout.contains("odds:u:1"),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("all fresh"), "{}", o.stdout);
    let o = run(&["--root", &r, "stats"], None, &env);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stdout.contains("redis sync       UNCONFIRMED"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("refresh ahead    0 refreshed"),
        "{}",
        o.stdout
    );
    // Without Redis the same entry is simply fresh.
    let o = run(&["--root", &r, "guard", "odds:u:1"], None, &[]);
    assert!(o.stdout.contains("all fresh"), "{}", o.stdout);
}
