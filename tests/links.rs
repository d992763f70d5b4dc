//! Nothing in the root is followed out of it: a symlinked `blobs-v1`, shard
//! directory or blob file never leads a read, gc or repair to a file
//! outside; a symlinked blob is corrupt (quarantined, counted, `verify`
//! exit 4, `--repair` removes it), not an error nothing can clear.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use freshcache::{Cache, Config, Put};

fn config(root: &Path) -> Config {
    let mut c = Config::default();
    c.cache.root = root.to_path_buf();
    c.cache.inline_max.0 = 1024;
    c
}

fn cli(root: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_freshcache"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A root with one file blob under `key`; returns the blob's path.
fn one_file_blob(root: &Path, key: &str, value: &[u8]) -> PathBuf {
    let cache = Cache::with_config(config(root)).unwrap();
    let stored = cache.put(key, value, Put::default()).unwrap();
    let hex = stored.hash.to_hex();
    root.join("blobs-v1").join(&hex[..2]).join(&hex[2..])
}

#[test]
fn gc_never_follows_a_symlinked_blob_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    let blob = one_file_blob(&root, "news:a:1", &common::noise(1, 5000));
    // The same layout outside the root, with an "orphan" no row names.
    let victim_dir = outside.join("ab");
    std::fs::create_dir_all(&victim_dir).unwrap();
    let victim = victim_dir.join("c".repeat(62));
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::rename(root.join("blobs-v1"), dir.path().join("moved")).unwrap();
    symlink(&outside, root.join("blobs-v1")).unwrap();

    let (code, out) = cli(&root, &["gc", "--grace", "0s"]);
    assert_ne!(code, 0, "a symlinked blobs-v1 is refused: {out}");
    assert_eq!(code, 6, "a storage error: {out}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "nothing outside was deleted"
    );
    drop(blob);
}

#[test]
fn a_symlinked_shard_is_neither_read_nor_collected_through() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let value = common::noise(2, 5000);
    let blob = one_file_blob(&root, "news:a:2", &value);
    let shard = blob.parent().unwrap().to_path_buf();
    let outside = dir.path().join("outside-shard");
    std::fs::rename(&shard, &outside).unwrap();
    symlink(&outside, &shard).unwrap();
    // An orphan-looking file next to it, outside the root.
    let stray = outside.join("d".repeat(62));
    std::fs::write(&stray, b"precious").unwrap();

    let (code, out) = cli(&root, &["gc", "--grace", "0s"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(&stray).unwrap(),
        b"precious",
        "gc did not follow the shard link"
    );

    let (code, out) = cli(&root, &["verify", "--json"]);
    assert_eq!(code, 4, "a blob behind a symlinked shard is corrupt: {out}");
    assert!(out.contains("corrupt_blob"), "{out}");

    let cache = Cache::with_config(config(&root)).unwrap();
    assert_eq!(
        cache.get("news:a:2").unwrap(),
        None,
        "never served through the link"
    );
    assert_eq!(cache.stats().unwrap().corrupt_blobs, 1, "counted");
    drop(cache);
    let (code, out) = cli(&root, &["verify"]);
    assert_eq!(code, 0, "quarantined: the root is clean again: {out}");
    assert!(
        outside.join(blob.file_name().unwrap()).exists(),
        "the outside file is untouched"
    );
}

#[test]
fn a_symlinked_blob_is_corrupt_and_repair_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let value = common::noise(3, 5000);
    let blob = one_file_blob(&root, "news:a:3", &value);
    // The very same bytes, outside, behind a link: still not followed.
    let outside = dir.path().join("outside-blob");
    std::fs::rename(&blob, &outside).unwrap();
    symlink(&outside, &blob).unwrap();

    let (code, out) = cli(&root, &["get", "news:a:3"]);
    assert_eq!(
        code, 1,
        "a quarantined blob is a miss, not an ELOOP error: {out}"
    );
    // Again with verify on a fresh link.
    let cache = Cache::with_config(config(&root)).unwrap();
    cache.put("news:a:3", &value, Put::default()).unwrap();
    drop(cache);
    std::fs::remove_file(&blob).unwrap();
    symlink(&outside, &blob).unwrap();
    let (code, out) = cli(&root, &["verify"]);
    assert_eq!(code, 4, "{out}");
    let (code, out) = cli(&root, &["verify", "--repair"]);
    assert_eq!(code, 4, "repair reports what it removed: {out}");
    assert!(out.contains("news:a:3"), "{out}");
    let (code, out) = cli(&root, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        std::fs::symlink_metadata(&blob).is_err(),
        "the link is gone from blobs-v1"
    );
    assert_eq!(
        std::fs::read(&outside).unwrap(),
        value,
        "its target is untouched"
    );
}

/// A change counter that cannot be mapped (here a link out of the root, or
/// a directory in its place) refuses the open with an I/O error (exit 6):
/// a process writing without moving the counter would let other processes
/// keep serving a mapping it changed.
#[test]
fn a_counter_that_cannot_be_mapped_refuses_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    one_file_blob(&root, "odds:g:1", &common::noise(1, 4000));
    let seq = root.join("index.seq");
    std::fs::remove_file(&seq).unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"").unwrap();
    symlink(&outside, &seq).unwrap();
    let err = Cache::with_config(config(&root)).unwrap_err();
    assert!(err.to_string().contains("I/O"), "{err}");
    assert_eq!(
        std::fs::metadata(&outside).unwrap().len(),
        0,
        "not followed"
    );
    let (code, out) = cli(&root, &["get", "odds:g:1"]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("index.seq"), "{out}");

    std::fs::remove_file(&seq).unwrap();
    std::fs::create_dir(&seq).unwrap();
    assert!(Cache::with_config(config(&root)).is_err());
    std::fs::remove_dir(&seq).unwrap();
    // Once the counter can be had again, the root opens as it was.
    let cache = Cache::with_config(config(&root)).unwrap();
    assert!(cache.get("odds:g:1").unwrap().is_some());
}

/// A `reserve` directory replaced by a link out of the root is never
/// written or unlinked through: no chunk appears outside, and files there
/// named like chunks survive.
#[test]
fn a_symlinked_reserve_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    one_file_blob(&root, "odds:g:1", &common::noise(1, 4000));
    let reserve = root.join("reserve");
    std::fs::remove_dir_all(&reserve).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for i in 0..8 {
        std::fs::write(outside.join(i.to_string()), b"keep me").unwrap();
    }
    symlink(&outside, &reserve).unwrap();
    let cache = Cache::with_config(config(&root)).unwrap();
    cache.put("odds:g:2", b"v", Put::default()).unwrap();
    assert!(cache.delete("odds:g:1").unwrap());
    drop(cache);
    let mut names: Vec<String> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, (0..8).map(|i| i.to_string()).collect::<Vec<_>>());
    for i in 0..8 {
        assert_eq!(
            std::fs::read(outside.join(i.to_string())).unwrap(),
            b"keep me"
        );
    }
}

/// A `tmp` directory replaced by a link out of the root: gc removes no
/// file there, however old (temp files older than 15 minutes are
/// collected in the root's own `tmp`).
#[test]
fn gc_never_follows_a_symlinked_tmp_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    one_file_blob(&root, "odds:g:1", &common::noise(1, 4000));
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let victim = outside.join("important");
    std::fs::write(&victim, b"keep me").unwrap();
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(day_ago)
        .unwrap();
    // Swapped under a handle that is already open (a long-running daemon);
    // a new open refuses such a root outright.
    let cache = Cache::with_config(config(&root)).unwrap();
    let tmp = root.join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    symlink(&outside, &tmp).unwrap();
    let r = cache
        .gc_with(Some(std::time::Duration::ZERO), None)
        .unwrap();
    assert_eq!(r.temp_files_removed, 0);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"keep me",
        "gc followed tmp"
    );
    let (code, out) = cli(&root, &["gc", "--grace", "0s"]);
    assert_eq!(code, 6, "a new process refuses the linked tmp: {out}");
    drop(cache);

    // The same old file in the root's own tmp is collected.
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    let own = tmp.join("abandoned");
    std::fs::write(&own, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&own)
        .unwrap()
        .set_modified(day_ago)
        .unwrap();
    let (code, out) = cli(&root, &["gc", "--grace", "0s"]);
    assert_eq!(code, 0, "{out}");
    assert!(!own.exists(), "an abandoned temp file is collected");
}

/// An index that is a link out of the root is refused, never opened.
#[test]
fn a_symlinked_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    one_file_blob(&root, "odds:g:1", &common::noise(1, 4000));
    let index = root.join("index.sqlite");
    let outside = dir.path().join("elsewhere.sqlite");
    std::fs::rename(&index, &outside).unwrap();
    symlink(&outside, &index).unwrap();
    let before = std::fs::read(&outside).unwrap();
    assert!(Cache::with_config(config(&root)).is_err());
    let (code, out) = cli(&root, &["get", "odds:g:1"]);
    assert_eq!(code, 6, "{out}");
    assert_eq!(
        std::fs::read(&outside).unwrap(),
        before,
        "not written through"
    );
}
