//! The hot path answers repeated gets from memory, and never serves a
//! mapping another process has changed or deleted.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{noise, open, open_with};
use freshcache::Put;

const BIN: &str = env!("CARGO_BIN_EXE_freshcache");

fn cli(root: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(b) = stdin {
        input.write_all(b).unwrap();
    }
    drop(input);
    assert!(
        child.wait().unwrap().success(),
        "freshcache {args:?} failed"
    );
}

#[test]
fn repeated_gets_are_memory_hits() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    cache.put("odds:g1:1", b"v1", Put::default()).unwrap();
    for _ in 0..5 {
        assert_eq!(&cache.get("odds:g1:1").unwrap().unwrap()[..], b"v1");
    }
    let s = cache.stats().unwrap();
    assert_eq!(s.by_class["odds"].hits.get("memory"), Some(&5));
}

#[test]
fn another_processes_put_delete_and_invalidate_are_seen_by_the_next_get() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The CLI runs on the wall clock; so does this handle.
    let cache = freshcache::Cache::open(root).unwrap();
    cache.put("news:r:1", b"old", Put::default()).unwrap();
    cache.put("news:r:2", b"two", Put::default()).unwrap();
    for _ in 0..2 {
        assert_eq!(&cache.get("news:r:1").unwrap().unwrap()[..], b"old");
        assert_eq!(&cache.get("news:r:2").unwrap().unwrap()[..], b"two");
    }
    cli(root, &["put", "news:r:1"], Some(b"new"));
    assert_eq!(
        &cache.get("news:r:1").unwrap().unwrap()[..],
        b"new",
        "overwrite seen"
    );
    cli(root, &["rm", "news:r:1"], None);
    assert_eq!(cache.get("news:r:1").unwrap(), None, "delete seen");
    cli(root, &["invalidate", "news:*"], None);
    assert_eq!(cache.get("news:r:2").unwrap(), None, "invalidate seen");
}

#[test]
fn another_handles_eviction_and_refresh_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, clock) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let (b, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    for i in 0..20 {
        a.put(&format!("k:{i}"), &noise(i, 4000), Put::default())
            .unwrap();
        clock.advance(Duration::from_millis(1));
    }
    for _ in 0..2 {
        assert!(a.get("k:0").unwrap().is_some());
    }
    let size = b.disk_bytes().unwrap();
    let r = b.evict_with(Some(size), None).unwrap(); // b has not seen a's reads: k:0 is LRU
    assert!(r.entries_removed > 0);
    assert_eq!(
        a.get("k:0").unwrap(),
        None,
        "an entry evicted elsewhere is a miss here"
    );

    a.put("news:x:1", b"body", Put::default()).unwrap();
    assert!(a.get("news:x:1").unwrap().is_some());
    // Another handle shortens the entry's life (a 304 with max-age=1).
    b.refresh("news:x:1", Some(Duration::from_secs(1)), &Put::default())
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        a.get("news:x:1").unwrap(),
        None,
        "the refreshed expiry applies here too"
    );
}

#[test]
fn a_trimmed_change_log_makes_the_map_forget_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = open(dir.path());
    let (b, _) = open(dir.path());
    a.put("k:x", b"1", Put::default()).unwrap();
    a.get("k:x").unwrap();
    a.get("k:x").unwrap();
    // b overwrites k:x, then the log is trimmed past it before a looks.
    b.put("k:x", b"2", Put::default()).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    conn.execute_batch(
        "INSERT INTO changes(key) VALUES ('other'); DELETE FROM changes WHERE key = 'k:x';",
    )
    .unwrap();
    assert_eq!(&a.get("k:x").unwrap().unwrap()[..], b"2");
}

/// Sets the root's change counter (`index.seq`, one little-endian u64).
fn set_seq(root: &std::path::Path, v: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("index.seq"))
        .unwrap();
    f.write_all_at(&v.to_le_bytes(), 0).unwrap();
}

fn seq(root: &std::path::Path) -> u64 {
    let b = std::fs::read(root.join("index.seq")).unwrap();
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

#[test]
fn a_writer_killed_between_commit_and_bump_never_makes_a_reader_serve_the_old_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    cache.put("odds:g1:1", b"v1", Put::default()).unwrap();
    cache.put("odds:g1:2", b"w", Put::default()).unwrap();
    assert_eq!(&cache.get("odds:g1:1").unwrap().unwrap()[..], b"v1"); // hot now
    let s = seq(dir.path());
    assert_eq!(s % 2, 0, "even between writes");
    // Another process begins a commit (the counter goes odd) ...
    set_seq(dir.path(), s + 1);
    // ... while this reader syncs and so has seen the odd value,
    cache.get("odds:g1:2").unwrap().unwrap();
    // ... then commits a delete of odds:g1:1 and is killed before its bump.
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         DELETE FROM entries WHERE key = 'odds:g1:1';
         INSERT INTO changes(key) VALUES ('odds:g1:1');
         COMMIT;",
    )
    .unwrap();
    drop(conn);
    assert_eq!(seq(dir.path()), s + 1, "left odd by the dead writer");
    // An odd counter is never trusted, however often it was seen.
    assert_eq!(cache.get("odds:g1:1").unwrap(), None);
    // The next writer ends it even again, and the fast path resumes.
    cache.put("odds:g1:3", b"x", Put::default()).unwrap();
    assert_eq!(seq(dir.path()) % 2, 0);
    assert_eq!(&cache.get("odds:g1:3").unwrap().unwrap()[..], b"x");
}

#[test]
fn every_write_moves_the_counter_seen_by_other_handles() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = open(dir.path());
    let (b, _) = open(dir.path());
    a.put("odds:g1:1", b"v1", Put::default()).unwrap();
    assert_eq!(&b.get("odds:g1:1").unwrap().unwrap()[..], b"v1");
    assert_eq!(&b.get("odds:g1:1").unwrap().unwrap()[..], b"v1"); // fast path
    let before = seq(dir.path());
    a.put("odds:g1:1", b"v2", Put::default()).unwrap();
    assert!(seq(dir.path()) > before);
    assert_eq!(&b.get("odds:g1:1").unwrap().unwrap()[..], b"v2");
    a.invalidate("odds:*").unwrap();
    assert_eq!(b.get("odds:g1:1").unwrap(), None);
}

#[test]
fn a_wide_invalidation_logged_once_still_reaches_every_hot_map() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = open(dir.path());
    let (b, _) = open(dir.path());
    let keys: Vec<String> = (0..600).map(|i| format!("odds:g{i}:1")).collect();
    let items: Vec<(&str, &[u8], Put)> = keys
        .iter()
        .map(|k| (k.as_str(), &b"v"[..], Put::default()))
        .collect();
    a.put_many(&items).unwrap();
    for k in &keys {
        assert!(b.get(k).unwrap().is_some()); // all hot in b
    }
    assert_eq!(a.invalidate("odds:*").unwrap(), 600); // one "*" log entry
    for k in &keys {
        assert_eq!(b.get(k).unwrap(), None, "{k} served after invalidation");
    }
}
