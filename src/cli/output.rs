//! Printing for every command: a stdout that turns a closed pipe into a
//! quiet end of output (`freshcache ls | head -1`), stderr lines that never
//! panic, JSON, tables of entries, times, and progress bars.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use freshcache::{Error, Meta};

/// Set once a write to stdout met a closed pipe; later output is dropped.
static BROKEN: AtomicBool = AtomicBool::new(false);

/// Standard output that never fails on a closed pipe (EPIPE): the first
/// broken write marks stdout as gone and every later write is discarded,
/// so the command finishes with its own exit status, silently, like other
/// Unix tools. Other write errors (a full disk behind a redirection) are
/// returned as usual.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Stdout {
    /// True once the reader of stdout has gone away.
    pub fn is_broken() -> bool {
        BROKEN.load(Ordering::Relaxed)
    }
}

fn quiet_pipe<T>(r: std::io::Result<T>, ok: T) -> std::io::Result<T> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            BROKEN.store(true, Ordering::Relaxed);
            Ok(ok)
        }
        r => r,
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if Stdout::is_broken() {
            return Ok(buf.len());
        }
        quiet_pipe(std::io::stdout().write(buf), buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if Stdout::is_broken() {
            return Ok(());
        }
        quiet_pipe(std::io::stdout().write_all(buf), ())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if Stdout::is_broken() {
            return Ok(());
        }
        quiet_pipe(std::io::stdout().flush(), ())
    }
}

/// `println!` for commands: writes a line to [`Stdout`], returns
/// `std::io::Result<()>` (use with `?`), never panics.
macro_rules! outln {
    () => { ::std::io::Write::write_all(&mut $crate::cli::output::Stdout, b"\n") };
    ($($arg:tt)*) => {
        ::std::io::Write::write_fmt(
            &mut $crate::cli::output::Stdout,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}
pub(crate) use outln;

/// A line on stderr (`freshcache: ...`); a closed stderr is ignored.
pub fn note(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "freshcache: {args}");
}

/// Pretty JSON and a newline on stdout.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(Stdout, v)?;
    outln!()?;
    Ok(())
}

/// RFC 3339 of a stored instant (never panics, see `freshcache::clock::rfc3339`).
pub fn time(ms: i64) -> String {
    freshcache::clock::rfc3339(ms)
}

/// The entry table of `stat`, `ls` and `guard`; stops early once stdout
/// is a closed pipe.
pub fn print_meta_table(rows: &[Meta]) -> std::io::Result<()> {
    outln!(
        "{:<44} {:<13} {:>9} {:>9} {:<6} {:<24} {:>5}",
        "KEY",
        "CLASS",
        "SIZE",
        "STORED",
        "STATE",
        "EXPIRES",
        "HITS"
    )?;
    for m in rows {
        if Stdout::is_broken() {
            break;
        }
        outln!(
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
            time(m.expires_at),
            m.hits
        )?;
    }
    Ok(())
}

/// Runs `f` with a progress callback that drives a bar on stderr when it is
/// a terminal (quiet in pipes and with --json).
pub fn with_progress<T>(
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

#[cfg(test)]
mod tests {
    #[test]
    fn stored_instants_out_of_range_print_without_panicking() {
        assert_eq!(super::time(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(super::time(253_402_300_800_000), "9999-12-31T23:59:59.999Z");
        assert_eq!(super::time(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(1_800_000_000_000), "2027-01-15T08:00:00.000Z");
    }
}
