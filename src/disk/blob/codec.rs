//! Blob encoding. A blob is stored compressed only when that saves at least
//! 1/8 of its size; otherwise raw, so incompressible data (float vectors,
//! ~1.07x) is read without a pointless decompression. Files are one zstd
//! frame (or raw); inline blobs are LZ4 blocks by default (`encode_lz4`),
//! because decoding dominates a small value's read: zstd was 62% of a 4 KiB
//! disk-tier get, LZ4 decodes the same block ~7x faster.

use std::cell::RefCell;
use std::io::Read;

use crate::disk::blob::Digest;

/// How a blob's stored bytes are encoded. Stored in the index as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
    /// One LZ4 block (no frame: the index row holds the decoded size).
    /// Only inline blobs, never files, so a file names its own size.
    Lz4 = 2,
}

/// The largest value encoded as an LZ4 block. A block decodes in one piece,
/// so a row claiming a larger one is damage, not a reason to allocate.
pub const LZ4_MAX: u64 = 16 << 20;

impl Codec {
    /// From the index's integer.
    pub fn from_i64(v: i64) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Lz4),
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

/// Encodes `bytes` as one LZ4 block, or raw when that saves less than 1/8.
pub fn encode_lz4(bytes: &[u8]) -> (Codec, Vec<u8>) {
    if bytes.len() >= 64 && bytes.len() as u64 <= LZ4_MAX {
        let z = lz4_flex::block::compress(bytes);
        if z.len() <= bytes.len() - bytes.len() / 8 {
            return (Codec::Lz4, z);
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
        Codec::Lz4 => {
            if size as u64 > LZ4_MAX {
                return None;
            }
            // Decodes into exactly `size` bytes; a block that wants more
            // (or is malformed) is an error, never a larger allocation.
            lz4_flex::block::decompress(stored, size).ok()?
        }
    };
    (bytes.len() == size && verify(&bytes, expected)).then_some(bytes)
}

/// Verifies an encoded blob read from `r` without holding it in memory:
/// decodes in chunks, hashes as it goes, and stops one byte past `size`
/// decoded or `stored_size` stored bytes, so memory stays at the decoder's
/// buffers (plus its window, at most 8 MiB for levels up to 19) whatever a
/// frame or a row claims. `Ok(false)`: the blob is corrupt; `Err`: reading
/// `r` failed.
///
/// # Errors
/// The I/O error of `r`.
pub fn verify_stream(
    codec: Codec,
    r: impl Read,
    stored_size: u64,
    size: u64,
    expected: &Digest,
) -> std::io::Result<bool> {
    let mut src = Tracked {
        inner: r.take(stored_size.saturating_add(1)),
        read: 0,
        error: None,
    };
    let mut hasher = blake3::Hasher::new();
    let decoded = match codec {
        Codec::Raw => copy_hashing(&mut src, &mut hasher, size),
        Codec::Lz4 => {
            // A block decodes in one piece: bounded by LZ4_MAX, both sides.
            if size > LZ4_MAX || stored_size > LZ4_MAX {
                return Ok(false);
            }
            let mut stored = Vec::new();
            match src.read_to_end(&mut stored) {
                Ok(_) => match decode(Codec::Lz4, &stored, size, expected) {
                    Some(bytes) => {
                        hasher.update(&bytes);
                        Ok(size)
                    }
                    None => return Ok(false),
                },
                Err(e) => Err(e),
            }
        }
        Codec::Zstd => {
            // The window a frame may ask for: 8 MiB (what levels up to 19 use
            // for any input), or up to the value's own recorded size for a
            // larger value (a blob written at an ultra level 20-22, which
            // older configs allowed), never over 128 MiB. A frame asking for
            // more is damage, not a reason to allocate.
            let need = 64 - size.saturating_sub(1).leading_zeros();
            let log_max = need.clamp(23, 27);
            let mut decoder = match zstd::stream::read::Decoder::new(&mut src).and_then(|d| {
                let mut d = d.single_frame();
                d.window_log_max(log_max)?;
                Ok(d)
            }) {
                Ok(d) => d,
                Err(_) => return Ok(false),
            };
            let n = copy_hashing(&mut decoder, &mut hasher, size);
            // Anything after the frame is damage too: what the decoder read
            // ahead and did not use, and what is left after it.
            let ahead = std::io::BufRead::fill_buf(decoder.get_mut()).map(|b| b.len() as u64);
            drop(decoder);
            let rest = copy_hashing(&mut src, &mut blake3::Hasher::new(), 0);
            match (n, ahead, rest) {
                (Ok(n), Ok(0), Ok(0)) => Ok(n),
                (Ok(_), Ok(_), Ok(_)) => return Ok(false),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
            }
        }
    };
    if let Some(e) = src.error.take() {
        return Err(e);
    }
    Ok(match decoded {
        Ok(n) => {
            n == size
                && src.read == stored_size
                && Digest(*hasher.finalize().as_bytes()) == *expected
        }
        // A decoding error (the source itself did not fail): corrupt.
        Err(_) => false,
    })
}

/// Copies `r` into the hasher, at most `limit + 1` bytes; returns the count.
fn copy_hashing(r: impl Read, h: &mut blake3::Hasher, limit: u64) -> std::io::Result<u64> {
    let mut r = r.take(limit.saturating_add(1));
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A reader that counts its bytes and keeps its own I/O error apart from
/// the decoder's complaints.
struct Tracked<R> {
    inner: R,
    read: u64,
    error: Option<std::io::Error>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.error = Some(e);
                Err(std::io::Error::new(kind, "source failed"))
            }
        }
    }
}

/// True when `bytes` hash to `expected`.
pub fn verify(bytes: &[u8], expected: &Digest) -> bool {
    Digest::of(bytes) == *expected
}

#[cfg(test)]
mod tests {
    use super::*;

    type Encoder = fn(&[u8]) -> (Codec, Vec<u8>);

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn noise(x: &mut u64, len: usize) -> Vec<u8> {
        (0..len).map(|_| xorshift(x) as u8).collect()
    }

    /// Both compressing encoders, with the codec each should choose.
    fn encoders() -> [(Codec, Encoder); 2] {
        [(Codec::Zstd, |b| encode(b, 3)), (Codec::Lz4, encode_lz4)]
    }

    #[test]
    fn compressible_data_is_compressed_and_round_trips() {
        let data = br#"{"game":"g1","home":-110,"away":+100}"#.repeat(100);
        for (want, enc) in encoders() {
            let (codec, stored) = enc(&data);
            assert_eq!(codec, want);
            assert!(stored.len() < data.len() / 4, "{codec:?}");
            assert_eq!(
                decode(codec, &stored, data.len() as u64, &Digest::of(&data)).unwrap(),
                data
            );
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let data = noise(&mut 0x9E37_79B9_7F4A_7C15u64, 6144);
        for (_, enc) in encoders() {
            let (codec, stored) = enc(&data);
            assert_eq!(codec, Codec::Raw);
            assert_eq!(stored, data);
        }
    }

    #[test]
    fn corrupt_or_oversized_frames_are_refused() {
        let data = vec![7u8; 10_000];
        let d = Digest::of(&data);
        for (_, enc) in encoders() {
            let (codec, mut stored) = enc(&data);
            assert!(decode(codec, &stored, 100, &d).is_none(), "size cap");
            let last = stored.len() - 1;
            stored[last] ^= 1;
            assert!(decode(codec, &stored, data.len() as u64, &d).is_none());
        }
        assert!(decode(Codec::Raw, b"other", 5, &d).is_none());
        // An LZ4 row claiming more than any block we write allocates nothing.
        let (_, block) = encode_lz4(&data);
        assert!(decode(Codec::Lz4, &block, LZ4_MAX + 1, &d).is_none());
        assert!(!verify_stream(Codec::Lz4, &block[..], LZ4_MAX + 1, 10_000, &d).unwrap());
        assert!(!verify_stream(Codec::Lz4, &block[..], 10, LZ4_MAX + 1, &d).unwrap());
    }

    #[test]
    fn garbage_lz4_blocks_are_refused_without_panic() {
        let data = br#"{"odds":[1.5,2.25]}"#.repeat(200);
        let d = Digest::of(&data);
        let (_, block) = encode_lz4(&data);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut refused = 0;
        for _ in 0..2000 {
            let mut bad = block.clone();
            xorshift(&mut x);
            let at = (x % bad.len() as u64) as usize;
            bad[at] ^= (x >> 32) as u8 | 1;
            if x % 7 == 0 {
                bad.truncate(at);
            }
            // Repetitive data can survive a changed match offset; what
            // matters is that nothing but the verified value comes back.
            if let Some(got) = decode(Codec::Lz4, &bad, data.len() as u64, &d) {
                assert_eq!(got, data);
            } else {
                refused += 1;
            }
        }
        assert!(refused > 1000, "{refused} of 2000 damaged blocks refused");
        // Random bytes of every length up to twice the block, as a block.
        for len in 0..block.len() * 2 {
            let junk = noise(&mut x, len);
            assert!(decode(Codec::Lz4, &junk, data.len() as u64, &d).is_none());
            assert!(decode(Codec::Lz4, &junk, 64, &d).is_none());
        }
    }

    #[test]
    fn streaming_verification_agrees_with_decode() {
        let data = br#"{"odds":[1.5,2.25]}"#.repeat(500);
        let d = Digest::of(&data);
        for (_, enc) in encoders() {
            stream_agrees(&data, &d, enc(&data));
        }
        let n = data.len() as u64;
        assert!(verify_stream(Codec::Raw, &data[..], n, n, &d).unwrap());
        assert!(!verify_stream(Codec::Raw, &data[..], n, n, &Digest::of(b"x")).unwrap());
    }

    fn stream_agrees(data: &[u8], d: &Digest, (codec, stored): (Codec, Vec<u8>)) {
        let n = data.len() as u64;
        let s = stored.len() as u64;
        assert!(verify_stream(codec, &stored[..], s, n, d).unwrap());
        assert!(
            !verify_stream(codec, &stored[..], s, n - 1, d).unwrap(),
            "size"
        );
        assert!(
            !verify_stream(codec, &stored[..], s - 1, n, d).unwrap(),
            "stored size"
        );
        let mut bad = stored.clone();
        bad[s as usize / 2] ^= 0x40;
        assert!(!verify_stream(codec, &bad[..], s, n, d).unwrap());
        let mut longer = stored.clone();
        longer.extend_from_slice(b"junk");
        assert!(
            !verify_stream(codec, &longer[..], s + 4, n, d).unwrap(),
            "trailing bytes"
        );
    }
}
