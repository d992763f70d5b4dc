//! Content-addressed blobs: named by the blake3 hash of their uncompressed
//! bytes, encoded by [`codec`], stored inline in the index or as files by
//! [`files`].

pub mod codec;
pub mod files;
pub(crate) mod pool;

pub use crate::base::digest::Digest;
