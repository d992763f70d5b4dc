//! `freshcache guard`: the staleness guard at the command line.

use std::time::Duration;

use clap::Args;
use freshcache::StaleReason;
use freshcache::{Cache, Error};

use super::output::{outln, print_json, print_meta_table};
use super::{parse_dur, Status};

/// Arguments of `freshcache guard`.
#[derive(Args, Debug)]
pub struct GuardArgs {
    /// Keys or patterns (`odds:g123:*`) the run needs; every one must be fresh.
    #[arg(required = true, value_name = "KEY|PATTERN")]
    pub requirements: Vec<String>,
    /// Every signal must also be younger than this (e.g. 6h; at most 100 years).
    #[arg(long, value_parser = parse_dur)]
    pub max_age: Option<Duration>,
    /// Print the accepted set, or `{"refused": [...]}`, as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A reason as the JSON shows it: `missing`, `expired`, `too_old`,
/// `from_the_future`.
fn reason_name(r: StaleReason) -> String {
    match serde_json::to_value(r) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{r:?}"),
    }
}

/// `freshcache guard KEY|PATTERN...`: exit 0 with the set, 3 with every
/// stale or missing signal.
pub fn guard(cache: &Cache, a: GuardArgs) -> anyhow::Result<Status> {
    let mut guard = cache.guard();
    if let Some(m) = a.max_age {
        guard = guard.max_age(m);
    }
    match guard.require(&a.requirements) {
        Ok(set) => {
            if a.json {
                print_json(&set)?;
            } else {
                if set.unconfirmed.is_empty() {
                    outln!("accepted: {} signal(s), all fresh", set.signals.len())?;
                } else {
                    // redis.consistency: available, not caught up with the
                    // shared invalidation log: fresh here, not confirmed.
                    outln!(
                        "accepted: {} signal(s), fresh locally; {} UNCONFIRMED against the shared invalidation log: {}",
                        set.signals.len(),
                        set.unconfirmed.len(),
                        set.unconfirmed.join(", ")
                    )?;
                }
                print_meta_table(
                    &set.signals
                        .iter()
                        .map(|s| s.meta.clone())
                        .collect::<Vec<_>>(),
                )?;
            }
            Ok(Status::Ok)
        }
        Err(Error::Stale(stale)) => {
            if a.json {
                print_json(&serde_json::json!({ "refused": stale }))?;
            } else {
                outln!("REFUSED: {} signal(s) stale or missing", stale.len())?;
                outln!(
                    "{:<40} {:<14} {:<15} {:>12} {:>12} {:>12}",
                    "KEY",
                    "CLASS",
                    "REASON",
                    "AGE",
                    "LIMIT",
                    "OVER BY"
                )?;
                let h = |v: Option<i64>| v.map_or("-".into(), freshcache::clock::human_ms);
                for s in &stale {
                    outln!(
                        "{:<40} {:<14} {:<15} {:>12} {:>12} {:>12}",
                        s.key.as_deref().unwrap_or(&s.requirement),
                        s.class,
                        reason_name(s.reason),
                        h(s.age_ms),
                        h(s.limit_ms),
                        h(s.over_by_ms)
                    )?;
                }
            }
            Ok(Status::Code(super::exit::REFUSED))
        }
        Err(e) => Err(e.into()),
    }
}
