//! Warm-up on start: every `daemon.warm` item loaded through the source,
//! at most `daemon.warm_concurrency` at a time. Failures are logged and
//! counted; they never stop the daemon.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::http::Shared;
use super::source::FeedSource;
use crate::base::config::WarmItem;

/// Loads `items` with at most `limit` in flight; returns (loaded, failed).
/// A key to load that is not in the cache counts as neither.
pub(crate) async fn warm<S: FeedSource>(
    source: Arc<S>,
    items: Vec<WarmItem>,
    limit: usize,
    shared: Arc<Shared>,
) -> (usize, usize) {
    if items.is_empty() {
        return (0, 0);
    }
    let start = Instant::now();
    let total = items.len();
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    for item in items {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let source = source.clone();
        set.spawn(async move {
            let _permit = permit;
            let r = source.warm(item.clone()).await;
            (item, r)
        });
    }
    let (mut ok, mut failed, mut missing) = (0, 0, 0);
    while let Some(joined) = set.join_next().await {
        let Ok((item, r)) = joined else {
            failed += 1;
            continue;
        };
        match r {
            Ok(outcome) => {
                if outcome == super::source::Outcome::Miss {
                    missing += 1;
                } else {
                    ok += 1;
                }
                shared.metrics.warmed(outcome.label());
                tracing::debug!(key = %item.key, outcome = outcome.label(), "warmed");
            }
            Err(e) => {
                failed += 1;
                shared.metrics.warmed("error");
                tracing::warn!(key = %item.key, error = %e, "warm-up load failed");
            }
        }
    }
    tracing::info!(
        total,
        loaded = ok,
        missing,
        failed,
        ms = start.elapsed().as_millis() as u64,
        "warm-up done"
    );
    (ok, failed)
}
