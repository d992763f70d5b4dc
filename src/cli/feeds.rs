//! `freshcache feeds refresh`: revalidate every configured news feed.

use clap::Subcommand;
use freshcache::fetch::feeds;
use freshcache::{Cache, Fetcher};

use super::fetch::outcome_name;
use super::output::{outln, print_json};
use super::{runtime, Status};

/// `freshcache feeds ...`
#[derive(Subcommand, Debug)]
pub enum FeedsCmd {
    /// Revalidate every configured feed; store new articles as news:<feed>:<id>.
    Refresh {
        /// Print one report per feed (name, outcome, status, articles, error) as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `freshcache feeds refresh`: exit 5 if any feed failed (after all ran).
pub fn feeds(cache: &Cache, cmd: FeedsCmd) -> anyhow::Result<Status> {
    let FeedsCmd::Refresh { json } = cmd;
    let config = cache.config();
    let fetcher = Fetcher::new(cache)?;
    let reports = runtime()?.block_on(feeds::refresh_all(&fetcher, &config.feeds));
    if json {
        print_json(&reports)?;
    } else if reports.is_empty() {
        outln!("no feeds configured (config `feeds:`)")?;
    }
    if !json {
        for r in &reports {
            match (&r.error, r.outcome) {
                (Some(e), _) => outln!("{:<16} FAILED  {e}", r.name)?,
                (None, Some(o)) => outln!(
                    "{:<16} {:<32} {:>8} B  {} article(s) stored",
                    r.name,
                    outcome_name(o),
                    r.body_bytes,
                    r.articles
                )?,
                (None, None) => {}
            }
        }
    }
    cache.flush()?;
    let worst = reports.iter().filter_map(|r| r.exit_code).max();
    Ok(worst.map_or(Status::Ok, |c| {
        Status::Code(u8::try_from(c).unwrap_or(super::exit::STORAGE))
    }))
}
