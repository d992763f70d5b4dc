//! Head-to-head (issue 8): freshcache, cacache, python-diskcache and the raw
//! floors on the same workloads in one run. Writes BENCHMARKS.md (figures as
//! ratios to the floor and to each peer) and benches/compare.png.
//!
//! scripts/peers-venv && cargo bench --bench compare
//! FC_COMPARE_OPS (default 3000) sets the operations per measurement.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use freshcache::{Cache, Config, Put};

const WORKLOADS: [(&str, &str); 4] = [
    ("odds_4k", "4 KiB odds JSON"),
    ("embedding_6k", "6 KiB raw f32 embedding"),
    ("news_4_5k", "4.5 KiB news article"),
    ("feature_1m", "1 MiB feature blob"),
];
const OPS: [&str; 4] = ["put", "get", "get_hot", "miss"];
const ZIPF_KEYS: usize = 100_000;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn payload(workload: &str, i: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    match workload {
        "odds_4k" | "news_4_5k" => {
            let (len, word) = if workload == "odds_4k" {
                (4096, "book")
            } else {
                (4608, "para")
            };
            let mut s = format!("{{\"id\":{i},\"items\":[");
            while s.len() < len {
                let r = xorshift(&mut x);
                let _ = write!(
                    s,
                    "{{\"{word}\":\"b{}\",\"home\":-{},\"away\":{},\"t\":{}.5}},",
                    r % 40,
                    100 + r % 60,
                    100 + (r >> 8) % 50,
                    38 + (r >> 16) % 20
                );
            }
            s.truncate(len - 2);
            s.push_str("]}");
            s.into_bytes()
        }
        "embedding_6k" => (0..1536)
            .flat_map(|_| ((xorshift(&mut x) as u32 as f32 / u32::MAX as f32) - 0.5).to_le_bytes())
            .collect(),
        _ => (0..(1 << 18))
            .flat_map(|_| ((xorshift(&mut x) as u32 as f32 / u32::MAX as f32) - 0.5).to_le_bytes())
            .collect(),
    }
}

fn timed(n: usize, reps: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut runs: Vec<f64> = (0..reps)
        .map(|rep| {
            let t = Instant::now();
            f(rep);
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn open(root: &Path, memory: u64) -> Cache {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.memory_size.0 = memory;
    Cache::with_config(c).unwrap()
}

struct Zipf {
    cdf: Vec<f64>,
    x: u64,
}

impl Zipf {
    fn new(n: usize, seed: u64) -> Zipf {
        let mut total = 0.0;
        let cdf = (1..=n).map(|r| {
            total += 1.0 / r as f64;
            total
        });
        Zipf {
            cdf: cdf.collect(),
            x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }
    fn next(&mut self) -> usize {
        let u = (xorshift(&mut self.x) >> 11) as f64 / (1u64 << 53) as f64
            * self.cdf[self.cdf.len() - 1];
        self.cdf.partition_point(|c| *c < u)
    }
}

/// 90% reads, 10% writes over ZIPF_KEYS keys; returns ops/s.
fn zipf_run(cache: &Cache, seed: u64, ops: usize, value: &[u8]) -> f64 {
    let mut z = Zipf::new(ZIPF_KEYS, seed);
    let t = Instant::now();
    for i in 0..ops {
        let key = format!("odds:z{}:1", z.next());
        if i % 10 == 0 {
            cache.put(&key, value, Put::default()).unwrap();
        } else {
            std::hint::black_box(cache.get(&key).unwrap());
        }
    }
    ops as f64 / t.elapsed().as_secs_f64()
}

fn cacache_zipf(root: &Path, seed: u64, ops: usize, value: &[u8]) -> f64 {
    let mut z = Zipf::new(ZIPF_KEYS, seed);
    let t = Instant::now();
    for i in 0..ops {
        let key = format!("odds:z{}:1", z.next());
        if i % 10 == 0 {
            cacache::write_sync(root, &key, value).unwrap();
        } else {
            std::hint::black_box(cacache::read_sync(root, &key).ok());
        }
    }
    ops as f64 / t.elapsed().as_secs_f64()
}

type Results = BTreeMap<(String, String, String), f64>; // (system, workload, op) -> ns/op

fn measure_store(dir: &Path, n: usize, r: &mut Results) {
    for (w, _) in WORKLOADS {
        let nn = if w == "feature_1m" {
            (n / 200).max(8)
        } else {
            n
        };
        let vals: Vec<Vec<u8>> = (0..64).map(|i| payload(w, i)).collect();
        let pdir = dir.join("payloads").join(w);
        std::fs::create_dir_all(&pdir).unwrap();
        for (i, v) in vals.iter().enumerate() {
            std::fs::write(pdir.join(format!("{i}.bin")), v).unwrap();
        }
        let mut put = |sys: &str, op: &str, v: f64| {
            r.insert((sys.to_string(), w.to_string(), op.to_string()), v);
        };
        // freshcache: a writer with L1, and a reader without L1 for disk-tier gets.
        let root = dir.join(format!("fc-{w}"));
        let fc = open(&root, 256 << 20);
        let cold = open(&root, 0);
        // Distinct content per key (dedup would flatter put).
        let value = |rep: usize, i: usize| {
            let mut v = vals[i % 64].clone();
            v[..16].copy_from_slice(&((rep * 1_000_000 + i) as u128).to_le_bytes());
            v
        };
        let prepared: Vec<Vec<Vec<u8>>> = (0..5)
            .map(|rep| (0..nn).map(|i| value(rep, i)).collect())
            .collect();
        put(
            "freshcache",
            "put",
            timed(nn, 5, |rep| {
                for (i, v) in prepared[rep].iter().enumerate() {
                    fc.put(&format!("{w}:{rep}:{i}"), v, Put::default())
                        .unwrap();
                }
            }),
        );
        put(
            "freshcache",
            "get",
            timed(nn, 5, |rep| {
                for i in 0..nn {
                    std::hint::black_box(cold.get(&format!("{w}:{rep}:{i}")).unwrap().unwrap());
                }
            }),
        );
        for i in 0..64 {
            fc.get(&format!("{w}:0:{i}")).unwrap();
        }
        put(
            "freshcache",
            "get_hot",
            timed(nn, 5, |_| {
                for i in 0..nn {
                    std::hint::black_box(fc.get(&format!("{w}:0:{}", i % 64)).unwrap().unwrap());
                }
            }),
        );
        put(
            "freshcache",
            "miss",
            timed(nn, 5, |rep| {
                for i in 0..nn {
                    std::hint::black_box(fc.get(&format!("nope:{rep}:{i}")).unwrap());
                }
            }),
        );
        // cacache
        let cac = dir.join(format!("cacache-{w}"));
        put(
            "cacache",
            "put",
            timed(nn, 5, |rep| {
                for (i, v) in prepared[rep].iter().enumerate() {
                    cacache::write_sync(&cac, format!("{w}:{rep}:{i}"), v).unwrap();
                }
            }),
        );
        put(
            "cacache",
            "get",
            timed(nn, 5, |rep| {
                for i in 0..nn {
                    std::hint::black_box(
                        cacache::read_sync(&cac, format!("{w}:{rep}:{i}")).unwrap(),
                    );
                }
            }),
        );
        put(
            "cacache",
            "get_hot",
            timed(nn, 5, |_| {
                for i in 0..nn {
                    std::hint::black_box(
                        cacache::read_sync(&cac, format!("{w}:0:{}", i % 64)).unwrap(),
                    );
                }
            }),
        );
        put(
            "cacache",
            "miss",
            timed(nn, 5, |rep| {
                for i in 0..nn {
                    std::hint::black_box(
                        cacache::read_sync(&cac, format!("nope:{rep}:{i}")).is_err(),
                    );
                }
            }),
        );
        // floors: raw file write (temp + rename) and read; raw SQLite point lookup.
        let files = dir.join(format!("files-{w}"));
        std::fs::create_dir_all(&files).unwrap();
        put(
            "floor",
            "put",
            timed(nn, 5, |rep| {
                for (i, v) in prepared[rep].iter().enumerate() {
                    let tmp = files.join(format!("{rep}-{i}.tmp"));
                    std::fs::write(&tmp, v).unwrap();
                    std::fs::rename(&tmp, files.join(format!("{rep}-{i}"))).unwrap();
                }
            }),
        );
        put(
            "floor",
            "get",
            timed(nn, 5, |rep| {
                for i in 0..nn {
                    std::hint::black_box(std::fs::read(files.join(format!("{rep}-{i}"))).unwrap());
                }
            }),
        );
        let conn = rusqlite::Connection::open(dir.join(format!("floor-{w}.sqlite"))).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;",
        )
        .unwrap();
        for i in 0..nn {
            conn.execute(
                "INSERT INTO kv VALUES (?1, ?2)",
                rusqlite::params![format!("{w}:0:{i}"), b"x"],
            )
            .unwrap();
        }
        put(
            "floor",
            "miss",
            timed(nn, 5, |rep| {
                let mut st = conn
                    .prepare_cached("SELECT v FROM kv WHERE k = ?1")
                    .unwrap();
                for i in 0..nn {
                    std::hint::black_box(
                        st.query_row([format!("nope:{rep}:{i}")], |r| r.get::<_, Vec<u8>>(0))
                            .ok(),
                    );
                }
            }),
        );
        put(
            "floor",
            "lookup",
            timed(nn, 5, |_| {
                let mut st = conn
                    .prepare_cached("SELECT v FROM kv WHERE k = ?1")
                    .unwrap();
                for i in 0..nn {
                    std::hint::black_box(
                        st.query_row([format!("{w}:0:{i}")], |r| r.get::<_, Vec<u8>>(0))
                            .unwrap(),
                    );
                }
            }),
        );
        eprintln!("measured {w}");
    }
}

fn measure_zipf(dir: &Path, ops: usize) -> BTreeMap<(String, String), f64> {
    let mut z = BTreeMap::new();
    let value = payload("odds_4k", 0);
    let root = dir.join("fc-zipf");
    {
        let fc = open(&root, 64 << 20);
        for chunk in (0..ZIPF_KEYS).collect::<Vec<_>>().chunks(5000) {
            let keys: Vec<String> = chunk.iter().map(|k| format!("odds:z{k}:1")).collect();
            let items: Vec<(&str, &[u8], Put)> = keys
                .iter()
                .map(|k| (k.as_str(), &value[..], Put::default()))
                .collect();
            fc.put_many(&items).unwrap();
        }
        z.insert(
            ("freshcache".into(), "1t".into()),
            zipf_run(&fc, 1, ops, &value),
        );
        let t = Instant::now();
        std::thread::scope(|s| {
            for seed in [2, 3] {
                let fc = fc.clone();
                let value = &value;
                s.spawn(move || zipf_run(&fc, seed, ops, value));
            }
        });
        z.insert(
            ("freshcache".into(), "2t".into()),
            2.0 * ops as f64 / t.elapsed().as_secs_f64(),
        );
    }
    let t = Instant::now();
    let children: Vec<_> = [4u64, 5]
        .iter()
        .map(|seed| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .env("FC_ZIPF_WORKER", format!("{},{seed},{ops}", root.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    z.insert(
        ("freshcache".into(), "2p".into()),
        2.0 * ops as f64 / t.elapsed().as_secs_f64(),
    );

    let cac = dir.join("cacache-zipf");
    for k in 0..ZIPF_KEYS {
        cacache::write_sync(&cac, format!("odds:z{k}:1"), &value).unwrap();
    }
    z.insert(
        ("cacache".into(), "1t".into()),
        cacache_zipf(&cac, 1, ops, &value),
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        for seed in [2, 3] {
            let (cac, value) = (&cac, &value);
            s.spawn(move || cacache_zipf(cac, seed, ops, value));
        }
    });
    z.insert(
        ("cacache".into(), "2t".into()),
        2.0 * ops as f64 / t.elapsed().as_secs_f64(),
    );
    z
}

fn diskcache(dir: &Path, n: usize) -> Option<serde_json::Value> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers-venv/bin/python");
    if !python.exists() {
        eprintln!("python-diskcache not measured: run scripts/peers-venv first");
        return None;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/diskcache_bench.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .arg(n.to_string())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "diskcache bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(spec) = std::env::var("FC_ZIPF_WORKER") {
        let p: Vec<&str> = spec.split(',').collect();
        let fc = open(Path::new(p[0]), 64 << 20);
        let rate = zipf_run(
            &fc,
            p[1].parse().unwrap(),
            p[2].parse().unwrap(),
            &payload("odds_4k", 0),
        );
        println!("{rate}");
        return;
    }
    let saved = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/compare-results.json");
    if std::env::var_os("FC_COMPARE_REPLOT").is_some() {
        // Re-render the chart from the last run's figures.
        let rows: Vec<(String, String, String, f64)> =
            serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
        let r: Results = rows
            .into_iter()
            .map(|(a, b, c, v)| ((a, b, c), v))
            .collect();
        chart(
            &r,
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/compare.png"),
        );
        return;
    }
    let n: usize = std::env::var("FC_COMPARE_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let mut r = Results::new();
    measure_store(dir.path(), n, &mut r);
    let zipf = measure_zipf(dir.path(), 20_000);
    let mut z = zipf.clone();
    if let Some(dc) = diskcache(dir.path(), n) {
        for (w, _) in WORKLOADS {
            for op in OPS {
                if let Some(v) = dc[w][op].as_f64() {
                    r.insert(("diskcache".into(), w.into(), op.into()), v);
                }
            }
        }
        for k in ["1t", "2p"] {
            if let Some(v) = dc["zipf"][k].as_f64() {
                z.insert(("diskcache".into(), k.into()), v);
            }
        }
    }
    let rows: Vec<(&String, &String, &String, f64)> =
        r.iter().map(|((a, b, c), v)| (a, b, c, *v)).collect();
    std::fs::write(&saved, serde_json::to_vec(&rows).unwrap()).unwrap();
    report(&r, &z, n);
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} µs", ns / 1e3)
    }
}

fn report(r: &Results, z: &BTreeMap<(String, String), f64>, n: usize) {
    let get = |s: &str, w: &str, op: &str| {
        r.get(&(s.to_string(), w.to_string(), op.to_string()))
            .copied()
    };
    let mut md = String::new();
    let _ = writeln!(md, "# freshcache benchmarks\n");
    let _ = writeln!(md, "Generated by `scripts/peers-venv && cargo bench --bench compare` ({n} ops per measurement, median of 5) on this project's 2-core machine, all systems in one run. Absolute times on these machines are noisy; read the ratios. Floors: `put` = raw file write + rename, `get` = raw file read, `miss` = raw SQLite point miss, `lookup` = raw SQLite point hit (WITHOUT ROWID).\n");
    let _ = writeln!(md, "freshcache `get` reads the disk tier through a handle without L1 (index lookup, decode, blake3 verify); `get_hot` repeats reads of 64 recent keys (hot map + L1, no index lookup; the cross-process `data_version` check still runs). diskcache has no verification or compression and no memory tier, so its `get_hot` is its `get`.\n");
    for (w, title) in WORKLOADS {
        let _ = writeln!(md, "## {title}\n");
        let _ = writeln!(md, "| op | freshcache | cacache | diskcache | floor | fc / floor | fc / cacache | fc / diskcache |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for op in OPS {
            let fc = get("freshcache", w, op);
            let ca = get("cacache", w, op);
            let dc = get("diskcache", w, op);
            let fl = get("floor", w, if op == "get_hot" { "get" } else { op });
            let cell = |v: Option<f64>| v.map_or("—".into(), fmt_ns);
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                _ => "—".into(),
            };
            let _ = writeln!(
                md,
                "| {op} | {} | {} | {} | {} | {} | {} | {} |",
                cell(fc),
                cell(ca),
                cell(dc),
                cell(fl),
                ratio(fc, fl),
                ratio(fc, ca),
                ratio(fc, dc)
            );
        }
        if let Some(l) = get("floor", w, "lookup") {
            let _ = writeln!(
                md,
                "\nRaw SQLite point lookup in the same run: {}.\n",
                fmt_ns(l)
            );
        }
    }
    let _ = writeln!(
        md,
        "## Zipf mix (100k keys of 4 KiB odds, s = 1.0, 90% get / 10% put)\n"
    );
    let _ = writeln!(
        md,
        "| system | 1 thread | 2 threads | 2 processes |\n|---|---|---|---|"
    );
    for sys in ["freshcache", "cacache", "diskcache"] {
        let c = |k: &str| {
            z.get(&(sys.to_string(), k.to_string()))
                .map_or("—".into(), |v| format!("{:.0} ops/s", v))
        };
        let _ = writeln!(md, "| {sys} | {} | {} | {} |", c("1t"), c("2t"), c("2p"));
    }
    let _ = writeln!(md, "\n![chart](benches/compare.png)\n");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(root.join("target/BENCHMARKS.generated.md"), &md).unwrap();
    println!("{md}");
    chart(r, &root.join("benches/compare.png"));
}

fn chart(r: &Results, path: &Path) {
    use plotters::prelude::*;
    let font = include_bytes!("assets/DejaVuSans.ttf");
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, font);
    let systems = ["freshcache", "cacache", "diskcache", "floor"];
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(150, 150, 150),
    ];
    let groups: Vec<(&str, &str)> = WORKLOADS
        .iter()
        .filter(|(w, _)| *w != "feature_1m")
        .flat_map(|(w, _)| OPS.iter().map(move |op| (*w, *op)))
        .collect();
    let root = BitMapBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let max = groups
        .iter()
        .flat_map(|(w, op)| {
            systems
                .iter()
                .filter_map(|s| r.get(&(s.to_string(), w.to_string(), op.to_string())))
        })
        .fold(1.0f64, |a, b| a.max(*b))
        / 1e3;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "µs per operation (lower is better), small payloads",
            ("sans-serif", 24),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..groups.len() as f64 - 0.5, 0f64..max * 1.05)
        .unwrap();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            let short = |w: &str| w.split('_').next().unwrap_or(w).replace("embedding", "emb");
            groups.get(i as usize).map_or(String::new(), |(w, op)| {
                format!("{} {}", short(w), op.replace("get_hot", "hot"))
            })
        })
        .x_label_style(("sans-serif", 14).into_font())
        .y_desc("µs")
        .draw()
        .unwrap();
    for (si, sys) in systems.iter().enumerate() {
        let bars = groups.iter().enumerate().filter_map(|(gi, (w, op))| {
            r.get(&(sys.to_string(), w.to_string(), op.to_string()))
                .map(|v| {
                    let x0 = gi as f64 - 0.4 + si as f64 * 0.2;
                    Rectangle::new([(x0, 0.0), (x0 + 0.18, v / 1e3)], colors[si].filled())
                })
        });
        chart
            .draw_series(bars)
            .unwrap()
            .label(*sys)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], colors[si].filled())
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .unwrap();
    root.present().unwrap();
    let _ = Duration::ZERO;
}
