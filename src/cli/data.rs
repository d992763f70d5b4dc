//! Data commands: `put`, `get`, `stat`, `rm`, `ls`, `invalidate`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use freshcache::{Cache, Meta, Put};

use super::output::{note, outln, print_json, print_meta_table, time, Stdout};
use super::{parse_dur, parse_http_date, Status};

/// Arguments of `freshcache put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// Key to store under, e.g. `odds:g123:1700000000` (`:`-separated segments).
    pub key: String,
    /// File to read the value from; stdin when `-` or absent.
    pub file: Option<PathBuf>,
    /// Class to store under (default: the class whose prefix matches the key).
    #[arg(long)]
    pub class: Option<String>,
    /// TTL such as 90s, 5m, 1h, 7d (overrides the class TTL; at most 100 years).
    #[arg(long, value_parser = parse_dur)]
    pub ttl: Option<Duration>,
    /// ETag to remember for conditional requests, e.g. '"v1"'.
    #[arg(long)]
    pub etag: Option<String>,
    /// Last-Modified HTTP date to remember, e.g. 'Sun, 06 Nov 1994 08:49:37 GMT'.
    #[arg(long, value_parser = parse_http_date)]
    pub last_modified: Option<String>,
    /// Print the stored entry's metadata as JSON (the shape of `stat --json`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freshcache get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Key to read.
    pub key: String,
    /// Write the value to FILE instead of stdout.
    #[arg(short, long, conflicts_with = "json")]
    pub output: Option<PathBuf>,
    /// Return an expired entry too (its staleness is reported on stderr).
    #[arg(long)]
    pub allow_stale: bool,
    /// Print the entry as JSON: the fields of `stat --json` plus `encoding`
    /// (`utf8` or `base64`) and `value`.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freshcache stat`.
#[derive(Args, Debug)]
pub struct StatArgs {
    /// Key whose metadata to show.
    pub key: String,
    /// Print the metadata as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freshcache rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Key to remove.
    pub key: String,
    /// Print `{"key": KEY, "removed": true|false}`.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freshcache ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Pattern such as `news:reuters:*` or `odds:*:2026-11-21` (all keys without one).
    pub pattern: Option<String>,
    /// Print a JSON array of entries (the shape of `stat --json`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freshcache invalidate`.
#[derive(Args, Debug)]
pub struct InvalidateArgs {
    /// Pattern of the keys to remove, e.g. `news:reuters:*`.
    pub pattern: String,
    /// Print `{"pattern": PATTERN, "removed": N}`.
    #[arg(long)]
    pub json: bool,
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    Ok(buf)
}

/// `freshcache put KEY [FILE|-]`.
pub fn put(cache: &Cache, a: PutArgs) -> anyhow::Result<Status> {
    let bytes = match a.file.as_deref() {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
    };
    let opts = Put {
        class: a.class,
        ttl: a.ttl,
        etag: a.etag,
        last_modified: a.last_modified,
        headers: None,
    };
    let key = a.key;
    let s = cache.put(&key, &bytes, opts)?;
    if a.json {
        print_json(&cache.stat(&key)?)?;
    } else {
        outln!(
            "stored {key}: {} bytes ({} on disk{}), class {}, expires {}",
            s.size,
            s.stored_size,
            if s.deduplicated { ", deduplicated" } else { "" },
            s.class,
            time(s.expires_at)
        )?;
    }
    Ok(Status::Ok)
}

/// The JSON of `get --json`: the entry's metadata with its value.
fn entry_json(meta: Option<Meta>, key: &str, value: &[u8]) -> anyhow::Result<serde_json::Value> {
    let mut v = match meta {
        Some(m) => serde_json::to_value(m)?,
        None => serde_json::json!({ "key": key }),
    };
    let (encoding, text) = match std::str::from_utf8(value) {
        Ok(s) => ("utf8", s.to_string()),
        Err(_) => ("base64", base64(value)),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("encoding".into(), encoding.into());
        obj.insert("value".into(), text.into());
    }
    Ok(v)
}

/// The metadata that describes `value` (re-read if a concurrent writer
/// replaced the entry between the read of the value and of its metadata).
fn meta_of(cache: &Cache, key: &str, value: &[u8]) -> anyhow::Result<Option<Meta>> {
    let hash = blake3::hash(value).to_hex();
    let mut meta = cache.stat(key)?;
    for _ in 0..3 {
        match &meta {
            Some(m) if m.hash.to_hex().as_str() != hash.as_str() => meta = cache.stat(key)?,
            _ => break,
        }
    }
    Ok(meta.filter(|m| m.hash.to_hex().as_str() == hash.as_str()))
}

/// `freshcache get KEY`: exit 1 on a miss (nothing on stdout).
pub fn get(cache: &Cache, a: GetArgs) -> anyhow::Result<Status> {
    let key = a.key;
    let value = if a.allow_stale {
        cache.get_entry(&key)?.map(|e| {
            if !e.meta.freshness.is_fresh() {
                note(format_args!(
                    "warning: {key} is stale (expired {})",
                    time(e.meta.expires_at)
                ));
            }
            e.value
        })
    } else {
        cache.get(&key)?
    };
    let Some(value) = value else {
        note(format_args!("miss: {key}"));
        return Ok(Status::Miss);
    };
    if a.json {
        let meta = meta_of(cache, &key, &value)?;
        print_json(&entry_json(meta, &key, &value)?)?;
        return Ok(Status::Ok);
    }
    match a.output {
        Some(p) => {
            std::fs::write(&p, &value).with_context(|| format!("writing {}", p.display()))?
        }
        None => Stdout.write_all(&value).context("writing to stdout")?,
    }
    Ok(Status::Ok)
}

/// `freshcache stat KEY`: exit 1 on a miss.
pub fn stat(cache: &Cache, a: StatArgs) -> anyhow::Result<Status> {
    match cache.stat(&a.key)? {
        None => {
            note(format_args!("miss: {}", a.key));
            Ok(Status::Miss)
        }
        Some(m) if a.json => print_json(&m).map(|()| Status::Ok),
        Some(m) => {
            print_meta_table(&[m])?;
            Ok(Status::Ok)
        }
    }
}

/// `freshcache rm KEY`: exit 1 when there was nothing to remove.
pub fn rm(cache: &Cache, a: RmArgs) -> anyhow::Result<Status> {
    let removed = cache.delete(&a.key)?;
    if a.json {
        print_json(&serde_json::json!({ "key": a.key, "removed": removed }))?;
    } else if removed {
        outln!("removed {}", a.key)?;
    }
    if removed {
        Ok(Status::Ok)
    } else {
        note(format_args!("miss: {}", a.key));
        Ok(Status::Miss)
    }
}

/// `freshcache ls [PATTERN]`.
pub fn ls(cache: &Cache, a: LsArgs) -> anyhow::Result<Status> {
    let list = cache.list(a.pattern.as_deref())?;
    if a.json {
        print_json(&list)?;
    } else {
        print_meta_table(&list)?;
    }
    Ok(Status::Ok)
}

/// `freshcache invalidate PATTERN`.
pub fn invalidate(cache: &Cache, a: InvalidateArgs) -> anyhow::Result<Status> {
    let n = cache.invalidate(&a.pattern)?;
    if a.json {
        print_json(&serde_json::json!({ "pattern": a.pattern, "removed": n }))?;
    } else {
        outln!("invalidated {n} key(s) matching {}", a.pattern)?;
    }
    Ok(Status::Ok)
}

/// Standard base64 with padding (RFC 4648 §4), for binary values in JSON.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
