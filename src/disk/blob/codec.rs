//! Blob encoding. A blob is stored compressed only when that saves at least
//! 1/8 of its size; otherwise raw, so incompressible data (float vectors,
//! ~1.07x) is read without a pointless decompression. By default inline
//! blobs are LZ4 blocks (`encode_lz4`) and files LZ4 blocks behind a
//! header naming their size (`encode_lz4_file`), because decoding dominates
//! a read: zstd was 62% of a 4 KiB disk-tier get and 95% of a 1 MiB one;
//! LZ4 decodes the same data 3-7x faster. Data LZ4 cannot shrink by 1/8
//! (hex, base64) is offered to zstd (`encode`), which may still.

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
    /// One LZ4 block behind [`LZ4_FILE_HEADER`] bytes: the magic `fcL4` and
    /// the decoded size (u32, little-endian), so `recover` can rebuild the
    /// row of a file from the file alone. Files (schema 6).
    Lz4File = 3,
}

/// The header of a [`Codec::Lz4File`] blob.
pub const LZ4_FILE_HEADER: usize = 8;
const LZ4_FILE_MAGIC: &[u8; 4] = b"fcL4";

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
            3 => Some(Codec::Lz4File),
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

/// Values at least this large are judged on a sample before a whole-value
/// compression is tried (see [`outlook`]).
pub const SAMPLE_FROM: usize = 128 << 10;
const SAMPLE_PART: usize = 4 << 10;
const SAMPLE_PARTS: usize = 4;

/// What a sample says the first codec worth trying on a large value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outlook {
    /// LZ4 shrinks the sample by at least 1/8.
    Lz4,
    /// LZ4 does not, zstd does (hex, base64).
    Zstd,
    /// Neither does (random bytes, float vectors): store it raw.
    Raw,
}

/// Judges a value of at least [`SAMPLE_FROM`] bytes by compressing four
/// 4 KiB parts of it (the middle of each quarter) as one 16 KiB sample:
/// LZ4 first when `lz4` is allowed, then zstd at `level`. `None` for a
/// smaller value. The sample costs ~1.5 µs (LZ4) and 10–25 µs (zstd) where
/// whole-value attempts on 1 MiB of float vectors cost 64 µs (LZ4) and
/// 1.1 ms (zstd) only to be thrown away. What a sample cannot see is
/// redundancy farther apart than a quarter of the value (a repeated block
/// of random bytes): such a value is stored raw, correct but larger.
pub fn outlook(bytes: &[u8], lz4: bool, level: i32) -> Option<Outlook> {
    if bytes.len() < SAMPLE_FROM {
        return None;
    }
    let quarter = bytes.len() / SAMPLE_PARTS;
    let mut sample = Vec::with_capacity(SAMPLE_PART * SAMPLE_PARTS);
    for i in 0..SAMPLE_PARTS {
        let at = i * quarter + (quarter - SAMPLE_PART) / 2;
        sample.extend_from_slice(&bytes[at..at + SAMPLE_PART]);
    }
    let shrinks = |n: usize| n <= sample.len() - sample.len() / 8;
    if lz4 && shrinks(lz4_flex::block::compress(&sample).len()) {
        return Some(Outlook::Lz4);
    }
    if compress(&sample, level).is_some_and(|z| shrinks(z.len())) {
        return Some(Outlook::Zstd);
    }
    Some(Outlook::Raw)
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

/// Encodes `bytes` as a [`Codec::Lz4File`] blob, if LZ4 shrinks them by at
/// least 1/8 (and they are at most [`LZ4_MAX`]).
pub fn encode_lz4_file(bytes: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(bytes.len()).ok()?;
    if bytes.len() < 64 || u64::from(len) > LZ4_MAX {
        return None;
    }
    let mut out =
        vec![0u8; LZ4_FILE_HEADER + lz4_flex::block::get_maximum_output_size(bytes.len())];
    out[..LZ4_FILE_HEADER].copy_from_slice(&lz4_file_header(len));
    let n = lz4_flex::block::compress_into(bytes, &mut out[LZ4_FILE_HEADER..]).ok()?;
    out.truncate(LZ4_FILE_HEADER + n);
    (out.len() <= bytes.len() - bytes.len() / 8).then_some(out)
}

/// A [`Codec::Lz4File`] blob made from an LZ4 block of `size` bytes.
pub fn lz4_file_from_block(block: &[u8], size: usize) -> Option<Vec<u8>> {
    let len = u32::try_from(size).ok()?;
    let mut out = Vec::with_capacity(LZ4_FILE_HEADER + block.len());
    out.extend_from_slice(&lz4_file_header(len));
    out.extend_from_slice(block);
    Some(out)
}

fn lz4_file_header(len: u32) -> [u8; LZ4_FILE_HEADER] {
    let mut h = [0u8; LZ4_FILE_HEADER];
    h[..4].copy_from_slice(LZ4_FILE_MAGIC);
    h[4..].copy_from_slice(&len.to_le_bytes());
    h
}

/// The decoded size a [`Codec::Lz4File`] header names, if `head` starts
/// with one.
pub fn lz4_file_size(head: &[u8]) -> Option<u64> {
    let h = head.get(..LZ4_FILE_HEADER)?;
    (h[..4] == *LZ4_FILE_MAGIC).then(|| u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]])))
}

/// Decodes stored bytes it owns (a raw blob is handed back without a
/// copy) and verifies them; `Err` hands the stored bytes back: corrupt.
pub fn decode_owned(
    codec: Codec,
    stored: Vec<u8>,
    size: u64,
    expected: &Digest,
) -> Result<Vec<u8>, Vec<u8>> {
    if codec == Codec::Raw {
        return if stored.len() as u64 == size && verify(&stored, expected) {
            Ok(stored)
        } else {
            Err(stored)
        };
    }
    decode(codec, &stored, size, expected).ok_or(stored)
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
        Codec::Lz4File => {
            if size as u64 > LZ4_MAX || lz4_file_size(stored) != Some(size as u64) {
                return None;
            }
            lz4_flex::block::decompress(&stored[LZ4_FILE_HEADER..], size).ok()?
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
        Codec::Lz4 | Codec::Lz4File => {
            // A block decodes in one piece: bounded by LZ4_MAX, both sides.
            if size > LZ4_MAX || stored_size > LZ4_MAX + LZ4_FILE_HEADER as u64 {
                return Ok(false);
            }
            let mut stored = Vec::new();
            match src.read_to_end(&mut stored) {
                Ok(_) => match decode(codec, &stored, size, expected) {
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
    fn encoders() -> [(Codec, Encoder); 3] {
        [
            (Codec::Zstd, |b| encode(b, 3)),
            (Codec::Lz4, encode_lz4),
            (Codec::Lz4File, |b| match encode_lz4_file(b) {
                Some(s) => (Codec::Lz4File, s),
                None => (Codec::Raw, b.to_vec()),
            }),
        ]
    }

    #[test]
    fn a_sample_judges_large_values_and_skips_small_ones() {
        let mut x = 11;
        let random = noise(&mut x, 1 << 20);
        let hex: Vec<u8> = random[..1 << 19]
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect();
        let json = br#"{"game":"g1","book":"b7","home":-110,"away":100},"#.repeat(8000);
        assert_eq!(outlook(&random[..SAMPLE_FROM - 1], true, 3), None);
        assert_eq!(outlook(&random, true, 3), Some(Outlook::Raw));
        assert_eq!(outlook(&random[..SAMPLE_FROM], true, 3), Some(Outlook::Raw));
        assert_eq!(outlook(&hex, true, 3), Some(Outlook::Zstd));
        assert_eq!(outlook(&json, true, 3), Some(Outlook::Lz4));
        // Without LZ4 the sample goes straight to zstd.
        assert_eq!(outlook(&json, false, 3), Some(Outlook::Zstd));
        // A quarter of JSON in random bytes: the sample holds the same
        // mix, and agrees with the whole value (LZ4 saves ~19% of both).
        let mut mixed = random.clone();
        mixed[..1 << 18].copy_from_slice(&json[..1 << 18]);
        assert_eq!(outlook(&mixed, true, 3), Some(Outlook::Lz4));
        assert_eq!(encode_lz4(&mixed).0, Codec::Lz4);
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
    fn lz4_files_name_their_size_and_refuse_a_header_that_lies() {
        let data = br#"{"odds":[1.5,2.25],"book":"b7"}"#.repeat(3000);
        let d = Digest::of(&data);
        let n = data.len() as u64;
        let stored = encode_lz4_file(&data).unwrap();
        assert_eq!(lz4_file_size(&stored), Some(n));
        let (_, block) = encode_lz4(&data);
        assert_eq!(lz4_file_from_block(&block, data.len()).unwrap(), stored);
        assert_eq!(decode(Codec::Lz4File, &stored, n, &d).unwrap(), data);
        assert_eq!(
            decode_owned(Codec::Lz4File, stored.clone(), n, &d).unwrap(),
            data
        );
        // A header naming another size, a wrong magic, a short header.
        let mut other = stored.clone();
        other[4] ^= 1;
        assert!(decode(Codec::Lz4File, &other, n, &d).is_none());
        let mut magic = stored.clone();
        magic[0] = b'x';
        assert_eq!(lz4_file_size(&magic), None);
        assert!(decode(Codec::Lz4File, &magic, n, &d).is_none());
        assert!(decode(Codec::Lz4File, &stored[..5], n, &d).is_none());
        // A header claiming more than LZ4_MAX is refused before allocating.
        let mut huge = stored.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(Codec::Lz4File, &huge, u64::from(u32::MAX), &d).is_none());
        let s = huge.len() as u64;
        assert!(!verify_stream(Codec::Lz4File, &huge[..], s, u64::from(u32::MAX), &d).unwrap());
        // Incompressible data is not offered as LZ4.
        let mut x = 7u64;
        assert!(encode_lz4_file(&noise(&mut x, 1 << 16)).is_none());
        // A raw blob is handed back as is, and refused when it lies.
        assert_eq!(decode_owned(Codec::Raw, data.clone(), n, &d).unwrap(), data);
        assert!(decode_owned(Codec::Raw, data.clone(), n - 1, &d).is_err());
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
