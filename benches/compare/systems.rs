//! The systems the Rust worker drives: freshcache through the default
//! `Cache::builder()` handle, cacache, and the raw floors (SQLite WITHOUT
//! ROWID point lookups and misses, file reads).

use std::path::{Path, PathBuf};

use freshcache::{Cache, Put};

use crate::gen::{permutation, round_key, Kind, Payloads};
use crate::worker::{Rec, Results, Spec};

/// A cache as the workloads see it.
pub trait Sys: Sync + Sized {
    type V: AsRef<[u8]>;
    /// A fresh handle on `root`.
    fn open(root: &Path) -> Self;
    fn put(&self, key: &str, value: &[u8]);
    fn get(&self, key: &str) -> Option<Self::V>;
    /// Loading the data set (not timed): the fastest way each system offers.
    fn preload(&self, items: &[(String, Vec<u8>)]) {
        for (k, v) in items {
            self.put(k, v);
        }
    }
}

/// freshcache: root set, every other setting the default.
pub struct Fresh(Cache);

impl Sys for Fresh {
    type V = bytes::Bytes;
    fn open(root: &Path) -> Self {
        // FC_COMPARE_CONFIG: a runtime.yml for experiments (the default
        // handle otherwise, as the report says).
        let mut b = Cache::builder();
        if let Ok(path) = std::env::var("FC_COMPARE_CONFIG") {
            b = b.config(freshcache::Config::load(path).expect("FC_COMPARE_CONFIG"));
        }
        Fresh(b.root(root).open().expect("open freshcache"))
    }
    fn put(&self, key: &str, value: &[u8]) {
        self.0.put(key, value, Put::default()).expect("put");
    }
    fn get(&self, key: &str) -> Option<bytes::Bytes> {
        self.0.get(key).expect("get")
    }
    fn preload(&self, items: &[(String, Vec<u8>)]) {
        let batch: Vec<(&str, &[u8], Put)> = items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice(), Put::default()))
            .collect();
        self.0.put_many(&batch).expect("put_many");
    }
}

/// cacache 13 (sync API, integrity-checked reads).
pub struct Cacache(PathBuf);

impl Sys for Cacache {
    type V = Vec<u8>;
    fn open(root: &Path) -> Self {
        Cacache(root.to_path_buf())
    }
    fn put(&self, key: &str, value: &[u8]) {
        cacache::write_sync(&self.0, key, value).expect("cacache write");
    }
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        match cacache::read_sync(&self.0, key) {
            Ok(v) => Some(v),
            Err(cacache::Error::EntryNotFound(..)) => None,
            Err(e) => panic!("cacache read: {e}"),
        }
    }
}

fn sqlite(root: &Path) -> rusqlite::Connection {
    std::fs::create_dir_all(root).expect("floor root");
    let conn = rusqlite::Connection::open(root.join("floor.sqlite")).expect("open sqlite");
    // The pragmas freshcache uses (fsync off: synchronous NORMAL in WAL).
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS idx(k TEXT PRIMARY KEY, h BLOB) WITHOUT ROWID;",
    )
    .expect("floor schema");
    conn
}

fn insert(out: &mut Results, op: &str, r: Rec) {
    out.insert(op.into(), r.json());
}

/// The floors, measured in the same run as the systems: raw SQLite put
/// (one upsert transaction), point lookup and point miss on a WITHOUT
/// ROWID table; raw file write + rename and read; raw 1 MiB file read.
pub fn floor(s: &Spec, out: &mut Results) {
    match s.phase.as_str() {
        "small" => floor_small(s, out),
        "large" => floor_large(s, out),
        _ => {}
    }
}

fn floor_small(s: &Spec, out: &mut Results) {
    let odds = Payloads::new(Kind::Odds4k);
    let items: Vec<(String, Vec<u8>)> = (0..s.n)
        .map(|i| (round_key(s.round, "o", i), odds.value(i as u64)))
        .collect();
    let conn = sqlite(&s.dir);
    let mut r = Rec::with_capacity(s.n);
    r.start();
    {
        let mut st = conn
            .prepare_cached(
                "INSERT INTO kv VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            )
            .expect("prepare");
        for (k, v) in &items {
            r.time(|| st.execute(rusqlite::params![k, v]).expect("insert"));
        }
    }
    insert(out, "sqlite_put_4k", r);
    let conn = sqlite(&s.dir); // a fresh connection, like a fresh handle
    let mut st = conn
        .prepare_cached("SELECT v FROM kv WHERE k = ?1")
        .expect("prepare");
    let mut r = Rec::with_capacity(s.n);
    r.start();
    for i in permutation(s.n, s.seed) {
        let v: Vec<u8> = r.time(|| {
            st.query_row([&items[i].0], |row| row.get(0))
                .expect("lookup")
        });
        assert!(odds.check(&v, i as u64));
    }
    insert(out, "sqlite_get_4k", r);
    // The miss floor: a key -> 32-byte hash table (the shape of an index
    // row; a miss on the 4 KiB-row table would walk a deeper tree).
    conn.execute_batch("BEGIN").expect("begin");
    for (k, v) in &items {
        conn.execute(
            "INSERT OR REPLACE INTO idx VALUES (?1, ?2)",
            rusqlite::params![k, blake3::hash(v).as_bytes()],
        )
        .expect("insert idx");
    }
    conn.execute_batch("COMMIT").expect("commit");
    let mut st = conn
        .prepare_cached("SELECT h FROM idx WHERE k = ?1")
        .expect("prepare");
    let absent: Vec<String> = (0..s.n).map(|i| round_key(s.round, "nope", i)).collect();
    let mut r = Rec::with_capacity(s.n);
    r.start();
    for k in &absent {
        let got = r.time(|| {
            use rusqlite::OptionalExtension;
            st.query_row([k], |row| row.get::<_, Vec<u8>>(0))
                .optional()
                .expect("miss")
        });
        assert!(got.is_none());
    }
    insert(out, "sqlite_miss", r);
    let files = s.dir.join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let mut r = Rec::with_capacity(s.n);
    r.start();
    for (i, (_, v)) in items.iter().enumerate() {
        let (tmp, dest) = (files.join(format!("{i}.tmp")), files.join(i.to_string()));
        r.time(|| {
            std::fs::write(&tmp, v).expect("write");
            std::fs::rename(&tmp, &dest).expect("rename");
        });
    }
    insert(out, "file_put_4k", r);
    let mut r = Rec::with_capacity(s.n);
    r.start();
    for i in permutation(s.n, s.seed) {
        let v = r.time(|| std::fs::read(files.join(i.to_string())).expect("read"));
        assert!(odds.check(&v, i as u64));
    }
    insert(out, "file_read_4k", r);
}

fn floor_large(s: &Spec, out: &mut Results) {
    let p = Payloads::new(Kind::Json1m);
    let files = s.dir.join("large");
    std::fs::create_dir_all(&files).expect("files dir");
    for i in 0..s.m1 {
        std::fs::write(files.join(i.to_string()), p.value(i as u64)).expect("write");
    }
    let mut r = Rec::with_capacity(s.repeat);
    r.start();
    for j in 0..s.repeat {
        let i = j % s.m1;
        let v = r.time(|| std::fs::read(files.join(i.to_string())).expect("read"));
        assert!(p.check(&v, i as u64));
    }
    insert(out, "file_read_1m", r);
    let mut r = Rec::with_capacity(s.repeat);
    r.start();
    for j in 0..s.repeat {
        let v = p.value((j % s.m1) as u64);
        r.time(|| std::hint::black_box(blake3::hash(&v)));
    }
    insert(out, "blake3_1m", r);
}
