//! `freshcache run`: the daemon. One loop owns the [`Schedule`] and starts
//! what is due (feed refreshes as tasks, eviction on a blocking thread, at
//! most one of each per feed / one pass at a time), applies validated
//! config changes from the watcher, and on shutdown lets in-flight work
//! finish within `daemon.shutdown_grace`, cancels the rest, and flushes
//! the batched access records. The HTTP endpoints run beside it.

mod http;
mod jobs;
mod refresh;
mod reload;
pub mod schedule;
mod serve;
mod source;
mod upstream;
mod warm;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::base::config::Config;
use crate::base::error::{Error, Result};
use crate::cache::Cache;
use http::Shared;
use jobs::Jobs;
pub use refresh::{BoxError, LoaderFuture, Loaders, PassReport, RefreshAhead};
pub use schedule::{Due, Job, Schedule};
pub use source::{warm_key, FeedSource, Outcome, Refresh};
pub use upstream::FetcherSource;

/// The longest the loop sleeps, so a wall-clock jump is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How `run` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The config file to watch (none: no hot reload).
    pub config_path: Option<PathBuf>,
    /// Overrides `daemon.listen`.
    pub listen: Option<SocketAddr>,
}

/// A bound daemon, ready to run.
#[derive(Debug)]
pub struct Daemon {
    cache: Cache,
    listener: tokio::net::TcpListener,
    options: Options,
    loaders: Loaders,
}

/// Binds and runs until SIGTERM or SIGINT.
///
/// # Errors
/// See [`Daemon::bind`] and [`Daemon::run_with`].
pub async fn run(cache: Cache, options: Options) -> Result<()> {
    let daemon = Daemon::bind(cache, options).await?;
    let source = FetcherSource::new(&daemon.cache)?;
    daemon.run_with(source, shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

impl Daemon {
    /// Binds the HTTP listener (`options.listen`, else `daemon.listen`).
    ///
    /// # Errors
    /// [`Error::Listen`] if the address cannot be bound.
    pub async fn bind(cache: Cache, options: Options) -> Result<Daemon> {
        let addr = options.listen.unwrap_or(cache.config().daemon.listen);
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "listening beyond loopback: the endpoints have no authentication");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { addr, source })?;
        Ok(Daemon {
            cache,
            listener,
            options,
            loaders: Loaders::default(),
        })
    }

    /// Registers the loader refresh-ahead uses for keys starting with
    /// `prefix` that are not URL-backed (longest prefix wins).
    pub fn loader<F, Fut>(mut self, prefix: impl Into<String>, loader: F) -> Daemon
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Vec<u8>, BoxError>> + Send + 'static,
    {
        self.loaders.register(prefix, loader);
        self
    }

    /// The address the endpoints are served on.
    ///
    /// # Errors
    /// [`Error::Listen`] if the socket cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        let addr = self
            .options
            .listen
            .unwrap_or(self.cache.config().daemon.listen);
        self.listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })
    }

    /// Runs with the built-in [`FetcherSource`] until `shutdown` resolves.
    ///
    /// # Errors
    /// As [`Daemon::run_with`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let source = FetcherSource::new(&self.cache)?;
        self.run_with(source, shutdown).await
    }

    /// Runs with `source` until `shutdown` resolves, then stops cleanly.
    ///
    /// # Errors
    /// An invalid cron expression, an unwatchable config file, or a
    /// storage error while flushing on the way out.
    pub async fn run_with<S: FeedSource>(
        self,
        source: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let Daemon {
            cache,
            listener,
            options,
            loaders,
        } = self;
        let refresher = Arc::new(tokio::sync::Mutex::new(RefreshAhead::new(&cache, loaders)?));
        let mut refresh_task: Option<tokio::task::JoinHandle<()>> = None;
        let mut next_refresh = tokio::time::Instant::now();
        let config = cache.config();
        let mut schedule = Schedule::new(&config, cache.now()).map_err(|reason| Error::Config {
            source_name: "runtime config".into(),
            field: "cleanup.interval".into(),
            reason,
        })?;
        let shared = Arc::new(Shared {
            cache: cache.clone(),
            metrics: Default::default(),
        });
        let source = Arc::new(source);
        let (stop_tx, stop_rx) = watch::channel(false);

        let limits = serve::Limits {
            max_connections: config.daemon.max_connections,
            header_timeout: config.daemon.header_timeout.0,
            grace: config.daemon.shutdown_grace.0,
        };
        let server = tokio::spawn(serve::serve(
            listener,
            http::router(shared.clone()),
            limits,
            stop_rx.clone(),
        ));

        let (config_tx, mut config_rx) = mpsc::channel::<Config>(4);
        let _watcher = match &options.config_path {
            Some(p) => Some(reload::watch(p, shared.clone(), config_tx)?),
            None => {
                tracing::info!("no --config file: hot reload is off");
                None
            }
        };

        let warm = tokio::spawn(warm::warm(
            source.clone(),
            config.daemon.warm.clone(),
            config.daemon.warm_concurrency,
            shared.clone(),
        ));
        tracing::info!(
            feeds = config.feeds.len(),
            cleanup = %config.cleanup.interval,
            max_size = config.cache.max_size.0,
            root = %cache.root().display(),
            "daemon started"
        );

        let mut jobs = Jobs::new(shared.clone(), source);
        tokio::pin!(shutdown);
        loop {
            for due in schedule.take_due(cache.now()) {
                shared.metrics.lag(due.job.kind(), due.lag_ms);
                jobs.start(due.job);
            }
            let wait_ms = (schedule.next_wake() - cache.now()).max(0) as u64;
            let wait = Duration::from_millis(wait_ms).min(MAX_SLEEP);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
                _ = tokio::time::sleep_until(next_refresh) => {
                    next_refresh = tokio::time::Instant::now()
                        + cache.config().daemon.refresh_ahead.every.0;
                    if refresh_task.as_ref().is_none_or(|t| t.is_finished()) {
                        let r = refresher.clone();
                        refresh_task = Some(tokio::spawn(async move {
                            if let Err(e) = r.lock().await.pass().await {
                                tracing::warn!(error = %e, "refresh-ahead pass failed");
                            }
                        }));
                    }
                }
                Some(new) = config_rx.recv() => {
                    apply(&shared, &mut schedule, new);
                    jobs.config_changed();
                }
                Some(done) = jobs.fetches.join_next(), if !jobs.fetches.is_empty() => {
                    jobs.fetched(done);
                }
                Some(done) = jobs.evictions.join_next(), if !jobs.evictions.is_empty() => {
                    jobs.evicted(done);
                }
            }
        }

        // Shutdown: stop serving and warming, give in-flight work the grace
        // period, cancel what is left, flush.
        let _ = stop_tx.send(true);
        warm.abort();
        if let Some(t) = refresh_task {
            t.abort();
        }
        let grace = cache.config().daemon.shutdown_grace.0;
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = jobs.fetches.join_next().await {
                jobs.fetched(done);
            }
            while let Some(done) = jobs.evictions.join_next().await {
                jobs.evicted(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                fetches = jobs.fetches.len(),
                grace_ms = grace.as_millis() as u64,
                "shutdown grace over: cancelling in-flight work"
            );
            jobs.fetches.abort_all();
        }
        let _ = tokio::time::timeout(grace, server).await;
        let flushed = tokio::task::spawn_blocking(move || cache.flush()).await;
        match flushed {
            Ok(r) => r?,
            Err(e) => tracing::error!(error = %e, "flush task failed"),
        }
        tracing::info!("daemon stopped");
        Ok(())
    }
}

/// Applies a validated config: classes, TTLs and size cap in the cache,
/// feeds and cron in the schedule.
fn apply(shared: &Shared, schedule: &mut Schedule, new: Config) {
    match schedule.apply(&new, shared.cache.now()) {
        Ok(changes) => {
            shared.cache.set_config(new);
            shared.metrics.reloads.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                added = ?changes.feeds_added,
                removed = ?changes.feeds_removed,
                changed = ?changes.feeds_changed,
                cron_changed = changes.cron_changed,
                "config reloaded"
            );
        }
        Err(reason) => {
            shared.metrics.reload_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%reason, "config change rejected; the old config stays in force");
        }
    }
}

#[cfg(test)]
mod tests;
