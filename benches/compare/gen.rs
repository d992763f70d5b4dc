//! Deterministic payloads, keys and access sequences, generated from a seed
//! in every process. benches/peers/diskcache_bench.py implements the same
//! functions; `fingerprint` lets the coordinator check that both agree.

use std::fmt::Write as _;

/// Base payloads per kind; a key's value is base[i % BASES] stamped with i.
pub const BASES: usize = 64;
/// The per-key stamp: 16 hex digits of the value number at this offset.
pub const STAMP_AT: usize = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 4 KiB odds JSON (compresses ~4x).
    Odds4k,
    /// 6 KiB incompressible bytes.
    Rand6k,
    /// 1 MiB JSON feature blob (compressible).
    Json1m,
}

impl Kind {
    pub fn len(self) -> usize {
        match self {
            Kind::Odds4k => 4096,
            Kind::Rand6k => 6144,
            Kind::Json1m => 1 << 20,
        }
    }
    fn salt(self) -> u64 {
        match self {
            Kind::Odds4k => 1,
            Kind::Rand6k => 2,
            Kind::Json1m => 3,
        }
    }
}

pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

pub fn seeded(seed: u64) -> u64 {
    seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

fn base(kind: Kind, j: usize) -> Vec<u8> {
    let mut x = seeded(kind.salt() * 1000 + j as u64);
    let len = kind.len();
    match kind {
        Kind::Rand6k => {
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                v.extend_from_slice(&xorshift(&mut x).to_le_bytes());
            }
            v.truncate(len);
            v
        }
        Kind::Odds4k | Kind::Json1m => {
            let mut s = String::with_capacity(len + 64);
            s.push_str("{\"id\":\"0000000000000000\",\"items\":[");
            while s.len() < len {
                let r = xorshift(&mut x);
                let _ = write!(
                    s,
                    "{{\"book\":\"b{}\",\"home\":-{},\"away\":{},\"t\":{}.5}},",
                    r % 40,
                    100 + r % 60,
                    100 + (r >> 8) % 50,
                    38 + (r >> 16) % 20
                );
            }
            s.truncate(len - 2);
            s.push_str("]}");
            s.into_bytes()
        }
    }
}

/// The bases of one kind (few for 1 MiB).
pub struct Payloads {
    kind: Kind,
    bases: Vec<Vec<u8>>,
}

impl Payloads {
    pub fn new(kind: Kind) -> Payloads {
        let n = if kind == Kind::Json1m { 4 } else { BASES };
        Payloads {
            kind,
            bases: (0..n).map(|j| base(kind, j)).collect(),
        }
    }
    /// Value number `i`: distinct content per i (dedup would flatter put).
    pub fn value(&self, i: u64) -> Vec<u8> {
        let mut v = self.bases[i as usize % self.bases.len()].clone();
        v[STAMP_AT..STAMP_AT + 16].copy_from_slice(stamp(i).as_bytes());
        v
    }
    /// Does `got` look like value number `i` (length and stamp)?
    pub fn check(&self, got: &[u8], i: u64) -> bool {
        got.len() == self.kind.len() && got[STAMP_AT..STAMP_AT + 16] == *stamp(i).as_bytes()
    }
}

pub fn stamp(i: u64) -> String {
    format!("{i:016x}")
}

/// Zipf (s = 1) over ranks 0..n by inverse CDF; rank r is key r.
pub struct Zipf {
    cdf: Vec<f64>,
    x: u64,
}

impl Zipf {
    pub fn new(n: usize, seed: u64) -> Zipf {
        let mut total = 0.0;
        let cdf = (1..=n)
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect();
        Zipf {
            cdf,
            x: seeded(seed),
        }
    }
    pub fn next(&mut self) -> usize {
        let u = (xorshift(&mut self.x) >> 11) as f64 / (1u64 << 53) as f64
            * self.cdf[self.cdf.len() - 1];
        self.cdf.partition_point(|c| *c < u)
    }
}

/// Uniform over 0..n.
pub struct Uniform {
    n: u64,
    x: u64,
}

impl Uniform {
    pub fn new(n: usize, seed: u64) -> Uniform {
        Uniform {
            n: n as u64,
            x: seeded(seed),
        }
    }
    pub fn next(&mut self) -> usize {
        (xorshift(&mut self.x) % self.n) as usize
    }
}

/// A permutation of 0..n (Fisher–Yates, xorshift).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    let mut x = seeded(seed);
    for i in (1..n).rev() {
        let j = (xorshift(&mut x) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// FNV-1a over a sample of everything generated: equal in every process
/// (Rust and Python) or the comparison is void.
pub fn fingerprint(keys: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &c in b {
            h = (h ^ c as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&Payloads::new(Kind::Odds4k).value(12_345));
    eat(&Payloads::new(Kind::Rand6k).value(77));
    eat(&Payloads::new(Kind::Json1m).value(5)[..8192]);
    let mut z = Zipf::new(keys, 9);
    let mut u = Uniform::new(keys, 9);
    let mut s = String::new();
    for _ in 0..64 {
        let _ = write!(s, "{},{};", z.next(), u.next());
    }
    for i in permutation(100, 9) {
        let _ = write!(s, "{i};");
    }
    eat(s.as_bytes());
    format!("{h:016x}")
}

/// Keys of the preloaded data set, and per-round keys of the small phase.
pub fn set_key(i: usize) -> String {
    format!("bench:u:{i}")
}

pub fn round_key(round: u64, tag: &str, i: usize) -> String {
    format!("bench:r{round}:{tag}:{i}")
}
