//! The worker side: one process runs one phase of one system and prints its
//! samples as JSON (`{"fingerprint", "results": {op: {samples, ops, secs,
//! t0, t1, threads}}}`). benches/peers/diskcache_bench.py is the same worker
//! for python-diskcache.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::gen::{permutation, round_key, set_key, Kind, Payloads, Uniform, Zipf};
use crate::systems::{Cacache, Fresh, Sys};

/// What the coordinator asks of one worker process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub system: String,
    pub phase: String,
    /// The system's root for this phase.
    pub dir: PathBuf,
    pub round: u64,
    pub seed: u64,
    /// Size of the preloaded data set (uniform, mix, rw).
    pub keys: usize,
    /// Operations per small-payload measurement.
    pub n: usize,
    /// 1 MiB values (first reads) and repeated 1 MiB reads.
    pub m1: usize,
    pub repeat: usize,
    /// Operations of a uniform or mix run.
    pub ops: usize,
    /// Seconds of a writer + readers run, and its reader threads.
    pub secs: f64,
    pub readers: usize,
    /// Unix ns to start timing at (two processes start together); 0 = now.
    pub start_at: u64,
    /// Evict phase: entries built.
    pub entries: usize,
    pub evict_runs: usize,
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Samples of one operation.
#[derive(Default)]
pub struct Rec {
    samples: Vec<u64>,
    t0: u64,
    t1: u64,
    started: Option<Instant>,
    threads: Vec<(usize, f64)>,
}

impl Rec {
    pub fn with_capacity(n: usize) -> Rec {
        Rec {
            samples: Vec::with_capacity(n),
            ..Rec::default()
        }
    }
    pub fn start(&mut self) {
        self.t0 = unix_ns();
        self.started = Some(Instant::now());
    }
    /// Times one operation. Not inlined, so that callgrind can count the
    /// instructions of exactly the timed operations (`--toggle-collect`).
    #[inline(never)]
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.samples.push(t.elapsed().as_nanos() as u64);
        out
    }
    /// Not inlined: `--dump-after` on it gives one callgrind dump per op.
    #[inline(never)]
    pub fn json(mut self) -> Value {
        if self.t1 == 0 {
            self.t1 = unix_ns();
        }
        let secs = self.started.map_or((self.t1 - self.t0) as f64 / 1e9, |s| {
            s.elapsed().as_secs_f64()
        });
        json!({
            "ops": self.samples.len(),
            "secs": secs,
            "t0": self.t0,
            "t1": self.t1,
            "threads": self.threads,
            "samples": self.samples,
        })
    }
    /// Merges per-thread records, keeping each thread's (ops, secs).
    pub fn merge(parts: Vec<(Rec, f64)>) -> Rec {
        let mut r = Rec {
            t0: parts.iter().map(|p| p.0.t0).min().unwrap_or(0),
            ..Rec::default()
        };
        for (p, secs) in parts {
            r.threads.push((p.samples.len(), secs));
            r.samples.extend(p.samples);
            r.t1 = r.t1.max(p.t1);
        }
        r
    }
}

pub type Results = Map<String, Value>;

pub fn wait_until(at: u64) {
    let now = unix_ns();
    if at > now {
        std::thread::sleep(Duration::from_nanos(at - now));
    }
}

/// Put, disk-tier get (a fresh handle, each key once), hot get, miss.
fn small<S: Sys>(s: &Spec, out: &mut Results) {
    let odds = Payloads::new(Kind::Odds4k);
    let rand = Payloads::new(Kind::Rand6k);
    let w = S::open(&s.dir);
    for (tag, p, op) in [("o", &odds, "put_odds_4k"), ("r", &rand, "put_rand_6k")] {
        let items: Vec<(String, Vec<u8>)> = (0..s.n)
            .map(|i| (round_key(s.round, tag, i), p.value(i as u64)))
            .collect();
        let mut r = Rec::with_capacity(s.n);
        r.start();
        for (k, v) in &items {
            r.time(|| w.put(k, v));
        }
        out.insert(op.into(), r.json());
    }
    drop(w);
    let h = S::open(&s.dir);
    let keys: Vec<String> = (0..s.n).map(|i| round_key(s.round, "o", i)).collect();
    let mut r = Rec::with_capacity(s.n);
    r.start();
    for i in permutation(s.n, s.seed) {
        let got = r.time(|| h.get(&keys[i]));
        assert!(odds.check(got.expect("a stored key").as_ref(), i as u64));
    }
    out.insert("get_disk_4k".into(), r.json());
    let hot = 64.min(s.n);
    for k in &keys[..hot] {
        h.get(k).expect("a stored key");
        h.get(k).expect("a stored key");
    }
    let mut r = Rec::with_capacity(s.n);
    r.start();
    for i in 0..s.n {
        let got = r.time(|| h.get(&keys[i % hot]));
        assert!(odds.check(got.expect("a stored key").as_ref(), (i % hot) as u64));
    }
    out.insert("get_hot_4k".into(), r.json());
    let absent: Vec<String> = (0..s.n).map(|i| round_key(s.round, "nope", i)).collect();
    let mut r = Rec::with_capacity(s.n);
    r.start();
    for k in &absent {
        assert!(r.time(|| h.get(k)).is_none());
    }
    out.insert("miss".into(), r.json());
}

/// 1 MiB: put, the first read on a freshly opened handle, repeated reads.
fn large<S: Sys>(s: &Spec, out: &mut Results) {
    let p = Payloads::new(Kind::Json1m);
    let w = S::open(&s.dir);
    let mut r = Rec::with_capacity(s.m1);
    r.start();
    for i in 0..s.m1 {
        let v = p.value(i as u64);
        r.time(|| w.put(&round_key(s.round, "m", i), &v));
    }
    out.insert("put_1m".into(), r.json());
    drop(w);
    let mut r = Rec::with_capacity(s.m1);
    r.start();
    for i in permutation(s.m1, s.seed) {
        let h = S::open(&s.dir);
        let key = round_key(s.round, "m", i);
        let got = r.time(|| h.get(&key));
        assert!(p.check(got.expect("a stored key").as_ref(), i as u64));
    }
    out.insert("get_1m_first".into(), r.json());
    let h = S::open(&s.dir);
    let few = s.m1.min(4);
    let keys: Vec<String> = (0..few).map(|i| round_key(s.round, "m", i)).collect();
    // Two reads each on this handle before timing: freshcache admits a
    // value of 128 KiB or more into memory on its second read.
    for _ in 0..2 {
        for k in &keys {
            h.get(k).expect("a stored key");
        }
    }
    let mut r = Rec::with_capacity(s.repeat);
    r.start();
    for i in 0..s.repeat {
        let got = r.time(|| h.get(&keys[i % few]));
        assert!(p.check(got.expect("a stored key").as_ref(), (i % few) as u64));
    }
    out.insert("get_1m_repeat".into(), r.json());
}

/// Loads the data set (not timed): value i under set_key(i).
fn setup<S: Sys>(s: &Spec, out: &mut Results) {
    let p = Payloads::new(Kind::Odds4k);
    let h = S::open(&s.dir);
    let t = Instant::now();
    for start in (0..s.keys).step_by(5000) {
        let items: Vec<(String, Vec<u8>)> = (start..(start + 5000).min(s.keys))
            .map(|i| (set_key(i), p.value(i as u64)))
            .collect();
        h.preload(&items);
    }
    out.insert("setup".into(), json!({"secs": t.elapsed().as_secs_f64()}));
}

/// A value number no other process or round writes.
fn fresh_number(s: &Spec, i: usize) -> u64 {
    (1 << 40) + (s.seed << 24) + i as u64
}

/// Uniform random gets over the data set, on a fresh handle.
fn uniform<S: Sys>(s: &Spec, out: &mut Results) {
    let h = S::open(&s.dir);
    let mut u = Uniform::new(s.keys, s.seed);
    let keys: Vec<String> = (0..s.ops).map(|_| set_key(u.next())).collect();
    let mut r = Rec::with_capacity(s.ops);
    r.start();
    for k in &keys {
        let got = r.time(|| h.get(k));
        assert_eq!(got.expect("a preloaded key").as_ref().len(), 4096);
    }
    out.insert("get_uniform".into(), r.json());
}

/// 90% get / 10% put, zipf; started at `start_at` (two processes at once).
fn mix<S: Sys>(s: &Spec, out: &mut Results) {
    let p = Payloads::new(Kind::Odds4k);
    let h = S::open(&s.dir);
    let mut z = Zipf::new(s.keys, s.seed);
    let keys: Vec<String> = (0..s.ops).map(|_| set_key(z.next())).collect();
    let mut r = Rec::with_capacity(s.ops);
    wait_until(s.start_at);
    r.start();
    for (i, k) in keys.iter().enumerate() {
        if i % 10 == 0 {
            let v = p.value(fresh_number(s, i));
            r.time(|| h.put(k, &v));
        } else {
            let got = r.time(|| h.get(k));
            assert_eq!(got.expect("a preloaded key").as_ref().len(), 4096);
        }
    }
    out.insert("mix".into(), r.json());
}

/// One writer thread and `readers` reader threads on one handle, for `secs`.
fn rw<S: Sys>(s: &Spec, out: &mut Results) {
    let p = Payloads::new(Kind::Odds4k);
    let h = S::open(&s.dir);
    let deadline = Instant::now() + Duration::from_secs_f64(s.secs);
    let (writer, readers) = std::thread::scope(|sc| {
        let (h, p) = (&h, &p);
        let w = sc.spawn(move || {
            let mut u = Uniform::new(s.keys, s.seed);
            let mut r = Rec::with_capacity(1 << 16);
            r.start();
            let mut i = 0;
            while Instant::now() < deadline {
                let (k, v) = (set_key(u.next()), p.value(fresh_number(s, i)));
                r.time(|| h.put(&k, &v));
                i += 1;
            }
            r.t1 = unix_ns();
            let secs = r.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
            (r, secs)
        });
        let rs: Vec<_> = (0..s.readers)
            .map(|j| {
                sc.spawn(move || {
                    let mut u = Uniform::new(s.keys, s.seed + 1 + j as u64);
                    let mut r = Rec::with_capacity(1 << 16);
                    r.start();
                    while Instant::now() < deadline {
                        let k = set_key(u.next());
                        let got = r.time(|| h.get(&k));
                        assert_eq!(got.expect("a preloaded key").as_ref().len(), 4096);
                    }
                    r.t1 = unix_ns();
                    let secs = r.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
                    (r, secs)
                })
            })
            .collect();
        let w = w.join().expect("writer");
        let rs: Vec<(Rec, f64)> = rs.into_iter().map(|t| t.join().expect("reader")).collect();
        (w, rs)
    });
    out.insert("rw_writer".into(), Rec::merge(vec![writer]).json());
    out.insert("rw_reader".into(), Rec::merge(readers).json());
}

fn run<S: Sys>(s: &Spec, out: &mut Results) {
    match s.phase.as_str() {
        "setup" => setup::<S>(s, out),
        "small" => small::<S>(s, out),
        "large" => large::<S>(s, out),
        "uniform" => uniform::<S>(s, out),
        "mix" => mix::<S>(s, out),
        "rw" => rw::<S>(s, out),
        other => panic!("unknown phase {other}"),
    }
}

/// Entry point of `compare --compare-worker` (spec in FC_COMPARE_SPEC).
pub fn main(spec: &str) {
    let s: Spec = serde_json::from_str(spec).expect("a worker spec");
    let mut out = Results::new();
    match (s.system.as_str(), s.phase.as_str()) {
        ("freshcache", "evict") => crate::evict::run(&s, &mut out),
        ("freshcache", _) => run::<Fresh>(&s, &mut out),
        ("cacache", _) => run::<Cacache>(&s, &mut out),
        ("floor", _) => crate::systems::floor(&s, &mut out),
        (other, _) => panic!("unknown system {other}"),
    }
    let doc = json!({"fingerprint": crate::gen::fingerprint(s.keys), "results": out});
    println!("{doc}");
}
