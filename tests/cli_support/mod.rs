//! Helpers for the CLI test files: run the real binary, read README.md's
//! exit-code table.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_freshcache");

/// The rows of README.md's "### Exit codes" table: code → meaning.
pub fn exit_table() -> BTreeMap<i32, String> {
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
pub fn code_for(table: &BTreeMap<i32, String>, meaning: &str) -> i32 {
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

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args`, an optional stdin, extra env; killed after 60 s.
pub fn run(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
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

pub fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A port on 127.0.0.1 with nothing listening.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
