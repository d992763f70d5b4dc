//! `freshcache stats`: hit rates, sizes, TTL violations; or Prometheus text.

use clap::Args;
use freshcache::{Cache, Config};

use super::output::{outln, print_json, Stdout};
use super::Status;

/// Arguments of `freshcache stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print the statistics as a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print Prometheus text exposition instead.
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
}

/// `freshcache stats [--json | --prometheus]`.
pub fn stats(cache: &Cache, a: StatsArgs) -> anyhow::Result<Status> {
    let s = cache.stats()?;
    if a.prometheus {
        std::io::Write::write_all(&mut Stdout, cache.metrics()?.finish().as_bytes())?;
    } else if a.json {
        print_json(&s)?;
    } else {
        print_stats(&s, &cache.config())?;
    }
    Ok(Status::Ok)
}

/// The human-readable report.
pub fn print_stats(s: &freshcache::Stats, config: &Config) -> std::io::Result<()> {
    outln!("entries          {}", s.entries)?;
    outln!(
        "stored bytes     {} (logical {}, index {})",
        s.stored_bytes,
        s.logical_bytes,
        s.index_bytes
    )?;
    outln!(
        "hits / misses    {} / {}  (hit rate {:.1}%)",
        s.hits,
        s.misses,
        100.0 * s.hit_rate
    )?;
    outln!("hits by tier     {:?}", s.hits_by_tier)?;
    outln!("upstream avoided {}", s.upstream_calls_avoided)?;
    outln!("corrupt blobs    {}", s.corrupt_blobs)?;
    outln!(
        "evicted          {} entries, {} bytes",
        s.evicted_entries,
        s.evicted_bytes
    )?;
    let q = &s.quota;
    outln!(
        "fetch quota      {} used, {} left of {}/{}; resets {}",
        q.used,
        q.left,
        q.limit,
        q.period,
        freshcache::clock::rfc3339(q.resets_at)
    )?;
    if s.redis.configured {
        let r = &s.redis;
        outln!(
            "redis tier       {}: {} hits, {} misses, {} backfills, {} writes, {} errors",
            if r.up { "up" } else { "DOWN" },
            r.hits,
            r.misses,
            r.backfills,
            r.writes,
            r.errors
        )?;
        outln!(
            "redis leases     {} won, {} waited; {} invalidations received",
            r.leases_won,
            r.leases_waited,
            r.invalidations_received
        )?;
        outln!(
            "redis sync       {}; {} invalidations pending publication, {} unconfirmed reads, {} reconciles",
            if r.confirmed {
                "confirmed"
            } else {
                "UNCONFIRMED (not caught up with the invalidation log)"
            },
            r.pending_unshared,
            r.unconfirmed_reads,
            r.reconciles
        )?;
    }
    let ra = &s.refresh_ahead;
    outln!(
        "refresh ahead    {} refreshed, {} failed, {} misses avoided",
        ra.refreshed,
        ra.failed,
        ra.misses_avoided
    )?;
    let threshold = config.monitoring.ttl_violation_threshold;
    outln!(
        "{:<14} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10}",
        "CLASS",
        "HITS",
        "MISSES",
        "HIT%",
        "CHECKS",
        "VIOLATIONS",
        "RATE"
    )?;
    for (class, c) in &s.by_class {
        let hits: u64 = c.hits.values().sum();
        let flag = if c.ttl_violation_rate > threshold {
            " (above threshold)"
        } else {
            ""
        };
        outln!(
            "{:<14} {:>7} {:>7} {:>7.1}% {:>8} {:>10} {:>9.2}%{flag}",
            class,
            hits,
            c.misses,
            100.0 * c.hit_rate,
            c.guard_checks,
            c.ttl_violations,
            100.0 * c.ttl_violation_rate
        )?;
    }
    print_measured(s, config)
}

/// Measured TTLs: what revalidations found and the TTL it suggests.
fn print_measured(s: &freshcache::Stats, config: &Config) -> std::io::Result<()> {
    let m = &s.measured;
    if m.classes.is_empty() && m.feeds.is_empty() {
        return Ok(());
    }
    outln!(
        "{:<19} {:>6} {:>10} {:>9} {:>13} {:>10} {:>10}",
        "MEASURED",
        "REVAL",
        "UNCHANGED",
        "INTERVALS",
        "MEAN CHANGE",
        "TTL",
        "SUGGESTED"
    )?;
    let ms = |v: Option<u64>| {
        v.map_or("-".to_string(), |v| {
            freshcache::clock::human_ms(i64::try_from(v).unwrap_or(i64::MAX))
        })
    };
    let rows = m
        .classes
        .iter()
        .map(|(n, e)| (format!("class {n}"), e, config.classes.get(n)))
        .chain(m.feeds.iter().map(|(n, e)| (format!("feed {n}"), e, None)));
    for (name, e, class) in rows {
        let ttl = class.map_or("-".to_string(), |c| match c.adaptive {
            Some(a) => format!(
                "{}..{}",
                humantime::format_duration(a.min.0),
                humantime::format_duration(a.max.0)
            ),
            None => humantime::format_duration(c.ttl.0).to_string(),
        });
        outln!(
            "{:<19} {:>6} {:>9.1}% {:>9} {:>13} {:>10} {:>10}",
            name,
            e.revalidations,
            100.0 * e.unchanged_ratio,
            e.intervals,
            ms(e.mean_change_interval_ms),
            ttl,
            ms(e.suggested_ttl_ms)
        )?;
    }
    Ok(())
}
