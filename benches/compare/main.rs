//! Head-to-head (issues 8 and 16): freshcache, python-diskcache 5.6.3,
//! cacache and the raw floors, each system in its own process, the order
//! rotated every round, the same payloads, keys and access sequences
//! (generated from a seed in every process and checked by fingerprint).
//! Reports p50, p99 and mean for every operation, and ratios to diskcache
//! and to the floors.
//!
//! scripts/peers-venv && cargo bench --bench compare
//! FC_COMPARE_QUICK=1     a rough run in under a minute (without cacache)
//! FC_COMPARE_WRITE=1     also rewrite the generated part of BENCHMARKS.md
//! FC_COMPARE_REPORT=1    re-render the report from target/compare-results.json
//! FC_COMPARE_ROUNDS, FC_COMPARE_READERS (e.g. "1,2"), FC_COMPARE_SYSTEMS
//! (e.g. "freshcache,diskcache,floor") override the defaults.
//! FC_COMPARE_CONFIG=FILE opens freshcache with that runtime.yml instead of
//! the default handle (experiments only: the report does not say so).

mod evict;
mod gen;
mod report;
mod systems;
mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use report::{Run, Summary};
use worker::{unix_ns, Spec};

const WORKER_FLAG: &str = "--compare-worker";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    manifest().join("target/peers-venv/bin/python")
}

/// Starts one worker process.
fn spawn(s: &Spec) -> Child {
    let spec = serde_json::to_string(s).expect("spec");
    let mut cmd = if s.system == "diskcache" {
        let mut c = Command::new(python());
        c.arg(manifest().join("benches/peers/diskcache_bench.py"))
            .arg(&spec);
        c
    } else {
        let mut c = Command::new(std::env::current_exe().expect("current exe"));
        c.arg(WORKER_FLAG).env("FC_COMPARE_SPEC", &spec);
        c
    };
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

struct Collector {
    fingerprint: Option<String>,
    /// (system, op) -> pooled samples and per-round rates.
    agg: BTreeMap<(String, String), Agg>,
}

#[derive(Default)]
struct Agg {
    samples: Vec<u64>,
    rates: Vec<f64>,
    thread_rates: Vec<f64>,
}

impl Collector {
    fn wait(&mut self, s: &Spec, child: Child) -> Value {
        let out = child.wait_with_output().expect("worker output");
        assert!(
            out.status.success(),
            "{} {} worker failed ({})",
            s.system,
            s.phase,
            out.status
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("worker JSON");
        let fp = v["fingerprint"].as_str().unwrap_or("").to_string();
        match &self.fingerprint {
            None => self.fingerprint = Some(fp),
            Some(f) => assert_eq!(
                *f, fp,
                "{} generated different payloads or sequences",
                s.system
            ),
        }
        v
    }
    fn add(&mut self, system: &str, op: &str, r: &Value) {
        let a = self.agg.entry((system.into(), op.into())).or_default();
        if let Some(xs) = r["samples"].as_array() {
            a.samples.extend(xs.iter().filter_map(Value::as_u64));
        }
        let (ops, secs) = (
            r["ops"].as_f64().unwrap_or(0.0),
            r["secs"].as_f64().unwrap_or(0.0),
        );
        if secs > 0.0 {
            a.rates.push(ops / secs);
        }
        for t in r["threads"].as_array().into_iter().flatten() {
            if let (Some(o), Some(s)) = (t[0].as_f64(), t[1].as_f64()) {
                if s > 0.0 {
                    a.thread_rates.push(o / s);
                }
            }
        }
    }
    fn add_all(&mut self, system: &str, prefix: &str, v: &Value) {
        for (op, r) in v["results"].as_object().into_iter().flatten() {
            self.add(system, &format!("{prefix}{op}"), r);
        }
    }
    fn run(&mut self, s: &Spec, prefix: &str) -> Value {
        let child = spawn(s);
        let v = self.wait(s, child);
        self.add_all(&s.system, prefix, &v);
        v
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summarize(agg: BTreeMap<(String, String), Agg>) -> BTreeMap<String, BTreeMap<String, Summary>> {
    let mut out: BTreeMap<String, BTreeMap<String, Summary>> = BTreeMap::new();
    for ((sys, op), mut a) in agg {
        a.samples.sort_unstable();
        let n = a.samples.len();
        let pct = |p: usize| {
            if n == 0 {
                0.0
            } else {
                a.samples[(n * p / 100).min(n - 1)] as f64
            }
        };
        let s = Summary {
            n,
            p50: pct(50),
            p99: pct(99),
            mean: a.samples.iter().sum::<u64>() as f64 / n.max(1) as f64,
            max: a.samples.last().copied().unwrap_or(0) as f64,
            rate: median(a.rates),
            thread_rate: median(a.thread_rates),
        };
        out.entry(sys).or_default().insert(op, s);
    }
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches`
    }
    if args.iter().any(|a| a == WORKER_FLAG) {
        worker::main(&std::env::var("FC_COMPARE_SPEC").expect("FC_COMPARE_SPEC"));
        return;
    }
    let saved = manifest().join("target/compare-results.json");
    if std::env::var_os("FC_COMPARE_REPORT").is_some() {
        let run: Run = serde_json::from_slice(&std::fs::read(&saved).expect("saved results"))
            .expect("saved results parse");
        report::write(&run);
        return;
    }
    let quick = std::env::var("FC_COMPARE_QUICK").is_ok_and(|v| v != "0");
    let q = |quick_v: usize, full: usize| if quick { quick_v } else { full };
    let base = Spec {
        system: String::new(),
        phase: String::new(),
        dir: PathBuf::new(),
        round: 0,
        seed: 0,
        keys: env_or("FC_COMPARE_KEYS", q(20_000, 100_000)),
        n: env_or("FC_COMPARE_OPS", q(300, 2000)),
        m1: q(4, 12),
        repeat: q(40, 200),
        ops: q(3000, 20_000),
        secs: if quick { 0.6 } else { 2.5 },
        readers: 1,
        start_at: 0,
        entries: env_or("FC_COMPARE_ENTRIES", q(100_000, 1_000_000)),
        evict_runs: q(1, 2),
    };
    let rounds: u64 = env_or("FC_COMPARE_ROUNDS", if quick { 2 } else { 3 });
    let readers: Vec<usize> = std::env::var("FC_COMPARE_READERS")
        .unwrap_or_else(|_| if quick { "1".into() } else { "1,2".into() })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut systems: Vec<String> = std::env::var("FC_COMPARE_SYSTEMS")
        .unwrap_or_else(|_| {
            // cacache writes a file per entry: too slow to load and remove
            // for the quick mode's minute.
            if quick {
                "freshcache,diskcache,floor"
            } else {
                "freshcache,diskcache,cacache,floor"
            }
            .into()
        })
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    if systems.iter().any(|s| s == "diskcache") && !python().exists() {
        eprintln!("python-diskcache not measured: run scripts/peers-venv first");
        systems.retain(|s| s != "diskcache");
    }
    let caches: Vec<String> = systems.iter().filter(|s| *s != "floor").cloned().collect();
    let tmp = tempfile::Builder::new()
        .prefix("compare-")
        .tempdir_in(manifest().join("target"))
        .expect("temp dir");
    let dir = tmp.path();
    let started = Instant::now();
    let load_before = load_average();
    let mut c = Collector {
        fingerprint: None,
        agg: BTreeMap::new(),
    };
    let spec = |system: &str, phase: &str, dir: &Path, round: u64, seed: u64| Spec {
        system: system.into(),
        phase: phase.into(),
        dir: dir.to_path_buf(),
        round,
        seed,
        ..base.clone()
    };
    let set = |sys: &str| dir.join(format!("{sys}-set"));
    let mut setup_secs = BTreeMap::new();
    for sys in &caches {
        let v = c.run(&spec(sys, "setup", &set(sys), 0, 0), "");
        setup_secs.insert(
            sys.clone(),
            v["results"]["setup"]["secs"].as_f64().unwrap_or(0.0),
        );
        eprintln!("loaded {} keys into {sys}", base.keys);
    }
    for round in 0..rounds {
        let rot = |list: &[String]| {
            let mut l = list.to_vec();
            let k = round as usize % l.len().max(1);
            l.rotate_left(k);
            l
        };
        let (all, cs) = (rot(&systems), rot(&caches));
        let seed = 1000 * (round + 1);
        for (pi, phase) in ["small", "large"].iter().enumerate() {
            for sys in &all {
                let d = dir.join(format!("{sys}-{phase}-{round}"));
                c.run(&spec(sys, phase, &d, round, seed + pi as u64), "");
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        for sys in &cs {
            c.run(&spec(sys, "uniform", &set(sys), round, seed + 2), "");
        }
        for sys in &cs {
            c.run(&spec(sys, "mix", &set(sys), round, seed + 3), "");
        }
        for &n in &readers {
            for sys in &cs {
                let s = Spec {
                    readers: n,
                    ..spec(sys, "rw", &set(sys), round, seed + 10 + n as u64)
                };
                c.run(&s, &format!("rw{n}_"));
            }
        }
        for sys in &cs {
            // Two processes on one root, started together.
            let start_at = unix_ns() + 2_000_000_000;
            let specs: Vec<Spec> = (0..2)
                .map(|p| Spec {
                    start_at,
                    ..spec(sys, "mix", &set(sys), round, seed + 20 + p)
                })
                .collect();
            let children: Vec<Child> = specs.iter().map(spawn).collect();
            let outs: Vec<Value> = specs
                .iter()
                .zip(children)
                .map(|(s, ch)| c.wait(s, ch))
                .collect();
            let rs: Vec<&Value> = outs.iter().map(|v| &v["results"]["mix"]).collect();
            let t0 = rs
                .iter()
                .filter_map(|r| r["t0"].as_u64())
                .min()
                .unwrap_or(0);
            let t1 = rs
                .iter()
                .filter_map(|r| r["t1"].as_u64())
                .max()
                .unwrap_or(0);
            let ops: u64 = rs.iter().filter_map(|r| r["ops"].as_u64()).sum();
            let mut samples = Vec::new();
            for r in &rs {
                samples.extend(r["samples"].as_array().cloned().unwrap_or_default());
            }
            let per_proc: Vec<Value> = rs
                .iter()
                .map(|r| serde_json::json!([r["ops"], r["secs"]]))
                .collect();
            let merged = serde_json::json!({
                "ops": ops, "secs": (t1.saturating_sub(t0)) as f64 / 1e9,
                "samples": samples, "threads": per_proc,
            });
            c.add(sys, "procs2_mix", &merged);
        }
        eprintln!(
            "round {} of {rounds} done ({:.0} s, load {})",
            round + 1,
            started.elapsed().as_secs_f64(),
            load_average()
        );
    }
    let mut evict_info = Value::Null;
    if caches.iter().any(|s| s == "freshcache") {
        let v = c.run(&spec("freshcache", "evict", &dir.join("evict"), 0, 0), "");
        evict_info = v["results"]["evict_info"].clone();
        eprintln!("evict measured ({:.0} s)", started.elapsed().as_secs_f64());
    }
    let run = Run {
        quick,
        rounds,
        readers,
        keys: base.keys,
        n: base.n,
        m1: base.m1,
        repeat: base.repeat,
        ops: base.ops,
        secs: base.secs,
        entries: base.entries,
        evict_info,
        setup_secs,
        date: utc_now(),
        load_before,
        load_after: load_average(),
        elapsed: started.elapsed().as_secs_f64(),
        results: summarize(c.agg),
    };
    std::fs::write(&saved, serde_json::to_vec_pretty(&run).expect("json")).expect("save");
    report::write(&run);
    let t = Instant::now();
    drop(tmp);
    eprintln!("removed the data ({:.0} s)", t.elapsed().as_secs_f64());
}

/// UTC date and time of the run, from the system clock.
fn utc_now() -> String {
    let secs = unix_ns() / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}
