//! A few warm buffers for large reads. A blob file of [`FROM`] bytes or
//! more is read into a buffer taken from here; when it is stored raw the
//! buffer is the value, and its `Bytes` hand it back when the last
//! reference drops (`store/read.rs`), so the next large read lands in
//! pages that are already mapped. (An LZ4 file's decoded output is an
//! ordinary allocation: pooling it measured ~10% slower.) glibc serves a fresh 1 MiB allocation
//! from new `mmap`ed pages whenever its heap has nothing that size free (a
//! process holding other large objects, such as the Python bench's
//! cachetools column): ~256 page faults per MiB, which took a 1 MiB get
//! from ~380 µs to ~1,080 µs (`python/bench`, 2026-12-06).
//!
//! Never blocks: every access is a `try_lock`, and a busy (or, in a forked
//! child, orphaned) lock just means a plain allocation or free. Bounded:
//! at most [`KEEP`] buffers and [`KEEP_BYTES`] in all, and a buffer is
//! only reused for a read needing at least half its capacity, so a value
//! never holds more than twice its size.

use std::sync::Mutex;

use bytes::Bytes;

/// Reads this large use pooled buffers.
pub(crate) const FROM: usize = 128 * 1024;
/// Buffers kept at most.
const KEEP: usize = 8;
/// Bytes kept at most (a larger buffer is never kept).
const KEEP_BYTES: usize = 16 << 20;

/// Kept buffers; the process has one ([`POOL`]), tests their own.
struct Pool(Mutex<Vec<Vec<u8>>>);

static POOL: Pool = Pool(Mutex::new(Vec::new()));

impl Pool {
    fn take(&self, len: usize) -> Vec<u8> {
        if len >= FROM {
            if let Ok(mut kept) = self.0.try_lock() {
                if let Some(i) = kept
                    .iter()
                    .position(|b| b.capacity() >= len && b.capacity() / 2 <= len)
                {
                    return kept.swap_remove(i);
                }
            }
        }
        Vec::with_capacity(len)
    }

    /// Keeps `buf` (emptied) for a later read if it is large and there is
    /// room.
    fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < FROM || buf.capacity() > KEEP_BYTES {
            return;
        }
        if let Ok(mut kept) = self.0.try_lock() {
            let held: usize = kept.iter().map(Vec::capacity).sum();
            if kept.len() < KEEP && held + buf.capacity() <= KEEP_BYTES {
                buf.clear();
                kept.push(buf);
            }
        }
    }
}

/// An empty buffer with room for `len` bytes: a kept one whose capacity is
/// at most twice `len` if there is one, a new one otherwise.
pub(crate) fn take(len: usize) -> Vec<u8> {
    POOL.take(len)
}

/// `Bytes` over `v`; a large buffer goes back to the pool when the last
/// clone drops.
pub(crate) fn into_bytes(v: Vec<u8>) -> Bytes {
    into_bytes_in(&POOL, v)
}

fn into_bytes_in(pool: &'static Pool, v: Vec<u8>) -> Bytes {
    if v.capacity() < FROM {
        return Bytes::from(v);
    }
    Bytes::from_owner(Pooled(v, pool))
}

struct Pooled(Vec<u8>, &'static Pool);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.1.give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool(Mutex::new(Vec::new()))
    }

    #[test]
    fn a_given_buffer_serves_the_next_read_of_a_size_it_fits() {
        let p = pool();
        let mut v = p.take(FROM + 10);
        v.extend_from_slice(&vec![7u8; FROM + 10]);
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        p.give(v);
        let again = p.take(FROM + 10);
        assert_eq!((again.as_ptr(), again.capacity()), (ptr, cap));
        assert!(again.is_empty(), "a kept buffer comes back empty");
        // Taken: the next read of that size gets a new buffer.
        let other = p.take(FROM + 10);
        assert_ne!(other.as_ptr(), ptr);
    }

    #[test]
    fn small_oversized_and_surplus_buffers_are_not_kept_or_misused() {
        let p = pool();
        p.give(Vec::with_capacity(FROM - 1));
        p.give(Vec::with_capacity(KEEP_BYTES + 1));
        assert!(p.0.lock().unwrap().is_empty());
        // Never handed to a read needing less than half of it.
        p.give(Vec::with_capacity(4 * FROM));
        assert_eq!(p.take(FROM).capacity(), FROM);
        assert_eq!(p.take(2 * FROM).capacity(), 4 * FROM);
        // At most KEEP buffers and KEEP_BYTES in all.
        for _ in 0..2 * KEEP {
            p.give(Vec::with_capacity(FROM));
        }
        assert_eq!(p.0.lock().unwrap().len(), KEEP);
        for _ in 0..KEEP {
            p.give(Vec::with_capacity(KEEP_BYTES / 4));
        }
        let held: usize = p.0.lock().unwrap().iter().map(Vec::capacity).sum();
        assert!(held <= KEEP_BYTES);
    }

    #[test]
    fn a_value_s_buffer_goes_back_when_its_last_clone_drops() {
        static P: Pool = Pool(Mutex::new(Vec::new()));
        let small = into_bytes_in(&P, vec![1u8; 100]);
        assert_eq!(&small[..], &[1u8; 100][..]);
        drop(small);
        assert!(
            P.0.lock().unwrap().is_empty(),
            "small values are not pooled"
        );
        let v = vec![7u8; FROM];
        let ptr = v.as_ptr();
        let b = into_bytes_in(&P, v);
        let c = b.clone();
        drop(b);
        assert!(P.0.lock().unwrap().is_empty(), "a clone still holds it");
        assert_eq!(c, vec![7u8; FROM]);
        drop(c);
        let again = P.take(FROM);
        assert_eq!(again.as_ptr(), ptr);
    }
}
