//! `freshcache recover`, and `verify` on an index too damaged to open.

use clap::Args;
use freshcache::{Cache, VerifyReport};

use super::output::{outln, print_json};
use super::{exit, maint::VerifyArgs, Global, Status};

/// Arguments of `freshcache recover`.
#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Print the recovery report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `freshcache recover`: rebuilds a damaged index from what can be verified
/// (exit 0; the report says what was kept and dropped).
pub fn recover(global: &Global, a: RecoverArgs) -> anyhow::Result<Status> {
    let config = global.load_config()?;
    let r = Cache::recover(&config)?;
    if a.json {
        print_json(&r)?;
    } else {
        outln!(
            "recovered: {} of {} entries kept ({} dropped), {} blobs verified ({} rebuilt from files, {} dropped); the damaged index is kept at {}",
            r.entries_kept,
            r.entries_found,
            r.entries_dropped,
            r.blobs_kept,
            r.blobs_rebuilt_from_files,
            r.blobs_dropped,
            r.damaged_index_kept_at
        )?;
    }
    Ok(Status::Ok)
}

/// `verify` when the root would not open: a damaged index is a finding
/// (exit 4, the report names it); any other error stays an error.
pub fn verify_unopenable(e: anyhow::Error, a: &VerifyArgs) -> anyhow::Result<Status> {
    let damaged = e
        .downcast_ref::<freshcache::Error>()
        .is_some_and(Cache::is_damaged_index);
    if !damaged {
        return Err(e);
    }
    let report = VerifyReport::damaged_index(format!("{e:#}"));
    if a.json {
        print_json(&serde_json::json!({ "report": report, "clean_after": false }))?;
    } else {
        outln!("verified 0 blob(s), 0 entries: 1 problem(s)")?;
        outln!("  {}", serde_json::to_string(&report.problems[0])?)?;
        outln!("run `freshcache recover` to rebuild the index from what can be verified")?;
    }
    Ok(Status::Code(exit::CORRUPT))
}
