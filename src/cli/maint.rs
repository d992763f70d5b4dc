//! Maintenance commands: `evict`, `gc`, `verify`.

use std::time::Duration;

use clap::Args;
use freshcache::Cache;

use super::output::{outln, print_json, with_progress};
use super::{exit, parse_dur, parse_size, Status};

/// Arguments of `freshcache evict`.
#[derive(Args, Debug)]
pub struct EvictArgs {
    /// Cap to use instead of cache.max_size (e.g. 10GiB).
    #[arg(long, value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Print the eviction report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freshcache gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Keep files younger than this (default cleanup.gc_grace; at most 100 years).
    #[arg(long, value_parser = parse_dur)]
    pub grace: Option<Duration>,
    /// Print the gc report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `freshcache verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Drop what is corrupt or dangling and fix refcounts and totals (the
    /// exit code is still 4 when anything was found).
    #[arg(long)]
    pub repair: bool,
    /// Print `{"report": ..., "clean_after": bool}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `freshcache evict`.
pub fn evict(cache: &Cache, a: EvictArgs) -> anyhow::Result<Status> {
    let r = with_progress(a.json, "evicting bytes", |p| {
        cache.evict_with(a.max_size, p)
    })?;
    if a.json {
        print_json(&r)?;
    } else {
        outln!(
            "evicted {} entries ({} expired), {} -> {} bytes (cap {}, low watermark {}) in {} ms",
            r.entries_removed,
            r.expired_removed,
            r.bytes_before,
            r.bytes_after,
            r.max_bytes,
            r.low_watermark_bytes,
            r.elapsed_ms
        )?;
    }
    Ok(Status::Ok)
}

/// `freshcache gc`.
pub fn gc(cache: &Cache, a: GcArgs) -> anyhow::Result<Status> {
    let r = with_progress(a.json, "scanning blob shards", |p| {
        cache.gc_with(a.grace, p)
    })?;
    if a.json {
        print_json(&r)?;
    } else {
        outln!(
            "gc: removed {} orphan blob file(s) ({} bytes), {} temp file(s); {} foreign file(s) left alone",
            r.orphan_files_removed,
            r.orphan_bytes_removed,
            r.temp_files_removed,
            r.foreign_files
        )?;
    }
    Ok(Status::Ok)
}

/// `freshcache verify [--repair]`: exit 4 whenever a problem was found,
/// repaired or not (a cron job must learn that data was lost); the text
/// output lists every problem and every key the repair removed.
pub fn verify(cache: &Cache, a: VerifyArgs) -> anyhow::Result<Status> {
    let r = with_progress(a.json, "verifying blobs", |p| cache.verify(a.repair, p))?;
    let clean_after = if a.repair && !r.is_clean() {
        cache.verify(false, None)?.is_clean()
    } else {
        r.is_clean()
    };
    if a.json {
        print_json(&serde_json::json!({ "report": r, "clean_after": clean_after }))?;
    } else {
        outln!(
            "verified {} blob(s), {} entries: {} problem(s)",
            r.blobs_checked,
            r.entries_checked,
            r.problems.len()
        )?;
        for p in &r.problems {
            outln!("  {}", serde_json::to_string(p)?)?;
        }
        if a.repair && !r.is_clean() {
            outln!(
                "repaired: {} key(s) removed (their values were lost); clean now: {clean_after}",
                r.keys_dropped.len()
            )?;
            for k in &r.keys_dropped {
                outln!("  removed {k}")?;
            }
        }
    }
    Ok(if r.is_clean() {
        Status::Ok
    } else {
        Status::Code(exit::CORRUPT)
    })
}
