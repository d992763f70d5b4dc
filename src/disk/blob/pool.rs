//! A few warm buffers for large reads. A blob of [`FROM`] bytes or more is
//! read into a buffer taken from here, and its `Bytes` hand the buffer
//! back when the last reference drops, so the next large read lands in
//! pages that are already mapped. glibc serves a fresh 1 MiB allocation
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

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `len` bytes: a kept one whose capacity is
/// at most twice `len` if there is one, a new one otherwise.
pub(crate) fn take(len: usize) -> Vec<u8> {
    if len >= FROM {
        if let Ok(mut kept) = POOL.try_lock() {
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

/// Keeps `buf` (emptied) for a later read if it is large and there is room.
pub(crate) fn give(mut buf: Vec<u8>) {
    if buf.capacity() < FROM || buf.capacity() > KEEP_BYTES {
        return;
    }
    if let Ok(mut kept) = POOL.try_lock() {
        let held: usize = kept.iter().map(Vec::capacity).sum();
        if kept.len() < KEEP && held + buf.capacity() <= KEEP_BYTES {
            buf.clear();
            kept.push(buf);
        }
    }
}

/// `Bytes` over `v`; a large buffer goes back to the pool when the last
/// clone drops.
pub(crate) fn into_bytes(v: Vec<u8>) -> Bytes {
    if v.capacity() < FROM {
        return Bytes::from(v);
    }
    Bytes::from_owner(Pooled(v))
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide and other tests read large blobs too, so
    /// these assertions hold whatever else is in it.
    #[test]
    fn a_dropped_large_value_is_the_next_large_read_s_buffer() {
        let v = take(FROM + 10);
        let p = v.as_ptr();
        let cap = v.capacity();
        let mut v = v;
        v.extend_from_slice(&vec![7u8; FROM + 10]);
        let b = into_bytes(v);
        let c = b.clone();
        drop(b);
        assert_eq!(c.len(), FROM + 10, "a clone keeps the bytes alive");
        drop(c);
        // Another large read of a size this buffer serves gets it back
        // (unless a parallel test took it first: then a new one, empty).
        let again = take(cap);
        assert!(again.is_empty());
        if again.as_ptr() == p {
            assert_eq!(again.capacity(), cap);
        }
    }

    #[test]
    fn small_buffers_and_oversized_reuse_are_refused() {
        // Small values are plain Bytes and never pooled.
        let small = into_bytes(vec![1u8; 100]);
        assert_eq!(&small[..], &[1u8; 100][..]);
        // A kept buffer is never handed to a read needing less than half of it.
        give(Vec::with_capacity(4 * FROM));
        let v = take(FROM);
        assert!(v.capacity() < 4 * FROM || v.capacity() / 2 <= FROM);
        // Buffers over KEEP_BYTES are not kept.
        give(Vec::with_capacity(KEEP_BYTES + 1));
        let held: usize = POOL.lock().unwrap().iter().map(Vec::capacity).sum();
        assert!(held <= KEEP_BYTES);
    }
}
