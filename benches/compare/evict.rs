//! Evicting 10% of a large cache (freshcache only; diskcache's culling is
//! not comparable), with its floor in the same process: a raw SQLite bulk
//! delete of the same number of rows, oldest first.

use std::path::Path;
use std::time::{Duration, Instant};

use freshcache::{Cache, ManualClock, Put};
use serde_json::json;

use crate::worker::{Results, Spec};

fn open(root: &Path, clock: &ManualClock) -> Cache {
    Cache::builder()
        .root(root)
        .clock(clock.clone())
        .open()
        .expect("open freshcache")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy target");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

pub fn run(s: &Spec, out: &mut Results) {
    let base = s.dir.join("base");
    let clock = ManualClock::new(1_800_000_000_000);
    let t = Instant::now();
    {
        let cache = open(&base, &clock);
        for start in (0..s.entries).step_by(10_000) {
            let values: Vec<(String, Vec<u8>)> = (start..(start + 10_000).min(s.entries))
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
            cache.put_many(&items).expect("put_many");
            clock.advance(Duration::from_millis(1));
        }
    }
    let build = t.elapsed().as_secs_f64();
    let (mut evicts, mut floors, mut removed) = (Vec::new(), Vec::new(), 0u64);
    for run in 0..s.evict_runs.max(1) {
        let root = s.dir.join(format!("run{run}"));
        copy_dir(&base, &root);
        let cache = open(&root, &clock);
        let size = cache.disk_bytes().expect("disk bytes");
        // Entries are equal-sized: 90% of the bytes is 90% of the entries.
        let t = Instant::now();
        let r = cache.evict_to_bytes(size / 10 * 9).expect("evict");
        evicts.push(t.elapsed().as_nanos() as u64);
        removed = r.entries_removed as u64;
        assert!(removed > 0);
        drop(cache);
        std::fs::remove_dir_all(&root).expect("clean up");

        let root = s.dir.join(format!("floor{run}"));
        copy_dir(&base, &root);
        let conn = rusqlite::Connection::open(root.join("index.sqlite")).expect("open");
        let t = Instant::now();
        conn.execute(
            "DELETE FROM entries WHERE key IN \
             (SELECT key FROM entries ORDER BY last_access LIMIT ?1)",
            [removed as i64],
        )
        .expect("floor delete");
        floors.push(t.elapsed().as_nanos() as u64);
        drop(conn);
        std::fs::remove_dir_all(&root).expect("clean up");
    }
    let rec = |v: &Vec<u64>| json!({"ops": v.len(), "secs": 0.0, "t0": 0, "t1": 0, "threads": [], "samples": v});
    out.insert("evict".into(), rec(&evicts));
    out.insert("sqlite_bulk_delete".into(), rec(&floors));
    out.insert(
        "evict_info".into(),
        json!({"entries": s.entries, "removed": removed, "build_secs": build}),
    );
}
