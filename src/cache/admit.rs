//! Admission of large values into L1. A value read from disk enters L1 at
//! once if it is small; one of [`LARGE`] bytes or more enters on its
//! second read while the doorkeeper remembers the first (the sled tier
//! takes nothing over 64 KiB anyway). A large value read once (a scan, a feature vector
//! used by one job) then never displaces what is hot, and its buffer goes
//! back to the allocator as soon as the caller drops it, so the next large
//! read reuses warm memory: retained in L1, every 1 MiB read landed in
//! fresh pages and paid ~256 page faults (a first read took 480–850 µs
//! against 345 µs for read + verify, `examples` probe on 2026-12-06).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::disk::blob::Digest;

/// Values this large are admitted on their second read: the size from
/// which reads use the read pool, glibc's default threshold for serving an
/// allocation from fresh `mmap`ed pages.
pub(crate) const LARGE: usize = crate::disk::blob::pool::FROM;

/// Direct-mapped memory of recently read large blobs: one tag per slot, so
/// a slot's next blob forgets the previous one (a second read that comes
/// too late just counts as a first read again).
#[derive(Debug)]
pub(crate) struct Doorkeeper {
    slots: Box<[AtomicU64]>,
}

impl Doorkeeper {
    pub(crate) fn new(slots: usize) -> Doorkeeper {
        Doorkeeper {
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Sized to remember twice as many large values as `memory` bytes of
    /// L1 can hold (1024 slots, 8 KiB, for the default 64 MiB), so a
    /// rotation over more large values than fit is still admitted.
    pub(crate) fn for_memory(memory: u64) -> Doorkeeper {
        let slots = (memory / LARGE as u64).saturating_mul(2).clamp(64, 1 << 20);
        Doorkeeper::new(slots as usize)
    }

    /// Whether a value of `len` bytes read from disk under `d` enters the
    /// memory tiers now.
    pub(crate) fn admit(&self, d: &Digest, len: usize) -> bool {
        if len < LARGE {
            return true;
        }
        let word = |i: usize| u64::from_le_bytes(d.0[i..i + 8].try_into().expect("8 bytes"));
        // Never 0, the empty slot's value.
        let tag = word(0) | 1;
        let slot = &self.slots[(word(8) % self.slots.len() as u64) as usize];
        slot.swap(tag, Ordering::Relaxed) == tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn small_values_enter_at_once_large_ones_on_their_second_read() {
        let door = Doorkeeper::new(64);
        assert!(door.admit(&digest(1), LARGE - 1));
        assert!(door.admit(&digest(1), LARGE - 1));
        assert!(!door.admit(&digest(2), LARGE));
        assert!(door.admit(&digest(2), LARGE));
        // Another blob's first read does not admit this one.
        assert!(!door.admit(&digest(3), 1 << 20));
        assert!(door.admit(&digest(3), 1 << 20));
    }

    #[test]
    fn the_doorkeeper_grows_with_l1() {
        assert_eq!(Doorkeeper::for_memory(64 << 20).slots.len(), 1024);
        assert_eq!(Doorkeeper::for_memory(4 << 30).slots.len(), 65536);
        assert_eq!(Doorkeeper::for_memory(0).slots.len(), 64);
    }

    #[test]
    fn a_slot_remembers_only_its_last_blob() {
        let door = Doorkeeper::new(1);
        assert!(!door.admit(&digest(1), LARGE));
        assert!(!door.admit(&digest(2), LARGE));
        // Digest 1 was forgotten: this is a first read again.
        assert!(!door.admit(&digest(1), LARGE));
        assert!(door.admit(&digest(1), LARGE));
    }
}
