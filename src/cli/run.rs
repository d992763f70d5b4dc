//! `freshcache run`: the daemon.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use freshcache::Cache;

use super::output::{outln, Stdout};
use super::Status;

/// Arguments of `freshcache run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Serve /metrics, /healthz and /v1/stats here (default daemon.listen).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

/// Prints `listening on http://ADDR` once bound, then runs until
/// SIGTERM/SIGINT (exit 0).
pub fn run(cache: Cache, config_path: Option<PathBuf>, a: RunArgs) -> anyhow::Result<Status> {
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
            listen: a.listen,
        };
        let daemon = freshcache::daemon::Daemon::bind(cache, options).await?;
        outln!("listening on http://{}", daemon.local_addr()?)?;
        Stdout.flush()?;
        daemon.run(freshcache::daemon::shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Status::Ok)
}
