//! The foundation: errors, keys and patterns, the clock, limits, counter
//! names, configuration and TTL policy. Imports nothing else of the crate.

pub mod clock;
pub mod config;
pub mod error;
pub mod key;
pub mod policy;
