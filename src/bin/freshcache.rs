//! The `freshcache` command: parses arguments and dispatches to the
//! command bodies in `src/cli/`. Exit codes (README.md): 0 ok, 1 miss,
//! 2 invalid input, 3 refused by the staleness guard, 4 corrupt data found,
//! 5 upstream or network error, 6 local I/O or storage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[path = "../cli/mod.rs"]
mod cli;

use cli::{data, demo, feeds, fetch, guard, maint, recover, run, stats, Global, Status};

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
    Put(data::PutArgs),
    /// Print a fresh value (exit 1 on a miss).
    Get(data::GetArgs),
    /// Show an entry's metadata (exit 1 on a miss).
    Stat(data::StatArgs),
    /// Remove a key (exit 1 if it was not there).
    Rm(data::RmArgs),
    /// List keys matching a pattern (all without one).
    Ls(data::LsArgs),
    /// Remove every key matching a pattern.
    Invalidate(data::InvalidateArgs),
    /// Hit rates, sizes, TTL violations.
    Stats(stats::StatsArgs),
    /// Refuse unless every signal is fresh (exit 3 otherwise).
    Guard(guard::GuardArgs),
    /// Evict down to the low watermark if above the high one.
    Evict(maint::EvictArgs),
    /// Remove orphan blob files and old temp files.
    Gc(maint::GcArgs),
    /// Check every blob and row (exit 4 if something is wrong, even after --repair).
    Verify(maint::VerifyArgs),
    /// Rebuild a damaged index from what can still be read and verified.
    Recover(recover::RecoverArgs),
    /// The daemon: feed refresh, scheduled eviction, hot reload, /metrics.
    Run(run::RunArgs),
    /// Conditional GET of URL into KEY (exit 5 if the upstream fails with no usable copy).
    Fetch(fetch::FetchArgs),
    /// News feeds from the config.
    Feeds {
        #[command(subcommand)]
        cmd: feeds::FeedsCmd,
    },
    /// A tour: features, odds and news stored, expired, guarded, evicted.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version (exit 0) or a usage error (exit 2); a
            // closed stdout or stderr is not an error here either.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    cli::init_logging(matches!(cli.cmd, Cmd::Run(_)));
    cli::finish(dispatch(cli))
}

fn dispatch(cli: Cli) -> anyhow::Result<Status> {
    let global = Global {
        root: cli.root,
        config: cli.config,
    };
    if let Cmd::Demo(a) = cli.cmd {
        return demo::run(a, global.load_config()?);
    }
    if let Cmd::Recover(a) = cli.cmd {
        return recover::recover(&global, a);
    }
    let cache = match (global.open(), &cli.cmd) {
        (Err(e), Cmd::Verify(a)) => return recover::verify_unopenable(e, a),
        (opened, _) => opened?,
    };
    match cli.cmd {
        Cmd::Put(a) => data::put(&cache, a),
        Cmd::Get(a) => data::get(&cache, a),
        Cmd::Stat(a) => data::stat(&cache, a),
        Cmd::Rm(a) => data::rm(&cache, a),
        Cmd::Ls(a) => data::ls(&cache, a),
        Cmd::Invalidate(a) => data::invalidate(&cache, a),
        Cmd::Stats(a) => stats::stats(&cache, a),
        Cmd::Guard(a) => guard::guard(&cache, a),
        Cmd::Evict(a) => maint::evict(&cache, a),
        Cmd::Gc(a) => maint::gc(&cache, a),
        Cmd::Verify(a) => maint::verify(&cache, a),
        Cmd::Run(a) => run::run(cache, global.config, a),
        Cmd::Fetch(a) => fetch::fetch(&cache, a),
        Cmd::Feeds { cmd } => feeds::feeds(&cache, cmd),
        Cmd::Demo(_) | Cmd::Recover(_) => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand, argument and flag has a non-empty `--help` line.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let empty = arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty());
                if empty {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "freshcache", &mut missing);
        assert!(missing.is_empty(), "no --help text for: {missing:?}");
    }
}
