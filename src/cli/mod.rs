//! The bodies of the `freshcache` commands. These files are modules of the
//! binary (`src/bin/freshcache.rs` declares them), not of the library: the
//! binary parses arguments and dispatches, each module here runs one group
//! of commands and prints through [`output`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use freshcache::config::{Dur, Size};
use freshcache::{Cache, Config, Error};

pub mod output;

pub mod data;
pub mod demo;
pub mod exit;
pub mod feeds;
pub mod fetch;
pub mod guard;
pub mod maint;
pub mod recover;
pub mod run;
pub mod stats;

use exit::Fail;
pub use exit::Status;

/// The options every command takes.
#[derive(Debug, Clone, Default)]
pub struct Global {
    /// `--root`: overrides `cache.root`.
    pub root: Option<PathBuf>,
    /// `--config`: the config file (default: embedded + `FRESHCACHE_*`).
    pub config: Option<PathBuf>,
}

impl Global {
    /// The config: the `--config` file (a file that cannot be read is
    /// invalid input, exit 2, like one that does not validate) or the
    /// embedded default, with `FRESHCACHE_*` overrides and `--root`.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path).map_err(|e| match e {
                Error::Io { source, .. } => anyhow::Error::new(Fail::invalid(format!(
                    "cannot read config file {}: {source}",
                    path.display()
                ))),
                e => e.into(),
            })?,
            None => Config::from_env()?,
        };
        if let Some(root) = &self.root {
            config.cache.root = root.clone();
        }
        Ok(config)
    }

    /// Loads the config and opens the cache root.
    pub fn open(&self) -> anyhow::Result<Cache> {
        Ok(Cache::with_config(self.load_config()?)?)
    }
}

/// Sets up logging on stderr: `RUST_LOG`, else `info` for the daemon and
/// `warn` for every other command.
pub fn init_logging(daemon: bool) {
    let default_filter = if daemon { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Flushes stdout and turns a command's result into the process exit code
/// (errors are printed on stderr as `freshcache: ...`).
pub fn finish(result: anyhow::Result<Status>) -> ExitCode {
    let result = result.and_then(|s| {
        output::Stdout.flush().context("writing to stdout")?;
        Ok(s)
    });
    match result {
        Ok(s) => ExitCode::from(s.code()),
        Err(e) => {
            output::note(format_args!("{e:#}"));
            ExitCode::from(exit::code_of(&e))
        }
    }
}

/// The longest duration a TTL, `--max-age` or `--grace` may be: 100 years.
/// Longer ones are refused (exit 2) so that no instant the cache stores
/// overflows what it can compute and print.
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

/// A duration argument (`90s`, `5m`, `1h`, `7d`), at most [`MAX_DURATION`].
pub fn parse_dur(s: &str) -> Result<Duration, String> {
    let d = Dur::parse(s)?.0;
    if d > MAX_DURATION {
        return Err(format!(
            "duration `{s}` is longer than 100 years (the longest accepted is 36525d)"
        ));
    }
    Ok(d)
}

/// A size argument (`64KiB`, `10GiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    Size::parse(s).map(|s| s.0)
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), kept verbatim.
pub fn parse_http_date(s: &str) -> Result<String, String> {
    httpdate::parse_http_date(s)
        .map(|_| s.to_string())
        .map_err(|_| format!("`{s}` is not an HTTP date (e.g. `Sun, 06 Nov 1994 08:49:37 GMT`)"))
}

/// A current-thread tokio runtime for one network command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
