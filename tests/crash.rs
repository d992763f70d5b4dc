//! The SIGKILL loop, bounded for CI: 4 writer processes, a reader and an
//! evict/gc/invalidate process on one root, all killed with SIGKILL at a
//! random instant; after each cycle the root is reopened and checked: no
//! acknowledged put lost, no wrong byte, `verify` clean. Children are this
//! test binary re-run with FC_CRASH set. `FC_CRASH_CYCLES` overrides the
//! number of cycles (default 100; every one of them must run: the 10 min
//! cap only guards a hang).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freshcache::{Cache, Config, Put};

const WRITERS: u64 = 4;
const KEYS: u64 = 8;

/// A value that names its writer, key and version; its size depends only
/// on the key, so overwrites never change the bytes stored (eviction of the
/// janitor's expired fillers then never has to touch writer keys).
fn value(w: u64, k: u64, v: u64) -> Vec<u8> {
    let mut b = format!("{w}:{k}:{v}:").into_bytes();
    b.resize(32, b' ');
    let len = if k % 2 == 0 { 700 } else { 6000 };
    b.extend(common::noise(w << 48 | k << 40 | v, len));
    b
}

/// (writer, key, version) if `b` is exactly such a value.
fn identify(b: &[u8]) -> Option<(u64, u64, u64)> {
    let head = std::str::from_utf8(b.get(..32)?).ok()?;
    let f: Vec<u64> = head
        .trim()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let (w, k, v) = (*f.first()?, *f.get(1)?, *f.get(2)?);
    (b == &value(w, k, v)[..]).then_some((w, k, v))
}

fn config(root: &Path) -> Config {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 4096; // even keys inline, odd keys files
    c.cache.access_flush.0 = Duration::from_millis(5);
    c
}

fn key(w: u64, k: u64) -> String {
    format!("w{w}:k{k}")
}

/// The child body: `FC_CRASH=role,root,id,start`.
#[test]
#[ignore = "child-process entry point, started by the crash loop"]
fn crash_child() {
    let spec = std::env::var("FC_CRASH").expect("FC_CRASH names the role");
    let p: Vec<&str> = spec.split(',').collect();
    let (role, root, id, start) = (
        p[0],
        Path::new(p[1]),
        p[2].parse::<u64>().unwrap(),
        p[3].parse::<u64>().unwrap(),
    );
    let cache = Cache::with_config(config(root)).unwrap();
    let mut out = std::io::stdout().lock();
    match role {
        "writer" => {
            for v in start.. {
                if v % 3 == 0 {
                    let vals: Vec<(String, Vec<u8>)> =
                        (0..KEYS).map(|k| (key(id, k), value(id, k, v))).collect();
                    let items: Vec<(&str, &[u8], Put)> = vals
                        .iter()
                        .map(|(k, b)| (k.as_str(), &b[..], Put::default()))
                        .collect();
                    cache.put_many(&items).unwrap();
                    for k in 0..KEYS {
                        writeln!(out, "ack {k} {v}").unwrap();
                    }
                } else {
                    for k in 0..KEYS {
                        cache
                            .put(&key(id, k), &value(id, k, v), Put::default())
                            .unwrap();
                        writeln!(out, "ack {k} {v}").unwrap();
                    }
                }
                out.flush().unwrap();
            }
        }
        "reader" => loop {
            for w in 0..WRITERS {
                for k in 0..KEYS {
                    if let Some(b) = cache.get(&key(w, k)).unwrap() {
                        if identify(&b).map(|(a, b, _)| (a, b)) != Some((w, k)) {
                            writeln!(out, "BAD {w} {k}").unwrap();
                            out.flush().unwrap();
                        }
                    }
                }
            }
        },
        "janitor" => {
            for round in start.. {
                // Expired fillers, then an eviction that frees about what
                // they cost: expired entries go first, writer keys never.
                let filler = common::noise(round, 3000);
                let mut cost = 0u64;
                for i in 0..20 {
                    let k = format!("fill:{round}:{i}");
                    let s = cache
                        .put(
                            &k,
                            &filler[..2900 + i],
                            Put::default().ttl(Duration::from_millis(1)),
                        )
                        .unwrap();
                    cost += s.stored_size;
                }
                std::thread::sleep(Duration::from_millis(2));
                let before = cache.disk_bytes().unwrap();
                let r = cache
                    .evict_to_bytes(before.saturating_sub(cost / 2))
                    .unwrap();
                if r.entries_removed > r.expired_removed {
                    writeln!(out, "lru {}", r.entries_removed - r.expired_removed).unwrap();
                }
                cache.gc_with(Some(Duration::ZERO), None).unwrap();
                if round % 4 == 0 {
                    cache.invalidate("fill:*").unwrap();
                }
                out.flush().unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, root: &Path, id: u64, start: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(
            "FC_CRASH",
            format!("{role},{},{id},{start}", root.display()),
        )
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_put() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let cache = Cache::with_config(config(root)).unwrap();
        for w in 0..WRITERS {
            for k in 0..KEYS {
                cache
                    .put(&key(w, k), &value(w, k, 0), Put::default())
                    .unwrap();
            }
        }
    }
    let cycles: u64 = std::env::var("FC_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    // Not a throughput bound: a cycle takes ~0.15 s on an idle 2-core
    // machine, several times that on a loaded one.
    let cap = Duration::from_secs(600);
    let started = Instant::now();
    let mut durable: HashMap<(u64, u64), u64> = HashMap::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut done, mut acks_total, mut lru) = (0u64, 0u64, 0u64);
    for cycle in 1..=cycles {
        assert!(
            started.elapsed() < cap,
            "hung: only {done} of {cycles} cycles in {cap:?}"
        );
        let start = cycle * 1_000_000;
        let mut kids: Vec<(String, std::process::Child)> = (0..WRITERS)
            .map(|w| (format!("writer{w}"), spawn("writer", root, w, start)))
            .collect();
        kids.push(("reader".into(), spawn("reader", root, 0, start)));
        kids.push(("janitor".into(), spawn("janitor", root, 0, start)));
        std::thread::sleep(Duration::from_millis(40 + next() % 120));
        // Killed one by one at slightly different instants.
        for (_, c) in kids.iter_mut() {
            let _ = c.kill();
            if next() % 2 == 0 {
                std::thread::sleep(Duration::from_micros(next() % 3000));
            }
        }
        let mut acked: HashMap<(u64, u64), u64> = HashMap::new();
        for (name, mut c) in kids {
            let status = c.wait().unwrap();
            // Killed, or (never expected: every role loops) done; a panic
            // in a child is exit code 101.
            assert!(
                status.signal() == Some(9) || status.code() == Some(0),
                "cycle {cycle}: {name} ended with {status}"
            );
            let lines = std::io::BufReader::new(c.stdout.take().unwrap()).lines();
            for line in lines.map_while(Result::ok) {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.as_slice() {
                    ["ack", k, v] if name.starts_with("writer") => {
                        let w: u64 = name["writer".len()..].parse().unwrap();
                        let (k, v): (u64, u64) = (k.parse().unwrap(), v.parse().unwrap());
                        let e = acked.entry((w, k)).or_default();
                        *e = (*e).max(v);
                        acks_total += 1;
                    }
                    ["BAD", w, k] => {
                        panic!("cycle {cycle}: the reader got wrong bytes for w{w}:k{k}")
                    }
                    ["lru", n] => lru += n.parse::<u64>().unwrap(),
                    _ => {}
                }
            }
        }
        let cache = Cache::with_config(config(root)).unwrap();
        for w in 0..WRITERS {
            for k in 0..KEYS {
                let got = cache
                    .get(&key(w, k))
                    .unwrap()
                    .unwrap_or_else(|| panic!("cycle {cycle}: w{w}:k{k} lost"));
                let (gw, gk, gv) = identify(&got)
                    .unwrap_or_else(|| panic!("cycle {cycle}: w{w}:k{k} holds wrong bytes"));
                assert_eq!((gw, gk), (w, k), "cycle {cycle}: another key's value");
                let floor = acked
                    .get(&(w, k))
                    .copied()
                    .max(durable.get(&(w, k)).copied())
                    .unwrap_or(0);
                assert!(gv >= floor, "cycle {cycle}: w{w}:k{k} at version {gv}, acknowledged {floor}: an acknowledged put was lost");
                durable.insert((w, k), gv);
            }
        }
        let r = cache.verify(false, None).unwrap();
        assert!(r.is_clean(), "cycle {cycle}: {:?}", r.problems);
        done += 1;
    }
    eprintln!(
        "{done} SIGKILL cycles in {:.1} s: {acks_total} acknowledged puts, 0 lost, 0 wrong bytes, verify clean every cycle; janitor LRU victims: {lru}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done, cycles, "every cycle ran");
    assert!(
        acks_total > 0,
        "writers were acknowledged before being killed"
    );
    assert_eq!(
        lru, 0,
        "the janitor only ever evicted its own expired fillers"
    );
}
