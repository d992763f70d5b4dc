//! The CLI's contract with scripts: every subcommand's failure modes exit
//! with the code README.md's exit-code table gives them, output into a
//! closed pipe ends quietly, and no stored value makes a command panic.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_freshcache");

/// The rows of README.md's "### Exit codes" table: code → meaning.
fn exit_table() -> BTreeMap<i32, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### Exit codes")
        .nth(1)
        .expect("README.md has an `### Exit codes` section");
    let mut table = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if let (Some(code), Some(meaning)) = (cells.first(), cells.get(1)) {
            if let Ok(code) = code.parse::<i32>() {
                table.insert(code, meaning.to_string());
            }
        }
    }
    assert!(table.len() >= 7, "exit-code table too short: {table:?}");
    table
}

/// The code whose meaning starts with `meaning` (exactly one row must).
fn code_for(table: &BTreeMap<i32, String>, meaning: &str) -> i32 {
    let rows: Vec<i32> = table
        .iter()
        .filter(|(_, m)| m.starts_with(meaning))
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "README exit-code table: one row for {meaning:?}: {table:?}"
    );
    rows[0]
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args`, an optional stdin, extra env; killed after 60 s.
fn run(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("FRESHCACHE_CONFIG")
        .env_remove("FRESHCACHE_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn freshcache");
    let mut input = child.stdin.take().unwrap();
    if let Some(b) = stdin {
        let _ = input.write_all(b);
    }
    drop(input);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A port on 127.0.0.1 with nothing listening.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Case {
    what: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    expect: &'static str,
}

fn case(what: &str, args: &[&str], expect: &'static str) -> Case {
    Case {
        what: what.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        expect,
    }
}

/// Every subcommand, as `(name, args after the global options)`, with
/// inputs that are valid on a healthy root.
fn every_command(url: &str) -> Vec<(&'static str, Vec<String>)> {
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        ("put", v(&["put", "odds:x:1", "-"])),
        ("get", v(&["get", "odds:x:1"])),
        ("get --json", v(&["get", "odds:x:1", "--json"])),
        ("stat", v(&["stat", "odds:x:1"])),
        ("rm", v(&["rm", "odds:x:1"])),
        ("rm --json", v(&["rm", "odds:x:1", "--json"])),
        ("ls", v(&["ls"])),
        ("invalidate", v(&["invalidate", "odds:*"])),
        ("stats", v(&["stats"])),
        ("stats --prometheus", v(&["stats", "--prometheus"])),
        ("guard", v(&["guard", "odds:x:1"])),
        ("evict", v(&["evict"])),
        ("gc", v(&["gc"])),
        ("verify", v(&["verify"])),
        ("verify --repair", v(&["verify", "--repair"])),
        ("fetch", v(&["fetch", url, "--key", "odds:x:2"])),
        ("feeds refresh", v(&["feeds", "refresh"])),
        ("run", v(&["run", "--listen", "127.0.0.1:0"])),
    ]
}

#[test]
fn every_failure_mode_exits_with_the_code_in_the_readme_table() {
    let table = exit_table();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let r = s(&root);
    let port = closed_port();
    let dead_url = format!("http://127.0.0.1:{port}/odds");
    let fast = [("FRESHCACHE_FETCH_RETRIES", "0")];

    // A healthy root: one fresh entry, one expired one.
    let o = run(&["--root", &r, "put", "odds:g1:1", "-"], Some(b"1"), &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let o = run(
        &["--root", &r, "put", "odds:old:1", "-", "--ttl", "1ms"],
        Some(b"2"),
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    std::thread::sleep(Duration::from_millis(20));

    let bad_cfg = dir.path().join("bad.yml");
    std::fs::write(
        &bad_cfg,
        "classes:\n  odds: { prefix: 'odds:', ttl: -60s }\n",
    )
    .unwrap();
    let missing_cfg = dir.path().join("no-such-config.yml");
    let feeds_cfg = dir.path().join("feeds.yml");
    std::fs::write(
        &feeds_cfg,
        format!(
            "feeds:\n  - {{ name: dead, url: \"http://127.0.0.1:{port}/feed.xml\", every: 5m }}\n"
        ),
    )
    .unwrap();
    let file_root = dir.path().join("a-file");
    std::fs::write(&file_root, b"not a directory").unwrap();
    let under_file = file_root.join("root");
    let a_dir = dir.path().join("a-dir");
    std::fs::create_dir(&a_dir).unwrap();

    let mut cases: Vec<Case> = Vec::new();
    let on = |root: &str, what: &str, args: &[&str], expect| {
        let mut a = vec!["--root", root];
        a.extend_from_slice(args);
        case(what, &a, expect)
    };

    // ok
    cases.push(on(&r, "ls", &["ls"], "ok"));
    cases.push(on(&r, "get fresh", &["get", "odds:g1:1"], "ok"));
    cases.push(on(&r, "guard fresh", &["guard", "odds:g1:1"], "ok"));

    // miss
    for args in [
        &["get", "odds:none:1"][..],
        &["get", "odds:none:1", "--json"],
        &["get", "odds:old:1"],
        &["stat", "odds:none:1"],
        &["stat", "odds:none:1", "--json"],
        &["rm", "odds:none:1"],
        &["rm", "odds:none:1", "--json"],
    ] {
        cases.push(on(&r, &args.join(" "), args, "miss"));
    }

    // invalid input: keys, patterns, durations, dates, usage
    for args in [
        &["put", "a::b", "-"][..],
        &["get", "a::b"],
        &["get", "a::b", "--json"],
        &["stat", "a::b"],
        &["rm", "a::b"],
        &["rm", "a::b", "--json"],
        &["guard", "a::b"],
        &["fetch", "http://127.0.0.1:1/", "--key", "a::b"],
        &["ls", "a::*"],
        &["invalidate", "a::*"],
        &["guard", "a::*"],
        &["put", "odds:far:1", "-", "--ttl", "3000000d"],
        &["put", "odds:neg:1", "-", "--ttl", "-5s"],
        &["put", "odds:lm:1", "-", "--last-modified", "yesterday"],
        &["put", "odds:c:1", "-", "--class", "no_such_class"],
        &["guard", "odds:g1:1", "--max-age", "3000000d"],
        &["gc", "--grace", "3000000d"],
        &[
            "fetch",
            "http://127.0.0.1:1/",
            "--key",
            "odds:f:1",
            "--ttl",
            "3000000d",
        ],
        &["evict", "--max-size", "lots"],
        &["frobnicate"],
        &["put"],
        &["get", "odds:g1:1", "--json", "-o", "x"],
    ] {
        let mut c = on(&r, &args.join(" "), args, "invalid input");
        c.stdin = Some(b"x".to_vec());
        cases.push(c);
    }
    // invalid config and a missing config file, for every subcommand
    for (name, args) in every_command(&dead_url)
        .into_iter()
        .chain([("demo", vec!["demo".to_string()])])
    {
        for (label, cfg) in [
            ("invalid config", &bad_cfg),
            ("missing config", &missing_cfg),
        ] {
            let mut a = vec!["--root".to_string(), r.clone(), "--config".into(), s(cfg)];
            a.extend(args.iter().cloned());
            cases.push(Case {
                what: format!("{name} with {label}"),
                args: a,
                stdin: Some(b"x".to_vec()),
                expect: "invalid input",
            });
        }
    }

    // refused by the guard
    cases.push(on(
        &r,
        "guard expired",
        &["guard", "odds:old:1"],
        "refused by the staleness guard",
    ));
    cases.push(on(
        &r,
        "guard missing pattern",
        &["guard", "odds:none:*", "--json"],
        "refused by the staleness guard",
    ));
    cases.push(on(
        &r,
        "guard max-age",
        &["guard", "odds:g1:1", "--max-age", "1ms"],
        "refused by the staleness guard",
    ));

    // upstream failure: nothing listens on the port
    cases.push(on(
        &r,
        "fetch closed port",
        &["fetch", &dead_url, "--key", "odds:f:1"],
        "upstream",
    ));
    cases.push(on(
        &r,
        "fetch --json closed port",
        &["fetch", &dead_url, "--key", "odds:f:1", "--json"],
        "upstream",
    ));
    let fc = s(&feeds_cfg);
    cases.push(on(
        &r,
        "feeds refresh closed port",
        &["--config", &fc, "feeds", "refresh"],
        "upstream",
    ));

    // local I/O or storage: input and output files, a root that is a file
    cases.push(on(
        &r,
        "put missing FILE",
        &["put", "odds:p:1", "/nonexistent/value.bin"],
        "local I/O or storage",
    ));
    cases.push(on(
        &r,
        "put FILE is a directory",
        &["put", "odds:p:1", &s(&a_dir)],
        "local I/O or storage",
    ));
    let unwritable = s(&dir.path().join("no-such-dir").join("out.bin"));
    cases.push(on(
        &r,
        "get -o unwritable",
        &["get", "odds:g1:1", "-o", &unwritable],
        "local I/O or storage",
    ));
    for (name, args) in every_command(&dead_url) {
        for (label, bad_root) in [
            ("root is a file", &file_root),
            ("root under a file", &under_file),
        ] {
            let mut a = vec!["--root".to_string(), s(bad_root)];
            a.extend(args.iter().cloned());
            cases.push(Case {
                what: format!("{name} with {label}"),
                args: a,
                stdin: Some(b"x".to_vec()),
                expect: "local I/O or storage",
            });
        }
    }

    eprintln!("{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let o = run(&args, c.stdin.as_deref(), &fast);
        let want = code_for(&table, c.expect);
        if o.code != Some(want) || o.stderr.contains("panicked") {
            failures.push(format!(
                "{}: exit {:?}, README says {want} ({}); stderr: {}",
                c.what,
                o.code,
                c.expect,
                o.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn verify_and_repair_exit_with_the_corrupt_code() {
    let table = exit_table();
    let corrupt = code_for(&table, "corrupt data");
    let ok = code_for(&table, "ok");
    let dir = tempfile::tempdir().unwrap();
    let r = s(dir.path());
    let big = common::noise(7, 200_000);
    let o = run(
        &["--root", &r, "put", "llm:features:c9:d", "-"],
        Some(&big),
        &[],
    );
    assert_eq!(o.code, Some(ok), "{}", o.stderr);
    let f = &common::blob_files(dir.path())[0];
    let mut b = std::fs::read(f).unwrap();
    b[1000] ^= 1;
    std::fs::write(f, b).unwrap();
    for args in [&["verify"][..], &["verify", "--json"]] {
        let mut a = vec!["--root", &r];
        a.extend_from_slice(args);
        assert_eq!(run(&a, None, &[]).code, Some(corrupt), "{args:?}");
    }
    let o = run(&["--root", &r, "verify", "--repair", "--json"], None, &[]);
    assert_eq!(o.code, Some(corrupt), "{}", o.stdout);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["clean_after"], true);
    assert_eq!(v["report"]["keys_dropped"][0], "llm:features:c9:d");
    assert_eq!(run(&["--root", &r, "verify"], None, &[]).code, Some(ok));
}

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
    ] {
        let o = run(&[sub, "--help"], None, &[]);
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
