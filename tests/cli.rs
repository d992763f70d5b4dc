//! The `freshcache` binary: commands, JSON output, exit codes.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_freshcache");

fn fc(root: &std::path::Path, args: &[&str]) -> Output {
    fc_stdin(root, args, None)
}

fn fc_stdin(root: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("FRESHCACHE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn put_get_stat_ls_rm_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let o = fc_stdin(
        root,
        &["put", "odds:g1:1700000000", "--etag", "\"abc\""],
        Some(b"{\"home\":-110}"),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let file = dir.path().join("value.bin");
    std::fs::write(&file, b"feature bytes").unwrap();
    let o = fc(
        root,
        &[
            "put",
            "llm:features:c1:2026-11-21",
            file.to_str().unwrap(),
            "--ttl",
            "90s",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let o = fc(root, &["get", "odds:g1:1700000000"]);
    assert_eq!(
        (code(&o), o.stdout.as_slice()),
        (0, &b"{\"home\":-110}"[..])
    );
    let out = dir.path().join("out.bin");
    let o = fc(
        root,
        &[
            "get",
            "llm:features:c1:2026-11-21",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0);
    assert_eq!(std::fs::read(&out).unwrap(), b"feature bytes");

    let o = fc(root, &["stat", "odds:g1:1700000000", "--json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for field in [
        "key",
        "hash",
        "class",
        "size",
        "stored_size",
        "created_at",
        "expires_at",
        "etag",
        "last_modified",
        "hits",
        "last_access",
        "freshness",
    ] {
        assert!(v.get(field).is_some(), "stat --json lacks {field}: {v}");
    }
    assert_eq!(
        v["hash"],
        blake3::hash(b"{\"home\":-110}").to_hex().as_str()
    );
    assert_eq!(v["class"], "odds");
    assert_eq!(v["etag"], "\"abc\"");
    assert_eq!(v["freshness"], "fresh");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));

    let o = fc(root, &["ls", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 2);
    let o = fc(root, &["ls", "odds:*"]);
    assert!(stdout(&o).contains("odds:g1:1700000000") && !stdout(&o).contains("llm:"));

    assert_eq!(code(&fc(root, &["rm", "odds:g1:1700000000"])), 0);
    assert_eq!(code(&fc(root, &["rm", "odds:g1:1700000000"])), 1);
    assert_eq!(code(&fc(root, &["get", "odds:g1:1700000000"])), 1);
}

#[test]
fn exit_codes_for_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let o = fc_stdin(root, &["put", "a::b"], Some(b"x"));
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("empty segment"), "{}", stderr(&o));
    assert_eq!(code(&fc(root, &["get", "a:*"])), 2);
    assert_eq!(code(&fc(root, &["invalidate", "a::*"])), 2);
    assert_eq!(code(&fc(root, &["put", "k:1", "--ttl", "-5s"])), 2);
    assert_eq!(code(&fc(root, &["frobnicate"])), 2);
    let o = fc_stdin(root, &["put", "k:1", "--class", "nope"], Some(b"x"));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn a_bad_config_names_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yml");
    std::fs::write(&cfg, "classes:\n  odds: { prefix: 'odds:', ttl: -60s }\n").unwrap();
    let o = fc(dir.path(), &["--config", cfg.to_str().unwrap(), "stats"]);
    assert_eq!(code(&o), 2);
    let e = stderr(&o);
    assert!(
        e.contains("bad.yml") && e.contains("classes.odds.ttl") && e.contains("negative"),
        "{e}"
    );
}

#[test]
fn invalidate_and_stats_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for k in ["news:reuters:1", "news:reuters:2", "news:ap:1"] {
        assert_eq!(code(&fc_stdin(root, &["put", k], Some(k.as_bytes()))), 0);
    }
    let o = fc(root, &["invalidate", "news:reuters:*", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["removed"], 2);
    fc(root, &["get", "news:ap:1"]);
    fc(root, &["get", "news:reuters:1"]);
    let o = fc(root, &["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["entries"], 1);
    assert_eq!(s["hits"], 1);
    assert_eq!(s["misses"], 1);
    assert_eq!(s["by_class"]["news"]["misses"], 1);
}

#[test]
fn guard_exits_3_with_every_stale_signal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert_eq!(
        code(&fc_stdin(
            root,
            &["put", "odds:g1:1", "--ttl", "1ms"],
            Some(b"1")
        )),
        0
    );
    assert_eq!(code(&fc_stdin(root, &["put", "news:r:1"], Some(b"2"))), 0);
    std::thread::sleep(std::time::Duration::from_millis(5)); // the CLI uses the wall clock
    let o = fc(root, &["guard", "news:r:1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = fc(
        root,
        &["guard", "news:r:1", "odds:g1:1", "odds:g9:*", "--json"],
    );
    assert_eq!(code(&o), 3);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let refused = v["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["reason"], "expired");
    assert_eq!(refused[1]["reason"], "missing");
    let o = fc(root, &["guard", "news:r:1", "--max-age", "1ms"]);
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    assert!(stdout(&o).contains("REFUSED"));
}

#[test]
fn verify_exits_4_on_corruption_and_repair_cleans() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let big = common::noise(5, 200_000);
    assert_eq!(
        code(&fc_stdin(root, &["put", "llm:features:c1:d"], Some(&big))),
        0
    );
    assert_eq!(code(&fc(root, &["verify"])), 0);
    let f = &common::blob_files(root)[0];
    let mut b = std::fs::read(f).unwrap();
    b[1000] ^= 4;
    std::fs::write(f, b).unwrap();
    let o = fc(root, &["verify", "--json"]);
    assert_eq!(code(&o), 4);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["problems"][0]["kind"], "corrupt_blob");
    // Exit 4 even though the repair cleaned: the data under the key is lost,
    // and the output names what was removed.
    let o = fc(root, &["verify", "--repair"]);
    assert_eq!(code(&o), 4, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("removed llm:features:c1:d"),
        "{}",
        stdout(&o)
    );
    assert_eq!(code(&fc(root, &["verify"])), 0);
    assert_eq!(code(&fc(root, &["get", "llm:features:c1:d"])), 1);
}

#[test]
fn evict_and_gc_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..20 {
        let v = common::noise(i, 100_000);
        assert_eq!(
            code(&fc_stdin(root, &["put", &format!("k:{i}")], Some(&v))),
            0
        );
    }
    let o = fc(root, &["evict", "--max-size", "1MiB", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        r["bytes_after"].as_u64().unwrap() <= r["low_watermark_bytes"].as_u64().unwrap(),
        "{r}"
    );
    assert!(r["entries_removed"].as_u64().unwrap() >= 10);
    let o = fc(root, &["gc", "--grace", "0s", "--json"]);
    assert_eq!(code(&o), 0);
    let g: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(g["orphan_files_removed"], 0);
}

#[test]
fn demo_runs_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .arg("demo")
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "deduplicated: true",
        "miss (expired)",
        "REFUSED",
        "invalidate news:reuters:*",
        "removed",
        "hit rate",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
}
