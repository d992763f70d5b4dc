//! The core store's integrity: corruption is never returned, bad input is
//! refused and stores nothing, the root's security properties.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{blob_files, noise, odds_json, open, open_with};
use freshcache::{Cache, Error, Put};

fn flip_a_byte(path: &std::path::Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_blob_file_with_one_flipped_bit_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let v = noise(4, 10_000);
    cache.put("k:a", &v, Put::default()).unwrap();
    cache.put("k:b", &v, Put::default()).unwrap();
    // A fresh handle has an empty L1, so the read goes to disk.
    let (cache2, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    flip_a_byte(&blob_files(dir.path())[0], 5000);
    assert_eq!(cache2.get("k:a").unwrap(), None);
    assert_eq!(
        cache2.get("k:b").unwrap(),
        None,
        "every entry of the blob becomes a miss"
    );
    assert_eq!(cache2.stats().unwrap().corrupt_blobs, 1);
    assert_eq!(blob_files(dir.path()).len(), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("quarantine"))
            .unwrap()
            .count(),
        1
    );
    drop(cache);
    // A new put of the same content heals.
    cache2.put("k:a", &v, Put::default()).unwrap();
    assert_eq!(cache2.get("k:a").unwrap().unwrap(), v);
}

#[test]
fn a_truncated_blob_file_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    cache
        .put("k:a", &odds_json(1, 100_000), Put::default())
        .unwrap();
    let (cache2, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let f = &blob_files(dir.path())[0];
    let len = std::fs::metadata(f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_eq!(cache2.get("k:a").unwrap(), None);
    assert_eq!(cache2.stats().unwrap().corrupt_blobs, 1);
    drop(cache);
}

#[test]
fn a_corrupt_inline_blob_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    cache.put("k:a", &noise(5, 2000), Put::default()).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    conn.execute("UPDATE blobs SET data = zeroblob(2000)", [])
        .unwrap();
    drop(conn);
    let (cache2, _) = open(dir.path());
    assert_eq!(cache2.get("k:a").unwrap(), None);
    assert_eq!(cache2.stats().unwrap().corrupt_blobs, 1);
    drop(cache);
}

/// Writes `v` as the index's schema version (an older or newer root).
fn set_schema_version(root: &std::path::Path, v: i64) {
    let conn = rusqlite::Connection::open(root.join("index.sqlite")).unwrap();
    conn.pragma_update(None, "user_version", v).unwrap();
}

/// (key, codec, inline) of every entry, from the index.
fn codecs(root: &std::path::Path) -> Vec<(String, i64, bool)> {
    let conn = rusqlite::Connection::open(root.join("index.sqlite")).unwrap();
    let mut st = conn
        .prepare(
            "SELECT e.key, b.codec, b.data IS NOT NULL FROM entries e \
             JOIN blobs b ON b.id = e.blob_id ORDER BY e.key",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn small_values_are_lz4_inline_large_ones_lz4_files_and_older_roots_still_read() {
    use freshcache::config::BlobCodec;
    let dir = tempfile::tempdir().unwrap();
    let old = odds_json(1, 4096);
    {
        // A root as freshcache wrote it before LZ4: zstd inline, schema v4.
        let (cache, _) = open_with(dir.path(), |c| c.cache.inline_codec = BlobCodec::Zstd);
        cache.put("k:old", &old, Put::default()).unwrap();
    }
    set_schema_version(dir.path(), 4);
    // Hex digits of noise: zstd halves them, still far above inline_max.
    let big: Vec<u8> = noise(3, 1 << 19)
        .iter()
        .flat_map(|b| {
            [
                b"0123456789abcdef"[usize::from(b >> 4)],
                b"0123456789abcdef"[usize::from(b & 15)],
            ]
        })
        .collect();
    let (small, raw, file) = (odds_json(2, 4096), noise(9, 6144), odds_json(3, 400_000));
    // A feature vector of 128k f32s: neither codec shrinks it by 1/8, which
    // a sample tells before any whole-value attempt; stored raw.
    let floats: Vec<u8> = (0..131_072)
        .flat_map(|i| ((i as f32 * 0.37).sin() * 3.1).to_le_bytes())
        .collect();
    {
        let (cache, _) = open(dir.path());
        cache.put("k:small", &small, Put::default()).unwrap();
        cache.put("k:big", &big, Put::default()).unwrap();
        cache.put("k:raw", &raw, Put::default()).unwrap();
        cache.put("k:file", &file, Put::default()).unwrap();
        cache.put("k:floats", &floats, Put::default()).unwrap();
    }
    let (cache, _) = open(dir.path());
    for (k, v) in [
        ("k:old", &old),
        ("k:small", &small),
        ("k:big", &big),
        ("k:raw", &raw),
        ("k:file", &file),
        ("k:floats", &floats),
    ] {
        assert_eq!(cache.get(k).unwrap().as_deref(), Some(&v[..]), "{k}");
    }
    assert_eq!(
        codecs(dir.path()),
        [
            // Hex LZ4 cannot shrink: offered to zstd, which halves it.
            ("k:big".to_string(), 1, false),
            ("k:file".to_string(), 3, false),
            ("k:floats".to_string(), 0, false),
            ("k:old".to_string(), 1, true),
            ("k:raw".to_string(), 0, true),
            ("k:small".to_string(), 2, true),
        ]
    );
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        v, 6,
        "migrated: a freshcache that knows no LZ4 files refuses the root"
    );
    let report = cache.verify(false, None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.blobs_checked, 6);
}

#[test]
fn a_lost_file_put_back_by_a_writer_with_another_encoding_reads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let v = odds_json(5, 200_000);
    {
        let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
        cache.put("k:a", &v, Put::default()).unwrap();
    }
    let files = blob_files(dir.path());
    let first = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::remove_file(&files[0]).unwrap();
    {
        // Another codec: another encoding of the same content.
        let (cache, _) = open_with(dir.path(), |c| {
            c.cache.inline_max.0 = 1024;
            c.cache.file_codec = freshcache::config::BlobCodec::Zstd;
        });
        cache.put("k:b", &v, Put::default()).unwrap();
    }
    assert_ne!(std::fs::metadata(&files[0]).unwrap().len(), first);
    let (cache, _) = open(dir.path());
    for k in ["k:a", "k:b"] {
        assert_eq!(cache.get(k).unwrap().as_deref(), Some(&v[..]), "{k}");
    }
    let report = cache.verify(false, None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(cache.stats().unwrap().corrupt_blobs, 0);
}

#[test]
fn a_file_left_at_another_length_is_put_back_by_the_next_writer() {
    // A writer put a lost file back with its own encoding, then its
    // transaction failed: the row still names the first length.
    let dir = tempfile::tempdir().unwrap();
    let v = odds_json(6, 200_000);
    let small = |c: &mut freshcache::Config| c.cache.inline_max.0 = 1024;
    {
        let (cache, _) = open_with(dir.path(), small);
        cache.put("k:a", &v, Put::default()).unwrap();
    }
    let file = &blob_files(dir.path())[0];
    let first = std::fs::metadata(file).unwrap().len();
    std::fs::write(file, zstd::bulk::compress(&v, 19).unwrap()).unwrap();
    assert_ne!(std::fs::metadata(file).unwrap().len(), first);
    {
        let (cache, _) = open_with(dir.path(), small);
        cache.put("k:b", &v, Put::default()).unwrap();
    }
    let (cache, _) = open(dir.path());
    for k in ["k:a", "k:b"] {
        assert_eq!(cache.get(k).unwrap().as_deref(), Some(&v[..]), "{k}");
    }
    assert_eq!(cache.stats().unwrap().corrupt_blobs, 0);
    let report = cache.verify(false, None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn recover_refuses_an_index_from_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (cache, _) = open(dir.path());
        cache
            .put("k:a", &odds_json(7, 4096), Put::default())
            .unwrap();
    }
    set_schema_version(dir.path(), 99);
    let mut config = freshcache::Config::default();
    config.cache.root = dir.path().to_path_buf();
    let err = Cache::recover(&config).unwrap_err();
    assert!(
        matches!(err, Error::SchemaVersion { found: 99, .. }),
        "{err:?}"
    );
    // Nothing was rebuilt: the newer index is still there, untouched.
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_damaged_lz4_blob_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    cache
        .put("k:a", &odds_json(4, 4096), Put::default())
        .unwrap();
    assert_eq!(codecs(dir.path())[0].1, 2);
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    let mut data: Vec<u8> = conn
        .query_row("SELECT data FROM blobs", [], |r| r.get(0))
        .unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x5a;
    conn.execute("UPDATE blobs SET data = ?1", [&data]).unwrap();
    drop(conn);
    let (cache2, _) = open(dir.path());
    assert_eq!(cache2.get("k:a").unwrap(), None);
    assert_eq!(cache2.stats().unwrap().corrupt_blobs, 1);
    drop(cache);
}

#[test]
fn invalid_keys_are_rejected_with_the_rule_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    let long = "k".repeat(10_000);
    for (key, rule) in [
        ("", "empty"),
        ("a\0b", "control"),
        ("a\tb", "control"),
        (long.as_str(), "512"),
        ("a::b", "empty segment"),
        ("a:*", "reserved"),
    ] {
        let err = cache.put(key, b"v", Put::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{key:?}");
        assert!(err.to_string().contains(rule), "{key:?}: {err}");
        assert!(matches!(cache.get(key), Err(Error::InvalidKey { .. })));
    }
    assert_eq!(cache.stats().unwrap().entries, 0);
}

#[test]
fn malformed_patterns_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path());
    for p in ["", "a::*", "news:**"] {
        assert!(
            matches!(cache.invalidate(p), Err(Error::InvalidPattern { .. })),
            "{p:?}"
        );
        assert!(
            matches!(cache.list(Some(p)), Err(Error::InvalidPattern { .. })),
            "{p:?}"
        );
    }
}

#[test]
fn value_larger_than_the_maximum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.max_value_size.0 = 1000);
    let err = cache.put("k:1", &[0u8; 1001], Put::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                size: 1001,
                max: 1000
            }
        ),
        "{err}"
    );
    assert!(cache.put("k:1", &[0u8; 1000], Put::default()).is_ok());
}

#[test]
fn an_index_file_that_is_not_sqlite_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.sqlite"),
        b"this is not a database, just text ".repeat(200),
    )
    .unwrap();
    let err = Cache::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Index { .. }), "{err:?}");
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains("index.sqlite") && chain.contains("not a database"),
        "{chain}"
    );
}

#[test]
fn an_index_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Cache::open(dir.path()).unwrap());
    set_schema_version(dir.path(), 99);
    assert!(matches!(
        Cache::open(dir.path()),
        Err(Error::SchemaVersion { found: 99, .. })
    ));
}

#[test]
fn root_is_private_and_files_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (cache, _) = open_with(&root, |c| c.cache.inline_max.0 = 100);
    cache.put("k:1", &noise(1, 5000), Put::default()).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("index.sqlite")), 0o600);
    assert_eq!(mode(&blob_files(&root)[0]), 0o600);
}

#[test]
fn a_loose_root_is_tightened_and_a_foreign_root_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    drop(Cache::open(&root).unwrap());
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700
    );

    if rustix::process::geteuid().is_root() {
        let foreign = dir.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        let err = Cache::open(&foreign).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InsecureRoot {
                    reason: "owned by another user",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn a_root_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    assert!(matches!(Cache::open(&f), Err(Error::InsecureRoot { .. })));
}

#[test]
fn a_row_claiming_a_huge_size_is_corrupt_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    cache
        .put("k:inline", &odds_json(1, 800), Put::default())
        .unwrap();
    cache
        .put("k:file", &noise(1, 50_000), Put::default())
        .unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    conn.execute("UPDATE blobs SET size = 1 << 45, stored_size = 1 << 44", [])
        .unwrap();
    drop(conn);
    let (fresh, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    assert_eq!(fresh.get("k:inline").unwrap(), None);
    assert_eq!(fresh.get("k:file").unwrap(), None);
    assert_eq!(fresh.stats().unwrap().corrupt_blobs, 2);
    drop(cache);
}

#[test]
fn a_stray_file_at_a_new_blobs_path_is_rewritten_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    let v = odds_json(7, 50_000);
    // Another process's encoding (or garbage) already sits at the path, with no row.
    let hex = freshcache::Digest::of(&v).to_hex();
    let shard = dir.path().join("blobs-v1").join(&hex[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(
        shard.join(&hex[2..]),
        b"a different encoding of the same content",
    )
    .unwrap();
    cache.put("k:1", &v, Put::default()).unwrap();
    let (fresh, _) = open_with(dir.path(), |c| c.cache.inline_max.0 = 1024);
    assert_eq!(fresh.get("k:1").unwrap().unwrap(), v);
    assert!(fresh.verify(false, None).unwrap().is_clean());
}
