//! The foundation: errors, keys and patterns, the content digest, the
//! clock, fixed limits, counter names, staleness-signal types,
//! configuration and TTL policy. Imports nothing else of the crate.

pub mod clock;
pub mod config;
pub mod digest;
pub mod error;
pub mod key;
pub mod limits;
pub mod names;
pub mod policy;
pub mod signal;
