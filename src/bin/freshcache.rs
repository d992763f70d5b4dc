//! The `freshcache` command: parses arguments, calls the library, prints.
//! Exit codes: 0 ok, 1 miss, 2 invalid input, 3 refused by the staleness
//! guard, 4 corrupt data found, 5 upstream or network error.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use freshcache::config::{Dur, Size};
use freshcache::{Cache, Config, Error, Meta, Put};

#[path = "../cli/demo.rs"]
mod demo;
#[path = "../cli/fetch.rs"]
mod fetch;

#[derive(Parser, Debug)]
#[command(
    name = "freshcache",
    version,
    about = "Disk-backed cache for time-sensitive data"
)]
struct Cli {
    /// Cache root directory (overrides cache.root from the config).
    #[arg(long, global = true, env = "FRESHCACHE_ROOT")]
    root: Option<PathBuf>,
    /// Config file (default: the embedded config/runtime.yml plus FRESHCACHE_* variables).
    #[arg(long, global = true, env = "FRESHCACHE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Store a value (from FILE, or stdin when FILE is `-` or absent).
    Put {
        key: String,
        file: Option<PathBuf>,
        #[arg(long)]
        class: Option<String>,
        /// TTL such as 90s, 5m, 1h (overrides the class TTL).
        #[arg(long, value_parser = parse_dur)]
        ttl: Option<Duration>,
        #[arg(long)]
        etag: Option<String>,
        #[arg(long)]
        last_modified: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print a fresh value (exit 1 on a miss).
    Get {
        key: String,
        /// Write to FILE instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Return an expired entry too (its staleness is reported on stderr).
        #[arg(long)]
        allow_stale: bool,
    },
    /// Show an entry's metadata.
    Stat {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a key.
    Rm { key: String },
    /// List keys matching a pattern (all without one).
    Ls {
        pattern: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove every key matching a pattern.
    Invalidate {
        pattern: String,
        #[arg(long)]
        json: bool,
    },
    /// Hit rates, sizes, TTL violations.
    Stats {
        #[arg(long)]
        json: bool,
        /// Print Prometheus text exposition instead.
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Refuse unless every signal is fresh (exit 3 otherwise).
    Guard {
        #[arg(required = true)]
        requirements: Vec<String>,
        /// Every signal must also be younger than this.
        #[arg(long, value_parser = parse_dur)]
        max_age: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Evict down to the low watermark if above the high one.
    Evict {
        /// Cap to use instead of cache.max_size (e.g. 10GiB).
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Remove orphan blob files and old temp files.
    Gc {
        /// Keep files younger than this (default cleanup.gc_grace).
        #[arg(long, value_parser = parse_dur)]
        grace: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Check every blob and row (exit 4 if something is wrong).
    Verify {
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// The daemon: feed refresh, scheduled eviction, hot reload, /metrics.
    Run {
        /// Serve /metrics, /healthz and /v1/stats here (default daemon.listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Conditional GET of URL into KEY (exit 5 if the upstream fails with no usable copy).
    Fetch(fetch::FetchArgs),
    /// News feeds from the config.
    Feeds {
        #[command(subcommand)]
        cmd: fetch::FeedsCmd,
    },
    /// A tour: features, odds and news stored, expired, guarded, evicted.
    Demo {
        /// Keep the demo's cache directory.
        #[arg(long)]
        keep: bool,
    },
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    Dur::parse(s).map(|d| d.0)
}

fn parse_size(s: &str) -> Result<u64, String> {
    Size::parse(s).map(|s| s.0)
}

/// Exit status of a command that ran.
enum Status {
    Ok,
    Miss,
    Code(u8),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs a line per feed refresh and eviction pass by default.
    let default_filter = if matches!(cli.cmd, Cmd::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::Miss) => ExitCode::from(1),
        Ok(Status::Code(c)) => ExitCode::from(c),
        Err(e) => {
            let code = e.downcast_ref::<Error>().map_or(1, Error::exit_code);
            eprintln!("freshcache: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, Error> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::from_env()?,
    };
    if let Some(root) = &cli.root {
        config.cache.root = root.clone();
    }
    Ok(config)
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Runs `f` with a progress callback that drives a bar on stderr when it is
/// a terminal (quiet in pipes and with --json).
fn with_progress<T>(
    json: bool,
    what: &str,
    f: impl FnOnce(Option<freshcache::Progress<'_>>) -> Result<T, Error>,
) -> Result<T, Error> {
    if json || !std::io::stderr().is_terminal() {
        return f(None);
    }
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    let cb = |done: u64, total: u64| {
        pb.set_length(total);
        pb.set_position(done);
    };
    let out = f(Some(&cb));
    pb.finish_and_clear();
    out
}

fn run(cli: Cli) -> anyhow::Result<Status> {
    if let Cmd::Demo { keep } = &cli.cmd {
        return demo::run(*keep, load_config(&cli)?).map(|()| Status::Ok);
    }
    let config = load_config(&cli)?;
    let cache = Cache::with_config(config)?;
    if let Cmd::Run { listen } = cli.cmd {
        return run_daemon(cache, cli.config, listen).map(|()| Status::Ok);
    }
    match cli.cmd {
        Cmd::Put {
            key,
            file,
            class,
            ttl,
            etag,
            last_modified,
            json,
        } => {
            let bytes = match file.as_deref() {
                None => read_stdin()?,
                Some(p) if p.as_os_str() == "-" => read_stdin()?,
                Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            };
            let opts = Put {
                class,
                ttl,
                etag,
                last_modified,
                headers: None,
            };
            let s = cache.put(&key, &bytes, opts)?;
            if json {
                print_json(&cache.stat(&key)?)?;
            } else {
                println!(
                    "stored {key}: {} bytes ({} on disk{}), class {}, expires {}",
                    s.size,
                    s.stored_size,
                    if s.deduplicated { ", deduplicated" } else { "" },
                    s.class,
                    freshcache::clock::rfc3339(s.expires_at)
                );
            }
            Ok(Status::Ok)
        }
        Cmd::Get {
            key,
            output,
            allow_stale,
        } => {
            let value = if allow_stale {
                cache.get_entry(&key)?.map(|e| {
                    if !e.meta.freshness.is_fresh() {
                        eprintln!(
                            "freshcache: warning: {key} is stale (expired {})",
                            freshcache::clock::rfc3339(e.meta.expires_at)
                        );
                    }
                    e.value
                })
            } else {
                cache.get(&key)?
            };
            let Some(value) = value else {
                eprintln!("freshcache: miss: {key}");
                return Ok(Status::Miss);
            };
            match output {
                Some(p) => std::fs::write(&p, &value)
                    .with_context(|| format!("writing {}", p.display()))?,
                None => std::io::stdout().lock().write_all(&value)?,
            }
            Ok(Status::Ok)
        }
        Cmd::Stat { key, json } => match cache.stat(&key)? {
            None => {
                eprintln!("freshcache: miss: {key}");
                Ok(Status::Miss)
            }
            Some(m) if json => print_json(&m).map(|()| Status::Ok),
            Some(m) => {
                print_meta_table(&[m]);
                Ok(Status::Ok)
            }
        },
        Cmd::Rm { key } => {
            if cache.delete(&key)? {
                println!("removed {key}");
                Ok(Status::Ok)
            } else {
                eprintln!("freshcache: miss: {key}");
                Ok(Status::Miss)
            }
        }
        Cmd::Ls { pattern, json } => {
            let list = cache.list(pattern.as_deref())?;
            if json {
                print_json(&list)?;
            } else {
                print_meta_table(&list);
            }
            Ok(Status::Ok)
        }
        Cmd::Invalidate { pattern, json } => {
            let n = cache.invalidate(&pattern)?;
            if json {
                print_json(&serde_json::json!({ "pattern": pattern, "removed": n }))?;
            } else {
                println!("invalidated {n} key(s) matching {pattern}");
            }
            Ok(Status::Ok)
        }
        Cmd::Stats { json, prometheus } => {
            let s = cache.stats()?;
            if prometheus {
                print!("{}", cache.metrics()?.finish());
            } else if json {
                print_json(&s)?;
            } else {
                print_stats(&s, &cache.config());
            }
            Ok(Status::Ok)
        }
        Cmd::Guard {
            requirements,
            max_age,
            json,
        } => {
            let mut guard = cache.guard();
            if let Some(m) = max_age {
                guard = guard.max_age(m);
            }
            match guard.require(&requirements) {
                Ok(set) => {
                    if json {
                        print_json(&set)?;
                    } else {
                        println!("accepted: {} signal(s), all fresh", set.signals.len());
                        print_meta_table(
                            &set.signals
                                .iter()
                                .map(|s| s.meta.clone())
                                .collect::<Vec<_>>(),
                        );
                    }
                    Ok(Status::Ok)
                }
                Err(Error::Stale(stale)) => {
                    if json {
                        print_json(&serde_json::json!({ "refused": stale }))?;
                    } else {
                        println!("REFUSED: {} signal(s) stale or missing", stale.len());
                        println!(
                            "{:<40} {:<14} {:<8} {:>12} {:>12} {:>12}",
                            "KEY", "CLASS", "REASON", "AGE", "LIMIT", "OVER BY"
                        );
                        for s in &stale {
                            let h =
                                |v: Option<i64>| v.map_or("-".into(), freshcache::clock::human_ms);
                            println!(
                                "{:<40} {:<14} {:<8} {:>12} {:>12} {:>12}",
                                s.key.as_deref().unwrap_or(&s.requirement),
                                s.class,
                                format!("{:?}", s.reason).to_lowercase(),
                                h(s.age_ms),
                                h(s.limit_ms),
                                h(s.over_by_ms)
                            );
                        }
                    }
                    Ok(Status::Code(3))
                }
                Err(e) => Err(e.into()),
            }
        }
        Cmd::Evict { max_size, json } => {
            let r = with_progress(json, "evicting bytes", |p| cache.evict_with(max_size, p))?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "evicted {} entries ({} expired), {} -> {} bytes (cap {}, low watermark {}) in {} ms",
                    r.entries_removed, r.expired_removed, r.bytes_before, r.bytes_after, r.max_bytes, r.low_watermark_bytes, r.elapsed_ms
                );
            }
            Ok(Status::Ok)
        }
        Cmd::Gc { grace, json } => {
            let r = with_progress(json, "scanning blob shards", |p| cache.gc_with(grace, p))?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "gc: removed {} orphan blob file(s) ({} bytes), {} temp file(s); {} foreign file(s) left alone",
                    r.orphan_files_removed, r.orphan_bytes_removed, r.temp_files_removed, r.foreign_files
                );
            }
            Ok(Status::Ok)
        }
        Cmd::Verify { repair, json } => {
            let r = with_progress(json, "verifying blobs", |p| cache.verify(repair, p))?;
            let clean_after = if repair && !r.is_clean() {
                cache.verify(false, None)?.is_clean()
            } else {
                r.is_clean()
            };
            if json {
                print_json(&serde_json::json!({ "report": r, "clean_after": clean_after }))?;
            } else {
                println!(
                    "verified {} blob(s), {} entries: {} problem(s)",
                    r.blobs_checked,
                    r.entries_checked,
                    r.problems.len()
                );
                for p in &r.problems {
                    println!("  {}", serde_json::to_string(p)?);
                }
                if repair && !r.is_clean() {
                    println!(
                        "repaired: {} key(s) dropped; clean now: {clean_after}",
                        r.keys_dropped.len()
                    );
                }
            }
            Ok(if clean_after {
                Status::Ok
            } else {
                Status::Code(4)
            })
        }
        Cmd::Fetch(args) => fetch::fetch(&cache, args),
        Cmd::Feeds { cmd } => fetch::feeds(&cache, cmd),
        Cmd::Demo { .. } | Cmd::Run { .. } => unreachable!("handled above"),
    }
}

/// `freshcache run`: prints `listening on http://ADDR` once bound, then
/// runs until SIGTERM/SIGINT (exit 0).
fn run_daemon(
    cache: Cache,
    config_path: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    // Storage calls inside the fetcher are synchronous (microseconds, but a
    // write may wait for another process's eviction transaction): more
    // workers than cores keep /healthz and /metrics answering meanwhile.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2)
        * 2;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let options = freshcache::daemon::Options {
            config_path,
            listen,
        };
        let daemon = freshcache::daemon::Daemon::bind(cache, options).await?;
        println!("listening on http://{}", daemon.local_addr()?);
        std::io::stdout().flush()?;
        daemon.run(freshcache::daemon::shutdown_signal()).await?;
        Ok(())
    })
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    Ok(buf)
}

fn print_meta_table(rows: &[Meta]) {
    println!(
        "{:<44} {:<13} {:>9} {:>9} {:<6} {:<24} {:>5}",
        "KEY", "CLASS", "SIZE", "STORED", "STATE", "EXPIRES", "HITS"
    );
    for m in rows {
        println!(
            "{:<44} {:<13} {:>9} {:>9} {:<6} {:<24} {:>5}",
            m.key,
            m.class,
            m.size,
            m.stored_size,
            if m.freshness.is_fresh() {
                "fresh"
            } else {
                "STALE"
            },
            freshcache::clock::rfc3339(m.expires_at),
            m.hits
        );
    }
}

pub(crate) fn print_stats(s: &freshcache::Stats, config: &Config) {
    println!("entries          {}", s.entries);
    println!(
        "stored bytes     {} (logical {}, index {})",
        s.stored_bytes, s.logical_bytes, s.index_bytes
    );
    println!(
        "hits / misses    {} / {}  (hit rate {:.1}%)",
        s.hits,
        s.misses,
        100.0 * s.hit_rate
    );
    println!("hits by tier     {:?}", s.hits_by_tier);
    println!("upstream avoided {}", s.upstream_calls_avoided);
    println!("corrupt blobs    {}", s.corrupt_blobs);
    println!(
        "evicted          {} entries, {} bytes",
        s.evicted_entries, s.evicted_bytes
    );
    if s.redis.configured {
        let r = &s.redis;
        println!(
            "redis tier       {}: {} hits, {} misses, {} backfills, {} writes, {} errors",
            if r.up { "up" } else { "DOWN" },
            r.hits,
            r.misses,
            r.backfills,
            r.writes,
            r.errors
        );
        println!(
            "redis leases     {} won, {} waited; {} invalidations received",
            r.leases_won, r.leases_waited, r.invalidations_received
        );
    }
    let threshold = config.monitoring.ttl_violation_threshold;
    println!(
        "{:<14} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10}",
        "CLASS", "HITS", "MISSES", "HIT%", "CHECKS", "VIOLATIONS", "RATE"
    );
    for (class, c) in &s.by_class {
        let hits: u64 = c.hits.values().sum();
        let flag = if c.ttl_violation_rate > threshold {
            " (above threshold)"
        } else {
            ""
        };
        println!(
            "{:<14} {:>7} {:>7} {:>7.1}% {:>8} {:>10} {:>9.2}%{flag}",
            class,
            hits,
            c.misses,
            100.0 * c.hit_rate,
            c.guard_checks,
            c.ttl_violations,
            100.0 * c.ttl_violation_rate
        );
    }
}
