//! Core store benchmarks, each beside its floor measured in the same run:
//! raw file read/write, raw SQLite point lookup, and cacache.
//!
//! cargo bench --bench store [-- FILTER]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use freshcache::{Cache, Config, Put};

const KEYS: usize = 10_000;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn odds_json(game: usize, len: usize) -> Vec<u8> {
    let mut s = format!("{{\"game\":\"g{game}\",\"lines\":[");
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"book\":\"b{i}\",\"home\":{},\"away\":{},\"total\":{}.5}},",
            -100 - ((i * 7 + game) % 60) as i64,
            100 + (i * 13 + game) % 50,
            40 + (i + game) % 15
        ));
        i += 1;
    }
    s.push_str("{}]}");
    s.into_bytes()
}

fn open(root: &Path, memory: u64, inline_max: u64) -> Cache {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.memory_size.0 = memory;
    c.cache.inline_max.0 = inline_max;
    Cache::with_config(c).unwrap()
}

fn sqlite_floor(dir: &Path, n: usize, value: &[u8]) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("floor.sqlite")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE kv(key TEXT PRIMARY KEY, val BLOB) WITHOUT ROWID;",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO kv VALUES (?1, ?2)",
            rusqlite::params![format!("odds:g{i}:1"), value],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    conn
}

/// get of 4 KiB odds JSON: hot (L1), disk tier (verified, decompressed), miss.
fn get_4k(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..KEYS).map(|i| odds_json(i, 4096)).collect();
    let hot = open(&dir.path().join("fc"), 256 << 20, 64 << 10);
    for (i, v) in values.iter().enumerate() {
        hot.put(
            &format!("odds:g{i}:1"),
            v,
            Put::default().ttl(std::time::Duration::from_secs(86_400)),
        )
        .unwrap();
    }
    let cold = open(&dir.path().join("fc"), 0, 64 << 10);
    let cac = dir.path().join("cacache");
    for (i, v) in values.iter().enumerate() {
        cacache::write_sync(&cac, format!("odds:g{i}:1"), v).unwrap();
    }
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for (i, v) in values.iter().enumerate() {
        std::fs::write(files.join(i.to_string()), v).unwrap();
    }
    let conn = sqlite_floor(dir.path(), KEYS, &values[0]);

    let mut g = c.benchmark_group("get_4k");
    g.throughput(Throughput::Bytes(4096));
    let mut i = 0usize;
    let mut next = || {
        i = (i + 7919) % KEYS;
        i
    };
    g.bench_function("freshcache_hot", |b| {
        b.iter(|| black_box(hot.get(&format!("odds:g{}:1", next())).unwrap()))
    });
    g.bench_function("freshcache_disk", |b| {
        b.iter(|| black_box(cold.get(&format!("odds:g{}:1", next())).unwrap()))
    });
    g.bench_function("freshcache_miss", |b| {
        b.iter(|| black_box(cold.get(&format!("odds:x{}:1", next())).unwrap()))
    });
    g.bench_function("cacache", |b| {
        b.iter(|| black_box(cacache::read_sync(&cac, format!("odds:g{}:1", next())).unwrap()))
    });
    g.bench_function("cacache_miss", |b| {
        b.iter(|| black_box(cacache::read_sync(&cac, format!("odds:x{}:1", next())).is_err()))
    });
    g.bench_function("floor_file_read", |b| {
        b.iter(|| black_box(std::fs::read(files.join(next().to_string())).unwrap()))
    });
    g.bench_function("floor_sqlite_lookup", |b| {
        b.iter(|| {
            let mut st = conn
                .prepare_cached("SELECT val FROM kv WHERE key = ?1")
                .unwrap();
            black_box(
                st.query_row([format!("odds:g{}:1", next())], |r| r.get::<_, Vec<u8>>(0))
                    .unwrap(),
            )
        })
    });
    g.finish();
}

/// put of 4 KiB odds JSON, safe if the process is killed.
fn put_4k(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..1000).map(|i| odds_json(i, 4096)).collect();
    let cache = open(&dir.path().join("fc"), 64 << 20, 64 << 10);
    let cac = dir.path().join("cacache");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let conn = sqlite_floor(dir.path(), 0, b"");
    let mut g = c.benchmark_group("put_4k");
    g.throughput(Throughput::Bytes(4096));
    let mut n = 0usize;
    g.bench_function("freshcache", |b| {
        b.iter(|| {
            n += 1;
            cache
                .put(&format!("odds:g{n}:1"), &values[n % 1000], Put::default())
                .unwrap()
        })
    });
    g.bench_function("cacache", |b| {
        b.iter(|| {
            n += 1;
            cacache::write_sync(&cac, format!("odds:g{n}:1"), &values[n % 1000]).unwrap()
        })
    });
    g.bench_function("floor_file_write_rename", |b| {
        b.iter(|| {
            n += 1;
            let tmp = files.join(format!("{n}.tmp"));
            std::fs::write(&tmp, &values[n % 1000]).unwrap();
            std::fs::rename(&tmp, files.join(n.to_string())).unwrap();
        })
    });
    g.bench_function("floor_sqlite_insert", |b| {
        b.iter(|| {
            n += 1;
            conn.prepare_cached("INSERT OR REPLACE INTO kv VALUES (?1, ?2)")
                .unwrap()
                .execute(rusqlite::params![format!("odds:g{n}:1"), &values[n % 1000]])
                .unwrap()
        })
    });
    g.finish();
}

/// get of 1 MiB feature blobs (incompressible floats), verified.
fn get_1m(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let n = 32;
    let values: Vec<Vec<u8>> = (0..n).map(|i| noise(i as u64, 1 << 20)).collect();
    let cache = open(&dir.path().join("fc"), 0, 64 << 10);
    let cac = dir.path().join("cacache");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for (i, v) in values.iter().enumerate() {
        cache
            .put(&format!("llm:features:c{i}:d"), v, Put::default())
            .unwrap();
        cacache::write_sync(&cac, format!("llm:features:c{i}:d"), v).unwrap();
        std::fs::write(files.join(i.to_string()), v).unwrap();
    }
    let mut g = c.benchmark_group("get_1m");
    g.throughput(Throughput::Bytes(1 << 20));
    g.sample_size(30);
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % n;
        i
    };
    g.bench_function("freshcache_disk", |b| {
        b.iter(|| black_box(cache.get(&format!("llm:features:c{}:d", next())).unwrap()))
    });
    g.bench_function("cacache", |b| {
        b.iter(|| {
            black_box(cacache::read_sync(&cac, format!("llm:features:c{}:d", next())).unwrap())
        })
    });
    g.bench_function("floor_file_read", |b| {
        b.iter(|| black_box(std::fs::read(files.join(next().to_string())).unwrap()))
    });
    g.finish();
}

/// put of 1 MiB feature blobs.
fn put_1m(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..16).map(|i| noise(i as u64, 1 << 20)).collect();
    let cache = open(&dir.path().join("fc"), 0, 64 << 10);
    let cac = dir.path().join("cacache");
    let mut g = c.benchmark_group("put_1m");
    g.throughput(Throughput::Bytes(1 << 20));
    g.sample_size(20);
    let mut n = 0usize;
    g.bench_function("freshcache", |b| {
        b.iter(|| {
            n += 1;
            // New content each time: a changed first byte defeats dedup.
            let mut v = values[n % 16].clone();
            v[..8].copy_from_slice(&(n as u64).to_le_bytes());
            cache
                .put(&format!("llm:features:c{n}:d"), &v, Put::default())
                .unwrap()
        })
    });
    g.bench_function("cacache", |b| {
        b.iter(|| {
            n += 1;
            let mut v = values[n % 16].clone();
            v[..8].copy_from_slice(&(n as u64).to_le_bytes());
            cacache::write_sync(&cac, format!("llm:features:c{n}:d"), &v).unwrap()
        })
    });
    g.finish();
}

/// Where should blobs stop being inline? get of incompressible values of
/// several sizes stored inline (in SQLite) versus as files.
fn inline_threshold(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [4usize << 10, 16 << 10, 64 << 10, 256 << 10];
    let inline = open(&dir.path().join("inline"), 0, 1 << 30);
    let filed = open(&dir.path().join("files"), 0, 0);
    for (j, &size) in sizes.iter().enumerate() {
        for i in 0..64 {
            let v = noise((j * 1000 + i) as u64, size);
            inline
                .put(&format!("k:{size}:{i}"), &v, Put::default())
                .unwrap();
            filed
                .put(&format!("k:{size}:{i}"), &v, Put::default())
                .unwrap();
        }
    }
    let mut g = c.benchmark_group("inline_vs_file_get");
    for size in sizes {
        g.throughput(Throughput::Bytes(size as u64));
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("inline", size), &size, |b, &size| {
            b.iter(|| {
                i = (i + 1) % 64;
                black_box(inline.get(&format!("k:{size}:{i}")).unwrap())
            })
        });
        g.bench_with_input(BenchmarkId::new("file", size), &size, |b, &size| {
            b.iter(|| {
                i = (i + 1) % 64;
                black_box(filed.get(&format!("k:{size}:{i}")).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    get_4k,
    put_4k,
    get_1m,
    put_1m,
    inline_threshold,
    hot_tier
);
criterion_main!(benches);

/// Should the sled hot tier be on by default? A get after a restart (empty
/// L1) of 4 KiB odds JSON: from the disk tier vs from the sled tier.
fn hot_tier(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..1000).map(|i| odds_json(i, 4096)).collect();
    let open_tier = |root: &Path, tier: bool| {
        let mut c = Config::default();
        c.cache.root = root.to_path_buf();
        c.cache.memory_size.0 = 0; // every get misses L1, as after a restart
        c.cache.hot_tier = tier;
        Cache::with_config(c).unwrap()
    };
    let root = dir.path().join("fc");
    {
        let w = open_tier(&root, true);
        for (i, v) in values.iter().enumerate() {
            w.put(
                &format!("odds:g{i}:1"),
                v,
                Put::default().ttl(std::time::Duration::from_secs(86_400)),
            )
            .unwrap();
        }
        for i in 0..values.len() {
            w.get(&format!("odds:g{i}:1")).unwrap(); // fills the tier
        }
    }
    let mut g = c.benchmark_group("hot_tier_get_4k");
    let mut i = 0usize;
    let tiered = open_tier(&root, true);
    assert!(tiered.hot_tier_active());
    g.bench_function("sled_tier", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            black_box(tiered.get(&format!("odds:g{i}:1")).unwrap())
        })
    });
    drop(tiered);
    let plain = open_tier(&root, false);
    g.bench_function("disk_tier", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            black_box(plain.get(&format!("odds:g{i}:1")).unwrap())
        })
    });
    g.finish();
}
