//! Exit codes (the table in README.md) and how an error maps to one.

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// A miss: missing or expired (unless `--allow-stale`).
pub const MISS: u8 = 1;
/// Invalid input: usage, key, pattern, duration, config (also a `--config`
/// file that cannot be read).
pub const INVALID: u8 = 2;
/// Refused by the staleness guard.
pub const REFUSED: u8 = 3;
/// Corrupt data found (`verify`, also after `--repair` removed it).
pub const CORRUPT: u8 = 4;
/// Upstream or network error (carried by the library's errors).
#[allow(dead_code)]
pub const UPSTREAM: u8 = 5;
/// Local I/O or storage error: disk full, unreadable or unwritable file,
/// unusable root, damaged index.
pub const STORAGE: u8 = 6;

/// Exit status of a command that ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Miss,
    Code(u8),
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => OK,
            Status::Miss => MISS,
            Status::Code(c) => c,
        }
    }
}

/// An error the CLI itself classifies (the library's errors carry their
/// own code through `freshcache::Error::exit_code`).
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

impl Fail {
    pub fn invalid(message: impl Into<String>) -> Fail {
        Fail {
            code: INVALID,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// The exit code of a failed command: the first cause in the chain that
/// has one decides; an `std::io::Error` (reading FILE, writing `-o`) is a
/// storage error; anything unclassified is too, never a miss.
pub fn code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Fail>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<freshcache::Error>() {
            return u8::try_from(e.exit_code()).unwrap_or(STORAGE);
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return STORAGE;
        }
    }
    STORAGE
}
