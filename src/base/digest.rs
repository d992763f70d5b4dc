//! The blake3 content hash that names every blob.

use std::fmt;

/// Values this large are hashed on rayon's pool. Below it one thread is
/// faster whenever the pool's workers have gone to sleep, which is the
/// common case for a cache read between other work: 1 MiB after 30 ms
/// idle took 289–419 µs on one thread and 485–586 µs with rayon (two
/// cores, 2026-12-06); back to back the two were within noise of each
/// other (112–283 µs). At 16 MiB rayon won back to back (1.5 vs 2.7 ms)
/// and tied after idle.
pub(crate) const PARALLEL_FROM: usize = 8 << 20;

/// The blake3 hash of a blob's uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Hashes `bytes`. Inputs of 8 MiB (`PARALLEL_FROM`) and more are hashed on
    /// several threads (blake3's rayon mode), except in a process forked
    /// from the one that started rayon's pool: its worker threads do not
    /// exist in the child, and a job sent to them would wait forever
    /// (rayon-rs/rayon#708; gunicorn `--preload`, multiprocessing).
    pub fn of(bytes: &[u8]) -> Digest {
        static POOL_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        if bytes.len() >= PARALLEL_FROM
            && *POOL_PID.get_or_init(std::process::id) == std::process::id()
        {
            let mut h = blake3::Hasher::new();
            h.update_rayon(bytes);
            return Digest(*h.finalize().as_bytes());
        }
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            use fmt::Write;
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Digest> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest(out))
    }

    /// From a 32-byte slice (as stored in the index).
    pub fn from_slice(b: &[u8]) -> Option<Digest> {
        b.try_into().ok().map(Digest)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Digest::of(b"hello");
        assert_eq!(d.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }
}
