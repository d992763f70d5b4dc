//! The disk tier: blobs (codec and files), the SQLite index, the store's
//! write/read protocol over both, the hot map, access/counter recording and
//! the optional sled hot tier. Imports only [`crate::base`].

pub mod blob;
pub mod hot;
pub mod index;
pub mod reserve;
pub mod seq;
pub mod stats;
pub mod store;
#[cfg(feature = "sled")]
pub mod tier;
#[cfg(not(feature = "sled"))]
#[path = "tier_off.rs"]
pub mod tier;
