//! Blob encoding. A blob is stored zstd-compressed only when that saves at
//! least 1/8 of its size; otherwise raw, so incompressible data (float
//! vectors, ~1.07x) is read without a pointless decompression.

use std::cell::RefCell;

use crate::disk::blob::Digest;

/// How a blob's stored bytes are encoded. Stored in the index as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
}

impl Codec {
    /// From the index's integer.
    pub fn from_i64(v: i64) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

thread_local! {
    /// zstd contexts are costly to create (level 3 allocates its tables);
    /// each thread keeps one of each.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(bytes: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        c.as_mut()?.1.compress(bytes).ok()
    })
}

fn decompress(stored: &[u8], capacity: usize) -> Option<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        d.as_mut()?.decompress(stored, capacity).ok()
    })
}

/// Encodes `bytes`, choosing raw when compression saves less than 1/8.
pub fn encode(bytes: &[u8], level: i32) -> (Codec, Vec<u8>) {
    if bytes.len() >= 64 {
        if let Some(z) = compress(bytes, level) {
            if z.len() <= bytes.len() - bytes.len() / 8 {
                return (Codec::Zstd, z);
            }
        }
    }
    (Codec::Raw, bytes.to_vec())
}

/// Decodes stored bytes and verifies them against `expected`. Decompression
/// is capped at `size` (the stored uncompressed length), so a crafted frame
/// cannot balloon memory. `None` means the blob is corrupt.
pub fn decode(codec: Codec, stored: &[u8], size: u64, expected: &Digest) -> Option<Vec<u8>> {
    let size = usize::try_from(size).ok()?;
    let bytes = match codec {
        Codec::Raw => stored.to_vec(),
        Codec::Zstd => {
            // The frame header must declare exactly the claimed size before
            // anything of that size is allocated.
            match zstd::zstd_safe::get_frame_content_size(stored) {
                Ok(Some(n)) if n == size as u64 => {}
                _ => return None,
            }
            decompress(stored, size)?
        }
    };
    (bytes.len() == size && verify(&bytes, expected)).then_some(bytes)
}

/// True when `bytes` hash to `expected`.
pub fn verify(bytes: &[u8], expected: &Digest) -> bool {
    Digest::of(bytes) == *expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_is_compressed_and_round_trips() {
        let data = br#"{"game":"g1","home":-110,"away":+100}"#.repeat(100);
        let (codec, stored) = encode(&data, 3);
        assert_eq!(codec, Codec::Zstd);
        assert!(stored.len() < data.len() / 4);
        assert_eq!(
            decode(codec, &stored, data.len() as u64, &Digest::of(&data)).unwrap(),
            data
        );
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..6144)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (codec, stored) = encode(&data, 3);
        assert_eq!(codec, Codec::Raw);
        assert_eq!(stored, data);
    }

    #[test]
    fn corrupt_or_oversized_frames_are_refused() {
        let data = vec![7u8; 10_000];
        let d = Digest::of(&data);
        let (codec, mut stored) = encode(&data, 3);
        assert!(decode(codec, &stored, 100, &d).is_none(), "size cap");
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert!(decode(codec, &stored, data.len() as u64, &d).is_none());
        assert!(decode(Codec::Raw, b"other", 5, &d).is_none());
    }
}
