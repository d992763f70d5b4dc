//! The CLI's contract with scripts: every subcommand's failure modes exit
//! with the code README.md's exit-code table gives them.

mod cli_support;
mod common;

use std::time::Duration;

use cli_support::{closed_port, code_for, exit_table, run, s};

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
        ("recover", v(&["recover"])),
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
