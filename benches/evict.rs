//! Eviction and open time at scale (issue 6): a 1M-entry cache, evicting
//! 100k entries, and opening it. Floors in the same run: a raw SQLite bulk
//! delete of the same 100k rows, and a raw SQLite open + first query.
//!
//! cargo bench --bench evict            (FC_BENCH_ENTRIES=1000000 by default)

use std::path::Path;
use std::time::{Duration, Instant};

use freshcache::{Cache, Config, ManualClock, Put};

fn open(root: &Path, clock: &ManualClock) -> Cache {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    Cache::builder()
        .config(c)
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches`
    }
    let n: usize = std::env::var("FC_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let evict_n = n / 10;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let clock = ManualClock::new(1_800_000_000_000);
    let t = Instant::now();
    {
        let cache = open(&base, &clock);
        let batch = 10_000;
        for start in (0..n).step_by(batch) {
            let values: Vec<(String, Vec<u8>)> = (start..(start + batch).min(n))
                .map(|i| {
                    (
                        format!("odds:g{}:{i}", i % 5000),
                        format!("{{\"i\":{i},\"home\":-110,\"away\":100,\"total\":47.5}}")
                            .into_bytes(),
                    )
                })
                .collect();
            let items: Vec<(&str, &[u8], Put)> = values
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        v.as_slice(),
                        Put::default().ttl(Duration::from_secs(86_400)),
                    )
                })
                .collect();
            cache.put_many(&items).unwrap();
            clock.advance(Duration::from_millis(1));
        }
    }
    println!("built {n} entries in {:.1} s", t.elapsed().as_secs_f64());

    // Open time.
    let mut opens = Vec::new();
    let mut raw_opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let c = open(&base, &clock);
        let _ = c.stat("odds:g1:1").unwrap();
        opens.push(t.elapsed());
        drop(c);
        let t = Instant::now();
        let conn = rusqlite::Connection::open(base.join("index.sqlite")).unwrap();
        let _: Option<i64> = conn
            .query_row(
                "SELECT hits FROM entries WHERE key = 'odds:g1:1'",
                [],
                |r| r.get(0),
            )
            .ok();
        raw_opens.push(t.elapsed());
    }
    let (open_t, raw_open_t) = (median(opens), median(raw_opens));

    // Eviction of 10% (the LRU end), three runs on fresh copies.
    let mut evicts = Vec::new();
    let mut floors = Vec::new();
    let mut removed = 0;
    for run in 0..3 {
        let root = dir.path().join(format!("run{run}"));
        copy_dir(&base, &root);
        let cache = open(&root, &clock);
        let entries = cache.stats().unwrap().entries;
        let size = cache.disk_bytes().unwrap();
        // Entries are equal-sized here: 90% of the bytes is 90% of the entries.
        let t = Instant::now();
        let r = cache.evict_to_bytes(size / 10 * 9).unwrap();
        evicts.push(t.elapsed());
        removed = r.entries_removed;
        assert!(entries > 0 && r.entries_removed > 0);
        drop(cache);

        let root = dir.path().join(format!("floor{run}"));
        copy_dir(&base, &root);
        let conn = rusqlite::Connection::open(root.join("index.sqlite")).unwrap();
        let t = Instant::now();
        conn.execute(
            "DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY last_access LIMIT ?1)",
            [removed as i64],
        )
        .unwrap();
        floors.push(t.elapsed());
    }
    let (evict_t, floor_t) = (median(evicts), median(floors));
    println!("open of a {n}-entry cache: {:.2} ms (raw SQLite open + lookup {:.2} ms, ratio {:.1}x); goal < 50 ms",
        open_t.as_secs_f64() * 1e3, raw_open_t.as_secs_f64() * 1e3, open_t.as_secs_f64() / raw_open_t.as_secs_f64());
    println!("evict {removed} of {n} entries (target {evict_n}): {:.2} s (raw SQLite bulk delete of the same rows {:.2} s, ratio {:.1}x); goal < 2 s",
        evict_t.as_secs_f64(), floor_t.as_secs_f64(), evict_t.as_secs_f64() / floor_t.as_secs_f64());
}
